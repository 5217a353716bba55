"""Map a URL path to a file under the media root, refusing anything that could leave it."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

_FORBIDDEN_CHARS = frozenset("\x00\\") | frozenset(chr(c) for c in range(0x20)) | {"\x7f"}


def media_path(url_path: str) -> str | None:
    """The root-relative path for a decoded URL path, or ``None`` when it may not be served.

    Refused: NUL and control characters, backslashes, ``.``/``..`` segments, and any segment
    starting with a dot (hidden files and the uploads' ``.vod-tmp`` staging folder). Empty
    segments (``//``) are dropped; the root itself (a directory) is refused.
    """
    if not url_path.startswith("/") or not _FORBIDDEN_CHARS.isdisjoint(url_path):
        return None
    segments = [s for s in url_path.split("/") if s]
    if not segments or any(s.startswith(".") for s in segments):
        return None
    return "/".join(segments)


@dataclass(frozen=True, slots=True)
class OpenFile:
    fd: int
    stat: os.stat_result


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


def real_path_of(fd: int) -> str:
    """The resolved path of an open file (one readlink on Linux, no race with renames)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # no /proc: resolve by name (slower, same answer absent concurrent renames)
        return os.path.realpath(os.path.join("/dev/fd", str(fd)))


def open_regular_file(root_real: str, relative: str) -> OpenFile | None:
    """Open ``relative`` under the (already resolved) root for reading.

    ``None`` unless it is a regular file whose resolved location (after every symlink) is
    inside the root. O_NONBLOCK keeps a FIFO from blocking the open.
    """
    try:
        fd = os.open(os.path.join(root_real, relative), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and _inside(root_real, real_path_of(fd)):
            return OpenFile(fd, info)
    except OSError:
        pass
    os.close(fd)
    return None


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
