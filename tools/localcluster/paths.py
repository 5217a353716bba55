"""Where localcluster keeps things: one cache directory outside the repository."""

from __future__ import annotations

import os
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
