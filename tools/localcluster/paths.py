"""Where localcluster keeps things: one cache directory outside the repository."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from localcluster.versions import Component


def cache_root() -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/vod-operator`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vod-operator"


def bin_dir(component: Component) -> Path:
    """Versioned folder of a component's built binaries, e.g. `bin/kubernetes-v1.33.13`."""
    return cache_root() / "bin" / f"{component.name}-{component.version}"


def build_dir(component: Component) -> Path:
    """The throwaway Go module a component is built in."""
    return cache_root() / "build" / f"{component.name}-{component.version}"


def clusters_dir() -> Path:
    """Named clusters started with `python -m localcluster up --name N` live here."""
    return cache_root() / "clusters"


def kwok_stages() -> Path:
    """kwok v0.8.0's own fast node/pod Stage configs, copied from its module by the builder."""
    from localcluster.versions import component_of

    return bin_dir(component_of("kwok")) / "stages.yaml"


def images_dir() -> Path:
    """Image archives (`<name>-<content hash>.tar`), each with a `.json` note beside it."""
    return cache_root() / "images"


def engine_dir() -> Path:
    """The private Docker engine's socket, data root (its layer cache) and exec root."""
    return cache_root() / "docker"


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (one builder of a thing at a time on this machine,
    across processes: a test session and `make cluster-up` may start together)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
