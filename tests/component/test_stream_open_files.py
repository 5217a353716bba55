"""The open-file cache's validity window (VOD_OPEN_FILE_CACHE_VALID_SECONDS, nginx's
`open_file_cache_valid`): a file changed beside the server is seen once the window has passed,
a write through the server at once, whatever the window."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.component.conftest import JWT_SECRET, ServerProcess, make_token

pytestmark = pytest.mark.component


def replace_on_disk(path: Path, data: bytes) -> None:
    """What a packaging Job or another replica does: a new file renamed over the old one."""
    temp = path.with_name(path.name + ".new")
    temp.write_bytes(data)
    os.replace(temp, path)


@pytest.mark.parametrize("window", [0.0, 3.0])
def test_a_file_replaced_beside_the_server_is_seen_once_the_window_has_passed(
    start_server, tmp_path: Path, window: float
) -> None:
    root = tmp_path / "media"
    root.mkdir()
    clip = root / "clip.mp4"
    clip.write_bytes(b"version one")
    server: ServerProcess = start_server(
        media_root=root, env={"VOD_OPEN_FILE_CACHE_VALID_SECONDS": str(window)}
    )
    with server.client() as c:
        first = c.get("/clip.mp4")
        assert first.content == b"version one"
        checked_at = time.monotonic()
        replace_on_disk(clip, b"version two, longer")
        second = c.get("/clip.mp4")
        if window == 0:
            # checked on every request: the new file at once, with its own validator
            assert second.content == b"version two, longer"
            assert second.headers["etag"] != first.headers["etag"]
            return
        assert time.monotonic() - checked_at < window, "the machine was too slow to tell"
        # within the window the kept descriptor is served: the old file, whole and consistent
        assert (second.content, second.headers["etag"]) == (b"version one", first.headers["etag"])
        while (got := c.get("/clip.mp4")).content == b"version one":
            assert time.monotonic() - checked_at < window + 2, "still the old file"
            time.sleep(0.1)
        assert time.monotonic() - checked_at >= window - 0.2
        assert got.content == b"version two, longer"
        assert got.headers["content-length"] == str(len(b"version two, longer"))


def test_a_write_through_the_server_is_seen_at_once_whatever_the_window(
    start_server, tmp_path: Path
) -> None:
    root = tmp_path / "media"
    root.mkdir()
    (root / "clip.mp4").write_bytes(b"on disk")
    (root / "other.mp4").write_bytes(b"other, on disk")
    server: ServerProcess = start_server(
        media_root=root,
        env={"VOD_JWT_SECRET": JWT_SECRET, "VOD_OPEN_FILE_CACHE_VALID_SECONDS": "600"},
    )
    auth = {"Authorization": f"Bearer {make_token()}"}
    with server.client() as c:
        assert c.get("/clip.mp4").content == b"on disk"
        assert c.get("/other.mp4").content == b"other, on disk"
        # beside the server: not seen for the window's 600 s
        replace_on_disk(root / "other.mp4", b"other, replaced beside")
        assert c.get("/other.mp4").content == b"other, on disk"
        # through it: seen by the next request, and the write empties the whole cache
        assert c.put("/clip.mp4", content=b"uploaded", headers=auth).status_code == 200
        assert c.get("/clip.mp4").content == b"uploaded"
        assert c.get("/other.mp4").content == b"other, replaced beside"
        assert c.delete("/clip.mp4", headers=auth).status_code == 204
        assert c.get("/clip.mp4").status_code == 404
