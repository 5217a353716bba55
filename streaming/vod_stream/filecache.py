"""Open file descriptors kept between requests, as nginx's ``open_file_cache`` does.

A hit costs one ``stat()`` of the path instead of open + fstat + readlink + close. The stat
follows symlinks, and the entry is used only when it still names the same file (device, inode,
size, modification time): a replaced, modified or deleted file, or a symlink that now points
elsewhere, is reopened through ``open_regular_file`` and its checks. Descriptors are
reference-counted, so evicting an entry never closes a file a response is still sending.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict

from vod_stream.paths import open_regular_file

_SAME = ("st_dev", "st_ino", "st_size", "st_mtime_ns")


class SharedFile:
    """A file object for ``loop.sendfile`` over a shared descriptor; ``close`` releases it."""

    mode = "rb"

    def __init__(self, fd: int, stat: os.stat_result) -> None:
        self._fd = fd
        self.stat = stat
        self._users = 0
        self._evicted = False
        self._position = 0

    def fileno(self) -> int:
        return self._fd

    def seek(self, offset: int, whence: int = 0) -> int:  # asyncio records the end offset
        self._position = offset
        return offset

    def tell(self) -> int:
        return self._position

    def acquire(self) -> SharedFile:
        self._users += 1
        return self

    def close(self) -> None:
        """Release one user; the descriptor closes once evicted and unused."""
        self._users -= 1
        self._release_if_done()

    def evict(self) -> None:
        self._evicted = True
        self._release_if_done()

    def _release_if_done(self) -> None:
        if self._evicted and self._users <= 0 and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SharedFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class OpenFiles:
    def __init__(self, root_real: str, capacity: int = 256, valid_seconds: float = 30) -> None:
        self._root = root_real
        self._capacity = capacity
        self._valid = valid_seconds
        self._entries: OrderedDict[str, tuple[SharedFile, float]] = OrderedDict()

    def open(self, relative: str) -> SharedFile | None:
        """The file at ``relative`` (acquired: the caller closes it), or ``None``."""
        try:
            current = os.stat(os.path.join(self._root, relative))
        except OSError:
            self._drop(relative)
            return None
        now = time.monotonic()
        cached = self._entries.get(relative)
        if cached is not None:
            shared, opened_at = cached
            if now - opened_at < self._valid and all(
                getattr(shared.stat, a) == getattr(current, a) for a in _SAME
            ):
                self._entries.move_to_end(relative)
                return shared.acquire()
            self._drop(relative)
        opened = open_regular_file(self._root, relative)
        if opened is None:
            return None
        shared = SharedFile(opened.fd, opened.stat)
        self._entries[relative] = (shared, now)
        while len(self._entries) > self._capacity:
            _, (oldest, _) = self._entries.popitem(last=False)
            oldest.evict()
        return shared.acquire()

    def _drop(self, relative: str) -> None:
        cached = self._entries.pop(relative, None)
        if cached is not None:
            cached[0].evict()

    def clear(self) -> None:
        for shared, _ in self._entries.values():
            shared.evict()
        self._entries.clear()
