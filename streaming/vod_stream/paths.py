"""Where an upload may be written under the media root.

Reading is confined by the compiled rules (``media_path`` and ``open_regular_file`` in
``vod_stream._dataplane``, re-exported here): one implementation for the data plane and Python.
"""

from __future__ import annotations

import os
import stat

from vod_stream._dataplane import media_path, open_regular_file

__all__ = ["media_path", "open_regular_file", "writable_target"]


def _inside(root_real: str, real: str) -> bool:
    return real.startswith(root_real.rstrip("/") + "/")


def _root_or_inside(root_real: str, path: str) -> bool:
    """Whether ``path``, resolved (every symlink followed), is the root or inside it."""
    real = os.path.realpath(path)
    return real == root_real or _inside(root_real, real)


def _deepest_existing(path: str) -> str:
    """``path`` or its nearest ancestor that exists (a dangling symlink counts: it exists)."""
    while not os.path.lexists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    return path


def writable_target(root_real: str, relative: str) -> str | None:
    """The absolute path to write ``relative`` to, creating parent folders inside the root.

    ``None`` when a parent resolves outside the root or is not a folder, or when the target
    exists and is not a regular file or symlink (for example a folder). Nothing is created
    unless the deepest existing ancestor resolves inside the root (a symlinked folder pointing
    elsewhere gets no new folders), and the parent is checked again once created.
    """
    target = os.path.join(root_real, relative)
    parent = os.path.dirname(target)
    if not _root_or_inside(root_real, _deepest_existing(parent)):
        return None
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError:
        return None
    if not _root_or_inside(root_real, parent):
        return None
    try:
        existing = os.lstat(target)
    except FileNotFoundError:
        return target
    except OSError:
        return None
    if stat.S_ISREG(existing.st_mode) or stat.S_ISLNK(existing.st_mode):
        return target
    return None


def fsync_dir(path: str) -> None:
    """Make a rename or create inside the folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
