"""The signing key ring: a folder (a mounted Secret) where each file name is a key id.

Re-read at most once a second, so a rotated Secret takes effect without a restart; dotfiles
(Kubernetes' ``..data`` links and ``..2024_...`` folders) are skipped. The folder is read by the
compiled ``read_keys``, the one the data plane verifies signatures with.
"""

from __future__ import annotations

import time
from pathlib import Path

from vod_stream._dataplane import read_keys

RESCAN_SECONDS = 1.0
__all__ = ["KeyRing", "read_keys"]


class KeyRing:
    def __init__(self, folder: Path, active_key_id: str | None = None) -> None:
        self._folder = folder
        self._active = active_key_id
        self._keys: dict[str, bytes] = {}
        self._scanned = float("-inf")

    def _fresh(self) -> dict[str, bytes]:
        now = time.monotonic()
        if now - self._scanned >= RESCAN_SECONDS:
            self._keys = read_keys(self._folder)
            self._scanned = now
        return self._keys

    def get(self, key_id: str) -> bytes | None:
        return self._fresh().get(key_id)

    def active(self) -> tuple[str, bytes] | None:
        """The key used to sign: the configured id, else the last id in sorted order."""
        keys = self._fresh()
        if self._active is not None:
            key = keys.get(self._active)
            return (self._active, key) if key is not None else None
        if not keys:
            return None
        last = sorted(keys)[-1]
        return last, keys[last]
