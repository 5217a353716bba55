"""A small kubectl wrapper bound to one kubeconfig (the demo's only way to talk to the cluster)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Kubectl:
    """Run kubectl against one kubeconfig."""

    kubeconfig: Path
    binary: str = "kubectl"

    def env(self) -> dict[str, str]:
        """The process environment with KUBECONFIG pointing at this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run `kubectl ARGS`; raise with kubectl's own message when `check` and it fails."""
        proc = subprocess.run(
            [self.binary, *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def get(self, *args: str) -> dict[str, Any]:
        """`kubectl get ARGS -o json`, parsed."""
        out = self.run("get", *args, "-o", "json").stdout
        value: dict[str, Any] = json.loads(out)
        return value
