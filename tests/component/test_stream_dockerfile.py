"""The serving image's command, run as a process: parse streaming/Dockerfile with the official
(BuildKit) parser, take the `serving` stage's ENTRYPOINT + CMD and ENV as written, and run exactly
that. The `packaging` stage is the serving image plus ffmpeg."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import dockerfile  # type: ignore[import-not-found]  # no type stubs published
import httpx
import pytest

from tests.component.conftest import ServerProcess

pytestmark = pytest.mark.component

DOCKERFILE = Path(__file__).resolve().parents[2] / "streaming" / "Dockerfile"


def stages() -> dict[str, list[dockerfile.Command]]:
    """Each named stage's instructions (its FROM first)."""
    commands = dockerfile.parse_file(str(DOCKERFILE))
    starts = [i for i, c in enumerate(commands) if c.cmd == "FROM"]
    result = {}
    for start, end in zip(starts, [*starts[1:], len(commands)], strict=True):
        words = commands[start].value
        name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(start)
        result[name] = list(commands[start:end])
    return result


def final_stage() -> list[dockerfile.Command]:
    """The serving image's stage (`--target serving`)."""
    return stages()["serving"]


def _runs_ffmpeg_install(stage: list[dockerfile.Command]) -> bool:
    return any("ffmpeg" in " ".join(c.value) for c in stage if c.cmd == "RUN")


def test_image_shape() -> None:
    stage = final_stage()
    by_cmd = {c.cmd: c for c in stage}
    assert by_cmd["USER"].value[0].split(":")[0] != "0"  # non-root, numeric
    assert by_cmd["USER"].value[0].split(":")[0].isdigit()
    assert by_cmd["ENTRYPOINT"].json  # exec form: SIGTERM reaches the server, not a shell
    assert by_cmd["CMD"].json
    assert "8080" in by_cmd["EXPOSE"].value
    assert not _runs_ffmpeg_install(stage)  # the serving image has no ffmpeg


def test_packaging_stage_is_serving_plus_ffmpeg() -> None:
    packaging = stages()["packaging"]
    assert packaging[0].value == ("serving", "AS", "packaging")
    assert _runs_ffmpeg_install(packaging)
    users = [c.value[0] for c in packaging if c.cmd == "USER"]
    assert users[-1].split(":")[0] not in ("0", "root")  # back to the non-root user
    assert not any(c.cmd in ("ENTRYPOINT", "CMD") for c in packaging)  # serving's command


def test_entrypoint_serves_a_media_root(tmp_path: Path) -> None:
    stage = final_stage()
    entry = next(c for c in stage if c.cmd == "ENTRYPOINT").value
    cmd = next(c for c in stage if c.cmd == "CMD").value
    image_env = dict(zip(*[iter(next(c for c in stage if c.cmd == "ENV").value)] * 2, strict=True))
    # In the image /opt/venv/bin is on PATH; here the same console script is in the venv's bin.
    program = shutil.which(entry[0], path=str(Path(sys.executable).parent))
    assert program is not None, f"{entry[0]} is not installed next to {sys.executable}"
    media = tmp_path / "media"
    media.mkdir()
    (media / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    (tmp_path / "keys").mkdir()
    env = {
        k: v
        for k, v in image_env.items()
        if k.startswith("PYTHON") or k == "VOD_METRICS_DIR"  # media root: the temp one
    }
    env["VOD_METRICS_DIR"] = str(tmp_path / "metrics")
    server = ServerProcess(media, tmp_path, env=env, command=[program, *entry[1:], *cmd])
    try:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        r = httpx.get(f"{server.url}/clip.mp4", headers={"Range": "bytes=4-11"})
        assert (r.status_code, r.content) == (206, b"ftypmp42")
    finally:
        assert server.terminate() == 0


def test_serve_flags_win_over_the_environment(tmp_path: Path) -> None:
    """`vod-stream serve --media-root ... --max-ranges ...` as `python -m http.server` users
    expect; a flag wins over the VOD_* variable."""
    program = shutil.which("vod-stream", path=str(Path(sys.executable).parent))
    assert program is not None
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.mp4").write_bytes(b"0123456789")
    (tmp_path / "keys").mkdir()
    server = ServerProcess(
        tmp_path / "elsewhere",  # VOD_MEDIA_ROOT (set by ServerProcess) loses to the flag
        tmp_path,
        env={"VOD_MAX_RANGES": "16"},
        command=[program, "serve", "--media-root", str(media), "--max-ranges", "1"],
    )
    try:
        one = httpx.get(f"{server.url}/a.mp4", headers={"Range": "bytes=0-0"})
        assert (one.status_code, one.content) == (206, b"0")
        two = httpx.get(f"{server.url}/a.mp4", headers={"Range": "bytes=0-0,5-5"})
        assert (two.status_code, two.content) == (200, b"0123456789")  # over --max-ranges 1
    finally:
        assert server.terminate() == 0
