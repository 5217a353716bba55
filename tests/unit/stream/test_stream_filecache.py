"""The open-file cache: reuse only while the path names the same file; never close in use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vod_stream.filecache import OpenFiles

pytestmark = pytest.mark.unit


def read(shared) -> bytes:
    return os.pread(shared.fileno(), 100, 0)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.mp4").write_bytes(b"first")
    return media


def test_hit_reuses_the_descriptor(root: Path) -> None:
    files = OpenFiles(str(root))
    first = files.open("a.mp4")
    second = files.open("a.mp4")
    assert first is not None
    assert second is first
    assert read(first) == b"first"
    first.close()
    second.close()
    assert os.fstat(first.fileno())  # still cached, still open


def test_replaced_file_is_reopened(root: Path) -> None:
    files = OpenFiles(str(root))
    old = files.open("a.mp4")
    assert old is not None
    staged = root / "staged"
    staged.write_bytes(b"second!")
    os.replace(staged, root / "a.mp4")
    new = files.open("a.mp4")
    assert new is not None
    assert new is not old
    assert read(new) == b"second!"
    assert read(old) == b"first"  # a response still sending the old file is unaffected
    old.close()
    assert old.fileno() == -1  # evicted and released: closed
    new.close()


def test_deleted_and_escaped_files(root: Path, tmp_path: Path) -> None:
    files = OpenFiles(str(root))
    (tmp_path / "secret").write_bytes(b"secret")
    os.symlink(root / "a.mp4", root / "link.mp4")
    link = files.open("link.mp4")
    assert link is not None
    assert read(link) == b"first"
    link.close()
    os.unlink(root / "link.mp4")
    os.symlink(tmp_path / "secret", root / "link.mp4")  # now points outside the root
    assert files.open("link.mp4") is None
    os.unlink(root / "a.mp4")
    assert files.open("a.mp4") is None
    assert files.open("missing.mp4") is None


def test_capacity_evicts_least_recently_used(root: Path) -> None:
    for name in "bcd":
        (root / f"{name}.mp4").write_bytes(name.encode())
    files = OpenFiles(str(root), capacity=2)
    held = files.open("a.mp4")
    assert held is not None
    for name in "bcd":
        opened = files.open(f"{name}.mp4")
        assert opened is not None
        opened.close()
    assert read(held) == b"first"  # evicted while in use: still readable
    held.close()
    assert held.fileno() == -1
    files.clear()
