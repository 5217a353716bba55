"""Operator-process fixtures for the cluster tier (one operator per session), and the
monitoring stack (`prometheus`, started only for the tests that request it).

The control plane itself comes from the session fixture `kube_cluster` (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from localcluster.promapi import Prometheus
from vod_operator.kube import WRITTEN_RESOURCES

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.25) -> T:
    """Poll `check` until it returns a truthy value (returned) or raise the last failure."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (AssertionError, subprocess.CalledProcessError, KeyError, IndexError) as exc:
            last = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {last!r}")


def image_alias(cluster: Any) -> str:
    """A new name for the bundled streaming image in the local cluster's real node, so that a
    Deployment really rolls to a "new image" that the node can run."""
    from localcluster import realnode
    from localcluster.node import NodeLayout
    from vod_operator.naming import DEFAULT_IMAGE

    alias = f"{DEFAULT_IMAGE}-alias-{uuid.uuid4().hex[:6]}"
    node = NodeLayout(Path(cluster.kubeconfig).parent)
    realnode.ctr(node, "images", "tag", "--force", DEFAULT_IMAGE, alias)
    return alias


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: The resources the operator writes (children, its own status, Events).
OPERATOR_RESOURCES = WRITTEN_RESOURCES
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE"})


def write_counts(cluster: Any) -> dict[tuple[str, str, str], int]:
    """The API server's own count of write requests, per (verb, resource, subresource)."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    counts: dict[tuple[str, str, str], int] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels, _, value = line.rpartition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if fields.get("verb") in WRITE_VERBS:
            key = (fields["verb"], fields.get("resource", ""), fields.get("subresource", ""))
            counts[key] = counts.get(key, 0) + int(float(value))
    return counts


@dataclass
class OperatorProcess:
    """`python -m vod_operator` against the test cluster; restartable (for resume tests)."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    #: Where /metrics listens: 127.0.0.1, or the host's address on the node network so that
    #: the cluster's Prometheus can scrape it (`operator_monitored`).
    metrics_address: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None

    @property
    def liveness_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/healthz"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metrics_address}:{self.metrics_port}/metrics"

    def start(self) -> None:
        log = self.log_path.open("ab")
        env = {
            **self.env,
            "VOD_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "VOD_OPERATOR_METRICS_BIND_ADDRESS": self.metrics_address,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vod_operator", "--liveness", self.liveness_url],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        eventually(self.alive, timeout=60)

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample the operator's /metrics serves, keyed by (name, labels)."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"operator exited; log: {self.log_tail()}")
        try:
            with urllib.request.urlopen(self.liveness_url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Replica:
    """An operator process behind a Lease, and whether it leads (from its own /metrics)."""

    process: OperatorProcess
    identity: str = ""

    def leading(self) -> bool | None:
        """leader_election_master_status as served (None: not served yet)."""
        try:
            samples = self.process.metrics()
        except OSError:
            return None
        for name, labels in samples:
            if name == "vod_operator_leader_election_info":
                self.identity = dict(labels)["identity"]
        status = [v for (n, _), v in samples.items() if n == "leader_election_master_status"]
        return bool(status[0]) if status else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the monitoring stack run last: installing it puts the Prometheus
    Operator's CRDs into the session's cluster for good, and earlier tests check how platforms
    behave without that API. Those that use KEDA run after them all: once KEDA serves keda.sh,
    every autoscaled platform renders a ScaledObject instead of an HPA."""

    def order(item: pytest.Item) -> tuple[bool, bool]:
        names = getattr(item, "fixturenames", ())
        return "prometheus" in names or "keda" in names, "keda" in names

    items.sort(key=order)


def install_crds(cluster: Any) -> Any:
    """The project's CRDs in `cluster`, Established and discovered; returns the cluster."""
    # As users of other operators type it: the whole folder, server-side.
    cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
    cluster.wait_established(
        "crd/videoplatforms.videoplatform.io", "crd/videoassets.videoplatform.io"
    )
    return cluster


@pytest.fixture(scope="session")
def crd_installed(kube_cluster: Any) -> Any:
    return install_crds(kube_cluster)


#: Where the session's operator holds its Lease.
OPERATOR_LEASE_NAMESPACE = "vod-test-operator"


@pytest.fixture(scope="session")
def operator(
    crd_installed: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    # As it runs in a pod: behind a Lease (its own namespace), so its metrics include the
    # election's and a restart hands over as in production.
    crd_installed.kubectl("create", "namespace", OPERATOR_LEASE_NAMESPACE, check=False)
    env = dict(crd_installed.env)
    env.update(
        {
            "VOD_OPERATOR_LEADER_ELECTION": "true",
            "VOD_OPERATOR_LEADER_ELECTION_NAMESPACE": OPERATOR_LEASE_NAMESPACE,
            "VOD_OPERATOR_MONITORING_PROBE_SECONDS": "3",
            # Frequent read-only passes, so "no writes at rest" covers reconciles too.
            "VOD_OPERATOR_RESYNC_SECONDS": "5",
            "VOD_OPERATOR_MAX_BACKOFF_SECONDS": "10",
            "PYTHONUNBUFFERED": "1",
        }
    )
    proc = OperatorProcess(
        env=env,
        log_path=tmp_path_factory.mktemp("operator") / "operator.log",
        metrics_address=pod_reachable_address(crd_installed),
    )
    proc.start()
    yield proc
    proc.stop()
    if os.environ.get("VOD_SHOW_OPERATOR_LOG"):
        print(proc.log_tail(200))


@pytest.fixture(scope="session")
def prometheus(kube_cluster: Any) -> Prometheus:
    """The monitoring stack in the session's cluster: the Prometheus Operator and one Prometheus
    selecting ServiceMonitors, PodMonitors and PrometheusRules in every namespace (rules evaluated
    every 5 s), installed once, on the first request (localcluster.monitoring).

    The object answers through Prometheus' API at its pod IP (the host routes the node's pod
    range): `.query(expr) -> list[dict]` (`data.result`), `.api(path, **params)` (the `data` of
    `/api/v1/<path>`: "targets", "rules", "alerts", ...), `.targets(namespace=None)` (active
    targets), `.wait_for(check, timeout)` (poll until truthy) and `.url`.
    Needs the local cluster's real node; fails (never skips) without it."""
    from localcluster import monitoring

    try:
        installed = monitoring.install(kube_cluster)
    except (RuntimeError, FileNotFoundError) as exc:
        pytest.fail(f"the monitoring stack did not come up: {exc}", pytrace=False)
    print(f"\nmonitoring stack ready in {installed.seconds:.1f} s at {installed.prometheus.url}")
    return installed.prometheus


@pytest.fixture(scope="session")
def keda(prometheus: Prometheus, kube_cluster: Any) -> Prometheus:
    """KEDA in the session's cluster beside the monitoring stack: its operator and its
    external-metrics API server (built from KEDA's Go module, local images, an APIService the
    aggregation layer serves; localcluster.keda), installed once, on the first request. The
    vod operator sees keda.sh served and renders ScaledObjects from then on. Returns the
    session's Prometheus (what the ScaledObjects' triggers query)."""
    from localcluster import keda as keda_stack

    try:
        took = keda_stack.install(kube_cluster)
    except (RuntimeError, FileNotFoundError) as exc:
        pytest.fail(f"KEDA did not come up: {exc}", pytrace=False)
    print(f"\nKEDA ready in {took:.1f} s")
    return prometheus


def pod_reachable_address(cluster: Any) -> str:
    """The host's address pods reach (the one the API server advertises on the node network),
    when it is an address of this machine; 127.0.0.1 otherwise (e.g. kind, where the operator
    under test is not reachable from pods anyway)."""
    result = cluster.kubectl(
        "get", "endpoints", "kubernetes", "-n", "default",
        "-o", "jsonpath={.subsets[0].addresses[0].ip}", check=False,
    )  # fmt: skip
    address = str(result.stdout).strip()
    if not address or address.startswith("127."):
        return "127.0.0.1"
    with socket.socket() as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return "127.0.0.1"
    return address


#: Where the session's operator is made a scrape target (a Service without selector).
OPERATOR_METRICS_NAMESPACE = "vod-test-operator-metrics"


@pytest.fixture(scope="session")
def operator_monitored(operator: OperatorProcess, prometheus: Any, kube_cluster: Any) -> Any:
    """The session's operator, scraped by the session's Prometheus through the ServiceMonitor
    the kustomize component ships (manifests/components/monitoring/servicemonitor.yaml, in a
    namespace of its own). The operator runs on the host, so its metrics Service has no
    selector and an Endpoints object names the host's address on the node network. Returns the
    Prometheus once the target is up."""
    import yaml

    if operator.metrics_address == "127.0.0.1":
        pytest.fail("the operator's metrics are not reachable from pods here", pytrace=False)
    ns = OPERATOR_METRICS_NAMESPACE
    component = ROOT / "manifests" / "components" / "monitoring"
    monitor = yaml.safe_load((component / "servicemonitor.yaml").read_text())
    service = yaml.safe_load((component / "metrics-service.yaml").read_text())
    monitor["metadata"]["namespace"] = service["metadata"]["namespace"] = ns
    for endpoint in monitor["spec"]["endpoints"]:
        endpoint["interval"] = "5s"  # as the test platforms' (spec.monitoring.scrapeInterval)
    del service["spec"]["selector"]  # the operator is no pod: the Endpoints below
    (port,) = service["spec"]["ports"]
    port["targetPort"] = operator.metrics_port
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": service["metadata"]["name"], "namespace": ns,
                     "labels": service["metadata"]["labels"]},
        "subsets": [{
            "addresses": [{"ip": operator.metrics_address}],
            "ports": [{"name": port["name"], "port": operator.metrics_port, "protocol": "TCP"}],
        }],
    }  # fmt: skip
    kube_cluster.kubectl("create", "namespace", ns, check=False)
    kube_cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                              "items": [service, endpoints, monitor]}),
    )  # fmt: skip

    def operator_up() -> bool:
        result = prometheus.query('up{job="vod-operator"}')
        return bool(result) and all(r["value"][1] == "1" for r in result)

    prometheus.wait_for(operator_up, timeout=120)
    return prometheus


@dataclass
class Namespace:
    """A throw-away namespace plus kubectl/JSON helpers scoped to it."""

    name: str
    cluster: Any

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> Any:
        return self.cluster.kubectl(
            "-n", self.name, *args, input=input, check=check, timeout=timeout
        )

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", kind, name, "-o", "json").stdout)  # type: ignore[no-any-return]

    def exists(self, kind: str, name: str) -> bool:
        result = self.kubectl("get", kind, name, "--ignore-not-found", "-o", "name", check=False)
        return bool(result.stdout.strip())

    def apply(self, manifest: str) -> Any:
        return self.kubectl("apply", "-f", "-", input=manifest)


@pytest.fixture
def namespace(operator: OperatorProcess, kube_cluster: Any) -> Iterator[Namespace]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube_cluster.kubectl("create", "namespace", name)
    yield Namespace(name=name, cluster=kube_cluster)
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
