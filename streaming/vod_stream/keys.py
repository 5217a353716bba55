"""The signing key ring: a folder (a mounted Secret) where each file name is a key id.

Re-read at most once a second, so a rotated Secret takes effect without a restart; dotfiles
(Kubernetes' ``..data`` links and ``..2024_...`` folders) are skipped.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
RESCAN_SECONDS = 1.0


def read_keys(folder: Path) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return keys
    for name in names:
        if name.startswith(".") or not KEY_ID.fullmatch(name):
            continue
        try:
            with open(folder / name, "rb") as handle:
                key = handle.read(4096)
        except (IsADirectoryError, OSError):
            continue
        key = key.rstrip(b"\r\n")
        if key:
            keys[name] = key
    return keys


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
