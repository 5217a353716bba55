"""`make demo`'s local path end to end, in a temporary state folder and its own cluster (a second
real node beside the session's): the operator deployed in-cluster from its image, the examples
Ready with real pods, a video uploaded through the platform's API and served back to a signed
Range request through `kubectl port-forward`; a second run over the first works too; `down`
stops everything, removes the state and leaves no node network behind."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from vod_delivery import demo, procs

pytestmark = [pytest.mark.cluster, pytest.mark.local_control_plane]


def test_demo_up_twice_then_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VOD_DEMO_CLUSTER", f"vod-demo-test-{os.getpid()}")
    root = tmp_path / "demo"
    paths = demo.Paths(root)
    try:
        assert demo.up(kind=False, root=root) == 0
        first = capsys.readouterr().out
        assert demo.up(kind=False, root=root) == 0
        second = capsys.readouterr().out
        forwarder = procs.running(paths.pid("port-forward"))
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
        assert "demo finished in" in out
    assert not root.exists()
    assert forwarder is not None
    assert not Path(f"/proc/{forwarder}").exists(), "port-forward still runs after down"
