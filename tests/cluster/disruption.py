"""What a node drain did to a platform: its streaming pods and PodDisruptionBudget sampled while
the drain runs (`Watch`), and the evictions and deletions the API server's audit log recorded
(`pod_writes`)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcluster.api import Api


def ready(obj: dict[str, Any]) -> bool:
    """A pod's or a node's Ready condition is True."""
    conditions = obj.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def healthy(pod: dict[str, Any]) -> bool:
    """As the disruption controller counts a pod: Ready and not being deleted."""
    return ready(pod) and not pod["metadata"].get("deletionTimestamp")


def placement(pods: list[dict[str, Any]]) -> dict[str, str]:
    """Pod name -> node name."""
    return {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in pods}


@dataclass(frozen=True)
class Sample:
    seconds: float
    #: Healthy pods by node.
    healthy: dict[str, int]
    #: The PDB's own status: currentHealthy, desiredHealthy, disruptionsAllowed.
    pdb: tuple[int, int, int]

    @property
    def total(self) -> int:
        return sum(self.healthy.values())


@dataclass
class Watch:
    """Samples the platform's pods and PDB every `interval` seconds in a thread, from `start()`
    to `stop()`, through the API (no kubectl process per sample)."""

    api: Api
    namespace: str
    selector: str
    pdb: str
    interval: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def pods(self) -> list[dict[str, Any]]:
        found = self.api.get_json(
            f"/api/v1/namespaces/{self.namespace}/pods?labelSelector={self.selector}"
        )
        return list((found or {}).get("items") or [])

    def _sample(self, began: float) -> None:
        pods = self.pods()
        pdb = self.api.get_json(
            f"/apis/policy/v1/namespaces/{self.namespace}/poddisruptionbudgets/{self.pdb}"
        )
        status = (pdb or {}).get("status") or {}
        by_node = Counter(p["spec"].get("nodeName", "") for p in pods if healthy(p))
        figures = (
            int(status.get("currentHealthy", 0)),
            int(status.get("desiredHealthy", 0)),
            int(status.get("disruptionsAllowed", 0)),
        )
        self.samples.append(Sample(round(time.monotonic() - began, 1), dict(by_node), figures))

    def _run(self) -> None:
        began = time.monotonic()
        while not self._stop.is_set():
            with contextlib.suppress(OSError):  # one missed sample; the next one counts
                self._sample(began)
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="drain-watch", daemon=True)
        self._thread.start()

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        return self.samples

    def changes(self) -> list[tuple[float, dict[str, int], tuple[int, int, int]]]:
        """The samples where something changed (for printing)."""
        shown: list[tuple[float, dict[str, int], tuple[int, int, int]]] = []
        for sample in self.samples:
            point = (sample.seconds, sample.healthy, sample.pdb)
            if not shown or shown[-1][1:] != point[1:]:
                shown.append(point)
        return shown


@dataclass(frozen=True)
class PodWrites:
    """Writes to a namespace's pods, as the audit log recorded them."""

    #: Eviction requests by response code (201: evicted, 429: refused by the budget).
    evictions: dict[int, int]
    #: DELETE requests on pods by user agent prefix (e.g. "kubectl", "kubelet").
    deletions: dict[str, int]


def pod_writes(audit_log: Path, namespace: str) -> PodWrites:
    """Count the evictions and deletions of pods in `namespace` (the cluster's audit policy
    records every write at Metadata level, with the response code and the user agent)."""
    evictions: Counter[int] = Counter()
    deletions: Counter[str] = Counter()
    for line in audit_log.read_text(errors="replace").splitlines():
        if namespace not in line:
            continue
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if ref.get("resource") != "pods" or ref.get("namespace") != namespace:
            continue
        code = int((event.get("responseStatus") or {}).get("code", 0))
        agent = str(event.get("userAgent", "")).split("/")[0]
        if ref.get("subresource") == "eviction" and event.get("verb") == "create":
            evictions[code] += 1
        elif not ref.get("subresource") and event.get("verb") == "delete":
            deletions[agent] += 1
    return PodWrites(dict(evictions), dict(deletions))
