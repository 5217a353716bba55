"""Find the binaries the control plane needs: $KUBEBUILDER_ASSETS, PATH, then the build cache."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

from localcluster.paths import bin_dir
from localcluster.versions import component_of, version_fits


@cache
def reported_version(path: str, args: tuple[str, ...]) -> str:
    """What `path args...` prints (empty when it cannot run)."""
    try:
        out = subprocess.run([path, *args], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return ""
    return out.stdout + out.stderr


def external(binary: str) -> Path | None:
    """`binary` from $KUBEBUILDER_ASSETS or PATH when its version fits the pinned one."""
    component = component_of(binary)
    candidates: list[str] = []
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / binary).is_file():
        candidates.append(str(Path(assets) / binary))
    on_path = shutil.which(binary)
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        if version_fits(reported_version(candidate, component.version_args), component.version):
            return Path(candidate)
    return None


def cached(binary: str) -> Path:
    """Where the builder puts `binary` (it may not exist yet)."""
    return bin_dir(component_of(binary)) / binary


def find(binary: str) -> Path | None:
    """The binary to use, or None when it still has to be built."""
    found = external(binary)
    if found is not None:
        return found
    built = cached(binary)
    return built if built.is_file() else None


def require(binary: str) -> Path:
    """Like `find`, but raise with the fix when the binary is missing."""
    found = find(binary)
    if found is None:
        raise FileNotFoundError(
            f"{binary} not built: run `make cluster-build` (python -m localcluster build)"
        )
    return found


def helm_path() -> Path:
    """The helm binary (built by `python -m localcluster build`, or a fitting one on PATH)."""
    return require("helm")
