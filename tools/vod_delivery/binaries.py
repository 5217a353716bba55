"""Where the command-line tools delivery needs come from (helm is built by localcluster)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def helm() -> str:
    """The helm binary: $HELM, else the one `localcluster` built, else helm on PATH."""
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    built = subprocess.run(
        [sys.executable, "-m", "localcluster", "which", "helm"],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode == 0 and built.stdout.strip():
        return built.stdout.strip().splitlines()[-1]
    found = shutil.which("helm")
    if found is None:
        raise FileNotFoundError("helm not found: run `make cluster-build` (it builds helm)")
    return found
