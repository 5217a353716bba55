"""The demo's building blocks: example discovery, the hostPath volume, media, processes, the
VideoAsset it packages, the player checks and the per-phase timings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from tests.unit.operator import crdschema
from tests.unit.operator.test_crd import _json_schema
from vod_delivery import asset, examples, media, playback, procs
from vod_delivery.report import Reporter

pytestmark = pytest.mark.unit


def test_examples_are_found_signed_platform_first() -> None:
    docs = list(examples.example_documents())
    platforms = examples.example_platforms(docs)
    assert platforms, "examples/ holds no VideoPlatform"
    assert [p.signed_urls for p in platforms] == sorted(
        (p.signed_urls for p in platforms), reverse=True
    )
    assert platforms[0].signed_urls, "the demo needs one example with signed URLs on"
    claims = examples.example_claims(docs)
    assert ("default", "videos") in claims


def test_hostpath_volume_is_prebound_to_its_claim(tmp_path: Path) -> None:
    pv = examples.hostpath_volume("media", "videos", tmp_path)
    assert pv["spec"]["claimRef"] == {"namespace": "media", "name": "videos"}
    assert pv["spec"]["hostPath"]["path"] == str(tmp_path)
    assert pv["spec"]["storageClassName"] == ""
    assert "ReadWriteOnce" in pv["spec"]["accessModes"]


def test_the_demo_uploads_to_a_platform_with_jwt_uploads_and_signed_urls() -> None:
    platforms = examples.example_platforms(list(examples.example_documents()))
    showcase = next(p for p in platforms if p.name == "showcase")
    assert showcase.uploads
    assert showcase.signed_urls
    assert showcase.signed_url_ttl == 1800
    assert any(p.uploads and p.signed_urls for p in platforms)


def test_test_video_is_h264_aac_faststart(tmp_path: Path) -> None:
    assert "+faststart" in media.ffmpeg_args(tmp_path / "x.mp4")
    out = media.make_test_video(tmp_path / "v.mp4", seconds=1)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    codecs = sorted(s["codec_name"] for s in json.loads(probe.stdout)["streams"])
    assert codecs == ["aac", "h264"]
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat"), "faststart: moov before mdat"
    mtime = out.stat().st_mtime_ns
    media.make_test_video(out, seconds=1)
    assert out.stat().st_mtime_ns == mtime  # kept on the second run


def test_processes_are_tracked_and_stopped_by_pid_file(tmp_path: Path) -> None:
    pid_file = tmp_path / "p.pid"
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    pid = procs.start(argv, dict(os.environ), tmp_path / "p.log", pid_file)
    assert procs.running(pid_file) == pid
    assert procs.stop(pid_file, timeout=10)
    assert procs.running(pid_file) is None
    assert not procs.stop(pid_file)


GRANDCHILD = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_stop_leaves_no_process_of_the_group_behind(tmp_path: Path) -> None:
    """A worker that ignores SIGTERM (or outlives its parent) is killed with its group."""
    pid_file, child_file = tmp_path / "p.pid", tmp_path / "child"
    argv = [sys.executable, "-c", GRANDCHILD, str(child_file)]
    procs.start(argv, dict(os.environ), tmp_path / "p.log", pid_file)
    deadline = time.monotonic() + 20
    while not child_file.exists() or not child_file.read_text():
        assert time.monotonic() < deadline, (tmp_path / "p.log").read_text()
        time.sleep(0.05)
    grandchild = int(child_file.read_text())
    assert _alive(grandchild)
    assert procs.stop(pid_file, timeout=2)
    deadline = time.monotonic() + 10
    while _alive(grandchild):
        assert time.monotonic() < deadline, "the grandchild survived its group's stop"
        time.sleep(0.05)


def test_a_reused_pid_is_not_mistaken_for_ours(tmp_path: Path) -> None:
    pid_file = tmp_path / "p.pid"
    pid_file.write_bytes(f"{os.getpid()}\n".encode() + b"some-other-command\0")
    assert procs.running(pid_file) is None
    assert not procs.stop(pid_file)  # never signals a process it did not start


def test_the_demo_asset_is_valid_and_has_two_rungs_within_the_video() -> None:
    body = asset.manifest("default", "showcase", "demo.mp4")
    jsonschema.validate(body, _json_schema(crdschema.asset_schema()))
    heights = [r["height"] for r in body["spec"]["renditions"]]
    assert len(heights) == 2
    assert max(heights) <= 360, "renditions taller than the demo's 360-line video are skipped"
    assert body["spec"]["source"] == {"path": "demo.mp4"}
    assert asset.prefix("default") == "/assets/default/demo/"


def test_asset_progress_lines_and_readiness() -> None:
    va = {"metadata": {"generation": 2}, "status": {}}
    assert asset.progress_line(va["status"]) == "phase -"
    assert not asset.is_ready(va)
    processing = {
        "phase": "Processing",
        "progress": 42,
        "conditions": [{"type": "Ready", "status": "False", "reason": "Packaging"}],
    }
    assert asset.progress_line(processing) == "phase Processing, 42% (Packaging)"
    stale = {"phase": "Ready", "progress": 100, "observedGeneration": 1}
    assert asset.progress_line(stale) == "phase Ready, 100%"
    assert not asset.is_ready({**va, "status": stale}), "Ready for an earlier generation"
    assert asset.is_ready({**va, "status": {**stale, "observedGeneration": 2}})


def test_master_playlist_url_and_variants() -> None:
    player = "http://127.0.0.1:8080/play/t/k1~1~s~~sig/assets/default/demo/master.m3u8"
    assert playback.master_url(player) == (
        "http://127.0.0.1:8080/t/k1~1~s~~sig/assets/default/demo/master.m3u8"
    )
    with pytest.raises(ValueError, match="not a player URL"):
        playback.master_url("http://127.0.0.1:8080/t/x/master.m3u8")
    playlist = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2\nb\n"
    assert playback.variants(playlist) == 2


def test_phases_are_timed_and_totalled(capsys: pytest.CaptureFixture[str]) -> None:
    report = Reporter()
    with report.phase("cluster"):
        pass
    with report.phase("asset Ready"):
        pass
    lines = report.timings()
    assert [line.split("  ")[0].strip() for line in lines] == ["cluster", "asset Ready", "total"]
    assert "[cluster: 0.0 s]" in capsys.readouterr().out
