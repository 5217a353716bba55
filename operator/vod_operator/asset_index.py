"""The VideoAssets last seen, by key and by the platform they name: a platform's event finds
the assets waiting for it without walking every asset in the cluster."""

from __future__ import annotations

Key = tuple[str, str]  # (namespace, name)


class AssetIndex:
    """(namespace, asset) -> (platform name, phase), with the reverse index kept in step."""

    def __init__(self) -> None:
        self._seen: dict[Key, tuple[str, str | None]] = {}
        self._by_platform: dict[Key, set[Key]] = {}

    def get(self, key: Key) -> tuple[str, str | None] | None:
        return self._seen.get(key)

    def set(self, key: Key, platform: str, phase: str | None) -> None:
        self.pop(key)
        self._seen[key] = (platform, phase)
        self._by_platform.setdefault((key[0], platform), set()).add(key)

    def pop(self, key: Key) -> None:
        before = self._seen.pop(key, None)
        if before is None:
            return
        platform = (key[0], before[0])
        waiting = self._by_platform.get(platform)
        if waiting is not None:
            waiting.discard(key)
            if not waiting:
                del self._by_platform[platform]

    def of_platform(self, platform: Key) -> list[Key]:
        """The assets in the platform's namespace that name it."""
        return sorted(self._by_platform.get(platform, ()))

    def __len__(self) -> int:
        return len(self._seen)
