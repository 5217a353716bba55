"""`make demo`'s local path end to end, in a temporary state folder and its own cluster (a second
real node beside the session's): the operator deployed in-cluster from its image, the examples
Ready with real pods, a video uploaded through the platform's API and served back to a signed
Range request through `kubectl port-forward`, a VideoAsset made from it and watched until Ready,
and a signed player URL printed last that answers (and plays in Chromium when it is installed)
while the port-forward stays up; no S3 server image is built; each phase is timed; a second run
over the first works too; `down` stops everything, removes the state and leaves no node network
behind."""

from __future__ import annotations

import os
import re
import urllib.request
from pathlib import Path

import pytest

from vod_delivery import browser, demo, procs
from vod_delivery.playback import master_url

pytestmark = [pytest.mark.cluster, pytest.mark.local_control_plane]


def test_demo_up_twice_then_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VOD_DEMO_CLUSTER", f"vod-demo-test-{os.getpid()}")
    root = tmp_path / "demo"
    paths = demo.Paths(root)
    screenshot = tmp_path / "demo-player.png"
    try:
        assert demo.up(kind=False, root=root, screenshot=screenshot) == 0
        first = capsys.readouterr().out
        assert demo.up(kind=False, root=root, screenshot=screenshot) == 0
        second = capsys.readouterr().out
        forwarder = procs.running(paths.pid("port-forward"))
        # the demo has ended; the URL it printed last answers through the port-forward it left up
        player_url = second.rstrip().splitlines()[-1].strip()
        with urllib.request.urlopen(player_url, timeout=30) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/html")
        with urllib.request.urlopen(master_url(player_url), timeout=30) as resp:
            assert resp.status == 200
            assert resp.read().decode().count("#EXT-X-STREAM-INF:") == 2
    finally:
        demo.down(root=root)
    for out in (first, second):
        assert re.search(r"localcluster-node\s+Ready", out), "the real node is listed Ready"
        assert "deployment.apps/vod-operator" in out
        assert "vp/showcase" in out
        assert re.search(r"showcase-stream-\S+\s+1/1\s+Running", out), "real streaming pods"
        # created on the first run, replaced on the second
        assert re.search(r"PUT /demo\.mp4 \(\d+ bytes, Bearer JWT HS256\) -> 20[01]", out), out
        assert "-> 206, Content-Range: bytes 0-1023/" in out
        assert "GET without a signature -> 403 (signed URLs are on)" in out
        assert re.search(r"Prometheus ready in \d+ s at http://", out), "the monitoring stack"
        assert "port-forward svc/prometheus-k8s 9090:9090" in out
        assert "seaweedfs" not in out, "the demo builds no S3 server image"
        # the asset: applied, watched until Ready, its ladder served to a signed URL
        assert re.search(r"videoasset\.videoplatform\.io/demo (created|unchanged|configured)", out)
        assert re.search(r"\d+\.\d s  phase Ready, 100%", out), out
        assert "vod-stream sign --prefix /assets/default/demo/ --player --ttl 1800" in out
        assert "-> 200, application/vnd.apple.mpegurl, 2 variants" in out
        assert "GET the player page -> 200, text/html" in out
        if browser.installed():
            assert "Chromium: playing" in out
        else:
            assert "browser check skipped: Chromium is not installed" in out
        for phase in ("images", "cluster", "operator", "examples Ready", "upload", "range",
                      "asset Ready", "player", "total"):  # fmt: skip
            assert re.search(rf"^    {phase}\s+\d+\.\d s$", out, re.MULTILINE), phase
        assert "demo finished in" in out
        last = out.rstrip().splitlines()[-1].strip()
        assert re.fullmatch(
            r"http://127\.0\.0\.1:\d+/play/t/\S+/assets/default/demo/master\.m3u8", last
        ), "the demo ends with the player URL"
    assert screenshot.exists() == browser.installed()
    assert not root.exists()
    assert forwarder is not None
    assert not Path(f"/proc/{forwarder}").exists(), "port-forward still runs after down"
