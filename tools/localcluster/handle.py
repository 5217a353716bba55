"""`KubeCluster`: what tests and tools get for a cluster (kubeconfig, env, kubectl, server URL)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call whose message includes kubectl's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr or ''}".rstrip()


def server_of(kubeconfig_text: str) -> str:
    """The server URL of a kubeconfig's current context."""
    config: dict[str, Any] = yaml.safe_load(kubeconfig_text)
    contexts = {c["name"]: c["context"] for c in config.get("contexts") or []}
    clusters = {c["name"]: c["cluster"] for c in config.get("clusters") or []}
    current = config.get("current-context") or next(iter(contexts), "")
    if current in contexts:
        return str(clusters[contexts[current]["cluster"]]["server"])
    if len(clusters) == 1:
        return str(next(iter(clusters.values()))["server"])
    raise ValueError("kubeconfig has no current context")


@dataclass
class KubeCluster:
    """A reachable cluster. `env` is os.environ plus KUBECONFIG; `kubectl` runs with it."""

    kubeconfig: Path
    server: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kubeconfig = Path(self.kubeconfig).resolve()
        if not self.server:
            self.server = server_of(self.kubeconfig.read_text())
        if not self.env:
            self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raise KubectlError (with stderr) when check fails."""
        result = subprocess.run(
            ["kubectl", *args],
            input=input,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, result.args, result.stdout, result.stderr)
        return result
