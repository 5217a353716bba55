"""Break a running local cluster on purpose, and mend it: the levers of the chaos tests.

`ClusterFaults(root)` kills a component and starts it again with the command line it was
started with (`restart`), pauses and resumes one (SIGSTOP/SIGCONT of its process group:
`paused`), and compacts etcd's history (`compact_etcd`, through etcd's v3 JSON gateway on its
client port), after which a watch resumed from an older revision is answered 410 Gone.
Components are named as in flags.COMPONENTS ("etcd", "kube-apiserver", ...).
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster import cluster, processes
from localcluster.flags import Layout


@dataclass(frozen=True)
class ClusterFaults:
    """Faults for the cluster in `root` (started by this process: see `start`)."""

    root: Path

    @property
    def _layout(self) -> Layout:
        return Layout(self.root)

    def kill(self, name: str) -> None:
        """SIGKILL the component (its whole process group) and wait until it is gone."""
        processes.kill(self._layout.pids, name, marker=str(self.root))

    def start(self, name: str, extra_args: tuple[str, ...] = (), timeout: float = 120) -> float:
        """Start the killed component again (`extra_args` this time only); seconds until it
        serves. From the thread that started the cluster (processes.respawn)."""
        return cluster.start_component(self.root, name, extra_args, timeout)

    def restart(self, name: str, extra_args: tuple[str, ...] = (), timeout: float = 120) -> float:
        """`kill`, then `start`; seconds from the kill until it serves again."""
        began = time.monotonic()
        self.kill(name)
        self.start(name, extra_args, timeout)
        return time.monotonic() - began

    def pause(self, name: str) -> None:
        """SIGSTOP: the component keeps its sockets but answers nothing."""
        processes.signal_component(self._layout.pids, name, str(self.root), signal.SIGSTOP)

    def resume(self, name: str) -> None:
        processes.signal_component(self._layout.pids, name, str(self.root), signal.SIGCONT)

    @contextmanager
    def paused(self, name: str) -> Iterator[None]:
        """The component is paused inside the block and resumed on the way out, whatever
        happens in it."""
        self.pause(name)
        try:
            yield
        finally:
            self.resume(name)

    def compact_etcd(self) -> int:
        """Compact etcd's key-value history up to its current revision (physically: the call
        returns once the old revisions are gone); that revision."""
        status = self._etcd("/v3/maintenance/status", {})
        revision = int(status["header"]["revision"])
        self._etcd("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def _etcd(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        port = cluster.ports_of(self.root).etcd_client
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer
