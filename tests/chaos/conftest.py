"""The chaos tier's own control plane and what each scenario works with.

These scenarios kill the API server, freeze etcd and compact its history: they get a control
plane of their own (`chaos_cluster`, kwok pods only), never the session's shared `kube_cluster`.
kwok's simulated pods suffice (the operator only needs Deployments whose pods become Ready);
300 platforms' real pods would not fit a 2-core machine.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from localcluster import KubeCluster, temporary_cluster
from localcluster.faults import ClusterFaults
from localcluster.flags import Layout
from tests.chaos import convergence
from tests.chaos.replicas import Replicas
from tests.cluster.audit import audited_writes
from tests.cluster.conftest import CRDS, Namespace, eventually
from vod_operator.kube import Kube, KubeError

#: The user agent prefix of the operator's own requests (`vod-operator/<version> (<identity>)`).
OPERATOR_AGENT = "vod-operator/"


@dataclass(frozen=True)
class ChaosCluster:
    kube: KubeCluster
    faults: ClusterFaults
    root: Path

    @property
    def audit_log(self) -> Path:
        return Layout(self.root).audit_log


@pytest.fixture(scope="module")
def chaos_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosCluster]:
    """Per module, so that it stops as soon as its scenarios are done (in `make test` the other
    tiers' control plane then has the machine to itself)."""
    root = tmp_path_factory.mktemp("chaos") / "cluster"
    with temporary_cluster(root, name="vod-chaos", real_node=False) as cluster:
        cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
        cluster.wait_established(
            "crd/videoplatforms.videoplatform.io", "crd/videoassets.videoplatform.io"
        )
        yield ChaosCluster(cluster, ClusterFaults(root), root)


def platform(name: str, namespace: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A VideoPlatform serving an emptyDir, with `spec` on top."""
    return {
        "apiVersion": "videoplatform.io/v1alpha1",
        "kind": "VideoPlatform",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"storage": {"emptyDir": {}}, **spec},
    }


@dataclass
class Timeline:
    """What was broken when, printed as seconds since the scenario began."""

    title: str
    began: float = field(default_factory=time.monotonic)
    entries: list[tuple[float, str]] = field(default_factory=list)

    def mark(self, what: str) -> float:
        """Note `what` now; seconds since the beginning."""
        at = time.monotonic() - self.began
        self.entries.append((at, what))
        print(f"  [{self.title}] +{at:6.1f} s  {what}", flush=True)
        return at


@dataclass
class Scenario:
    """One scenario: its namespace, the test's model of the platforms, the operator replicas."""

    cluster: ChaosCluster
    ns: Namespace
    lease_namespace: str
    log_dir: Path
    timeline: Timeline
    #: platform name -> the spec fields the test set (what the final state must show).
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)
    replicas: Replicas | None = None
    began: datetime = field(default_factory=lambda: datetime.now(UTC))
    _kube: Kube | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = convergence.kube_for(self.cluster.kube.kubeconfig)
        return self._kube

    def start_operators(self, kubeconfig: Path | None = None, **env: str) -> Replicas:
        """Two replicas behind the Lease `vod-operator` in this scenario's lease namespace."""
        environment = {
            **self.cluster.kube.env,
            "KUBECONFIG": str(kubeconfig or self.cluster.kube.kubeconfig),
            "VOD_OPERATOR_LEADER_ELECTION": "true",
            "VOD_OPERATOR_LEADER_ELECTION_NAMESPACE": self.lease_namespace,
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.replicas = Replicas(environment, self.log_dir)
        self.replicas.start()
        eventually(lambda: self.replicas is not None and self.replicas.leader(), timeout=60)
        self.timeline.mark(f"{len(self.replicas.members)} operator replicas up, one leads")
        return self.replicas

    # -- the platforms ------------------------------------------------------------------
    def apply(self, specs: Mapping[str, Mapping[str, Any]], timeout: float = 120) -> None:
        """Create or change platforms (name -> spec) in one kubectl apply; the model follows."""
        items = [platform(name, self.ns.name, spec) for name, spec in specs.items()]
        document = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        self.ns.kubectl("apply", "-f", "-", input=document, timeout=timeout)
        with self._lock:
            for name, spec in specs.items():
                self.expected[name] = {**self.expected.get(name, {}), **spec}

    def delete(self, name: str) -> None:
        self.ns.kubectl("delete", "videoplatform", name, "--wait=false")
        with self._lock:
            self.expected.pop(name, None)

    def inspect(self) -> convergence.Verdict:
        with self._lock:
            expected = {name: dict(spec) for name, spec in self.expected.items()}
        return convergence.inspect(self.kube, self.ns.name, expected)

    def converged(self, timeout: float) -> tuple[float, convergence.Verdict]:
        """Poll (every 2 s) until the namespace is in the exact final state; the seconds that
        took and the verdict. AssertionError with the last verdict when it is not in time."""
        began = time.monotonic()

        def exact() -> convergence.Verdict:
            try:
                verdict = self.inspect()
            except KubeError as exc:  # the API server is not back yet
                raise AssertionError(f"reading the state failed: {exc}") from exc
            assert verdict.exact, str(verdict)
            return verdict

        verdict = eventually(exact, timeout=timeout, interval=2.0)
        return time.monotonic() - began, verdict

    # -- what the operator did ----------------------------------------------------------
    def operator_writes(self, since: datetime | None = None) -> Counter[str]:
        """The operator's successful writes in this namespace since `since` (default: the
        scenario's start), as 'verb resource' -> count, from the API server's audit log (which,
        unlike its /metrics, outlives an API server restart)."""
        start = since or self.began
        return Counter(
            f"{w.verb} {w.resource}"
            for w in audited_writes(self.cluster.audit_log, self.ns.name)
            if w.agent.startswith(OPERATOR_AGENT) and w.at >= start
        )

    def at_rest(self, seconds: float = 15.0) -> Counter[str]:
        """The operator's writes in this namespace during `seconds` of doing nothing."""
        since = datetime.now(UTC)
        time.sleep(seconds)
        return self.operator_writes(since)


def writes_line(writes: Counter[str]) -> str:
    total = sum(writes.values())
    parts = ", ".join(f"{what} {n}" for what, n in sorted(writes.items()))
    return f"{total} ({parts})" if parts else "0"


@pytest.fixture
def scene(
    chaos_cluster: ChaosCluster, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Scenario]:
    gone_before(chaos_cluster.kube, timeout=180)
    suffix = uuid.uuid4().hex[:6]
    name, lease_namespace = f"chaos-{suffix}", f"chaos-lease-{suffix}"
    for namespace in (name, lease_namespace):
        chaos_cluster.kube.kubectl("create", "namespace", namespace)
    title = request.node.name.removeprefix("test_")
    ns = Namespace(name, chaos_cluster.kube)
    scene = Scenario(chaos_cluster, ns, lease_namespace, tmp_path, Timeline(title))
    try:
        yield scene
    finally:
        if scene.replicas is not None:
            scene.replicas.stop()
        for namespace in (name, lease_namespace):
            chaos_cluster.kube.kubectl(
                "delete", "namespace", namespace, "--wait=false", check=False
            )


def gone_before(cluster: KubeCluster, timeout: float) -> None:
    """Wait until the namespaces of earlier scenarios are gone (their platforms' deletion and
    garbage collection would otherwise load the next one)."""

    def none_left() -> bool:
        listed = cluster.kubectl("get", "namespaces", "-o", "name").stdout.split()
        return not [n for n in listed if n.startswith("namespace/chaos-")]

    eventually(none_left, timeout=timeout, interval=2.0)


@pytest.fixture
def rng() -> random.Random:
    """Seeded, so a failing run can be replayed (the seed is printed)."""
    seed = random.randrange(1 << 30)
    print(f"\nrandom seed {seed}")
    return random.Random(seed)
