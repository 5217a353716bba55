"""The heart of the local demo: what the operator renders, mapped onto local folders, configures
a real `vod-stream serve` process that answers a signed Range request (and refuses an unsigned one).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.unit.operator import crdschema
from vod_delivery import demo, media, playback, procs, standin
from vod_delivery.podlocal import local_pod
from vod_delivery.report import Reporter
from vod_operator.render import RenderInputs, render
from vod_stream.config import PREFIX, SPECS

pytestmark = pytest.mark.component


def test_rendered_configuration_serves_a_signed_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    platform = crdschema.example_platform("showcase")
    platform["metadata"]["uid"] = "0000"
    key = base64.b64encode(b"s" * 32).decode()
    by_kind = {c["kind"]: c for c in render(platform, RenderInputs(signing_keys={"k1": key}))}
    jwt = next(d for d in crdschema.example_documents() if d["kind"] == "Secret")
    paths = demo.Paths(tmp_path / "state")
    pod = local_pod(
        by_kind["Deployment"],
        {by_kind["ConfigMap"]["metadata"]["name"]: by_kind["ConfigMap"]},
        {by_kind["Secret"]["metadata"]["name"]: by_kind["Secret"], "showcase-jwt": jwt},
        paths.volumes,
        container_name=demo.STREAM_CONTAINER,
        pvc_dirs={"videos": paths.media},
        program_defaults={f"{PREFIX}{spec.name}": spec.default for spec in SPECS},
    )
    standin.materialize(pod)
    media.make_test_video(paths.media / demo.VIDEO_NAME, seconds=1)
    env = standin.process_env(pod, None)
    report = Reporter()
    try:
        base_url = demo.start_stream_server(report, paths, pod, env)
        playback.stream_and_show(report, base_url, f"/{demo.VIDEO_NAME}", env)
    finally:
        procs.stop(paths.pid("stream"))
    out = capsys.readouterr().out
    size = (paths.media / demo.VIDEO_NAME).stat().st_size
    assert f"-> 206, Content-Range: bytes 0-1023/{size}" in out
    assert "GET without a signature -> 403" in out
    assert "host adaptation: VOD_HOST 0.0.0.0 -> 127.0.0.1" in out
