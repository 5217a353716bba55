"""`make demo`'s local path end to end, in a temporary state folder and its own control plane:
the operator's rendering configures a local vod-stream that serves a signed Range request; a
second run over the first works too; `down` stops every process and removes the state."""

from __future__ import annotations

import os
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
        started = [procs.running(paths.pid(name)) for name in ("operator", "stream")]
    finally:
        demo.down(root=root)
    for out in (first, second):
        assert "vp/showcase" in out
        assert "-> 206, Content-Range: bytes 0-1023/" in out
        assert "GET without a signature -> 403 (signed URLs are on)" in out
        assert "(rendered /etc/vod/signing)" in out
    assert not root.exists()
    for pid in started:
        assert pid is not None
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} still runs after down"
