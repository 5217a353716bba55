"""The demo's building blocks: example discovery, storage stand-in, host adaptation, processes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.operator import crdschema
from vod_delivery import demo, examples, media, procs, standin
from vod_delivery.podlocal import local_pod
from vod_operator.render import RenderInputs, render

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


def test_operator_rendering_maps_onto_local_folders(tmp_path: Path) -> None:
    """What the operator renders for the showcase example runs locally with paths rewritten."""
    platform = crdschema.example_platform("showcase")
    platform["metadata"]["uid"] = "0000"
    key = base64.b64encode(b"k" * 32).decode()
    children = render(platform, RenderInputs(signing_keys={"k1": key}))
    by_kind = {c["kind"]: c for c in children}
    configmaps = {by_kind["ConfigMap"]["metadata"]["name"]: by_kind["ConfigMap"]}
    jwt_secret = next(d for d in crdschema.example_documents() if d["kind"] == "Secret")
    assert "stringData" in jwt_secret  # local_pod reads stringData like the API server stores it
    secrets = {by_kind["Secret"]["metadata"]["name"]: by_kind["Secret"], "showcase-jwt": jwt_secret}
    media_dir = tmp_path / "media"
    pod = local_pod(
        by_kind["Deployment"],
        configmaps,
        secrets,
        tmp_path / "vols",
        container_name=demo.STREAM_CONTAINER,
        pvc_dirs={"videos": media_dir},
    )
    standin.materialize(pod)
    assert pod.command[0] == "vod-stream"
    assert pod.env["VOD_MEDIA_ROOT"] == str(media_dir)
    keys_dir = Path(pod.env["VOD_SIGNING_KEYS_DIR"])
    assert (keys_dir / "k1").read_bytes() == b"k" * 32
    assert Path(pod.env["VOD_JWT_SECRET_FILE"]).read_text().startswith("change-me")
    assert Path(pod.env["VOD_CACHE_DIR"]).is_dir()
    leftover = {k: v for k, v in pod.env.items() if v.startswith(("/media", "/etc/vod", "/var/"))}
    assert leftover == {}, "every path into a mount must point at its local folder"
    changes = standin.host_adapted(pod, 18080)
    assert changes["VOD_HOST"] == ("0.0.0.0", "127.0.0.1")
    assert changes["VOD_PORT"] == ("8080", "18080")


def test_process_env_keeps_the_pod_env_and_finds_python(tmp_path: Path) -> None:
    pod = local_pod(
        {
            "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "env": [
                {"name": "PATH", "value": "/pod/bin"}, {"name": "VOD_X", "value": "1"}]}]}}},
        },
        {},
        {},
        tmp_path,
    )  # fmt: skip
    env = standin.process_env(pod, tmp_path)
    assert env["VOD_X"] == "1"
    assert env["TMPDIR"] == str(tmp_path)
    assert env["PATH"] == "/pod/bin"  # the pod's own settings win


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
