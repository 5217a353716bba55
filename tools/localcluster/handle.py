"""`KubeCluster`: what tests and tools get for a cluster (kubeconfig, env, kubectl, server URL)."""

from __future__ import annotations

import json
import os
import subprocess
import time
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

    def wait_established(self, *crds: str, timeout: float = 60) -> None:
        """Until every CRD (`crd/<name>` or `<name>`) is Established and its resource is listed
        by discovery (what `kubectl explain` and `kubectl get <short name>` read, which the API
        server updates a moment after Established, and kubectl caches on disk). Polls: `kubectl
        wait` fails at once on a CRD created a moment ago, whose status has no conditions yet."""
        names = [crd.removeprefix("crd/") for crd in crds]
        deadline = time.monotonic() + timeout
        while True:
            result = self.kubectl("get", "crd", *names, "-o", "json", check=False, timeout=30)
            if result.returncode == 0:
                items = _items(result.stdout)
                if all(map(_established, items)) and all(map(self._discovered, items)):
                    return
            if time.monotonic() > deadline:
                raise KubectlError(
                    result.returncode or 1, result.args, result.stdout,
                    f"not Established and discovered after {timeout:.0f} s: {', '.join(names)}\n"
                    f"{result.stderr}",
                )  # fmt: skip
            time.sleep(0.5)

    def _discovered(self, crd: dict[str, Any]) -> bool:
        """Whether discovery lists the CRD's resource. `kubectl api-resources` reads discovery
        afresh and rewrites kubectl's disk cache, which later commands (`explain vp`) trust."""
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        answer = self.kubectl(
            "api-resources", f"--api-group={group}", "-o", "name", check=False, timeout=30
        )
        return answer.returncode == 0 and f"{plural}.{group}" in answer.stdout.split()


def _items(kubectl_json: str) -> list[dict[str, Any]]:
    """The objects of `kubectl get -o json` output: a List's items, or the one object."""
    document: dict[str, Any] = json.loads(kubectl_json)
    return list(document["items"]) if "items" in document else [document]


def _established(crd: dict[str, Any]) -> bool:
    conditions = crd.get("status", {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
