"""No request reaches a file outside the media root: raw request lines, no client normalisation."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.component.conftest import ServerProcess, raw_request, status_of

pytestmark = pytest.mark.component

SECRET = b"TOP-SECRET-OUTSIDE-THE-ROOT"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("traversal")
    (base / "secret.txt").write_bytes(SECRET)
    (base / "outside").mkdir()
    (base / "outside" / "movie.mp4").write_bytes(SECRET)
    root = base / "media"
    (root / "sub").mkdir(parents=True)
    (root / "ok.mp4").write_bytes(b"inside")
    (root / ".hidden.mp4").write_bytes(SECRET)
    (root / ".vod-tmp").mkdir()
    (root / ".vod-tmp" / "upload-x").write_bytes(SECRET)
    os.symlink(base / "secret.txt", root / "link-out.mp4")
    os.symlink(base / "outside", root / "dir-out")
    os.symlink(root / "ok.mp4", root / "sub" / "link-in.mp4")
    os.mkfifo(root / "fifo.mp4")
    (base / "keys").mkdir()
    proc = ServerProcess(root, base)
    yield proc
    assert proc.terminate() == 0


def get(server: ServerProcess, target: str) -> bytes:
    return raw_request(
        server.port,
        f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1"),
    )


def test_inside_and_symlink_inside_are_served(server: ServerProcess) -> None:
    assert get(server, "/ok.mp4").endswith(b"\r\n\r\ninside")
    assert get(server, "/sub/link-in.mp4").endswith(b"\r\n\r\ninside")


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/..%2Fsecret.txt",
        "/sub%2f..%2f..%2fsecret.txt",
        "/%2e%2e%5csecret.txt",
        "/..\\secret.txt",
        "//../secret.txt",
        "/./../secret.txt",
        "/ok.mp4%00",
        "/ok.mp4%00.txt",
        "/link-out.mp4",
        "/dir-out/movie.mp4",
        "/.hidden.mp4",
        "/.vod-tmp/upload-x",
        "/%2evod-tmp/upload-x",
        "/fifo.mp4",
        "/sub",
        "/",
    ],
)
def test_escape_attempts_are_404(server: ServerProcess, target: str) -> None:
    response = get(server, target)
    assert SECRET not in response
    assert status_of(response) in (400, 404), response[:200]


def test_absolute_form_targets_never_escape(server: ServerProcess) -> None:
    for target in (
        "http://x/../secret.txt",
        "http://x/%2e%2e/secret.txt",
        str(Path("/etc/passwd")),
    ):
        response = get(server, target)
        assert SECRET not in response
        assert b"root:" not in response
        assert status_of(response) in (400, 404)


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /ok.mp4 HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /ok.mp4 HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
    ],
)
def test_malformed_requests_get_json_errors(server: ServerProcess, raw: bytes) -> None:
    response = raw_request(server.port, raw)
    head, _, body = response.partition(b"\r\n\r\n")
    assert status_of(response) in (400, 431)
    assert b"application/json" in head
    assert json.loads(body)["error"]["status"] == status_of(response)
