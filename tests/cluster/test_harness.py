"""The local control plane does what the cluster tier relies on: CRDs, validation, scheduling and
Ready pods (kwok), garbage collection (controller-manager), kubectl, and write counting."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from localcluster import KubeCluster, binaries, write_request_count
from localcluster.flags import KWOK_TAINT
from localcluster.versions import CONTROL_PLANE_BINARIES

pytestmark = pytest.mark.cluster
T = TypeVar("T")

GROUP = "harness.vod.test"
CRD = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.{GROUP}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{plural: gadgets, singular: gadget, kind: Gadget}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {{type: integer, minimum: 1, maximum: 10}}
                colour: {{type: string, enum: [red, blue]}}
"""


def eventually(check: Callable[[], T | None], timeout: float = 60, interval: float = 0.5) -> T:
    """Poll `check` until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        time.sleep(interval)


def get_json(cluster: KubeCluster, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
    return result


@pytest.fixture
def ns(kube_cluster: KubeCluster) -> Iterator[str]:
    name = f"harness-{uuid.uuid4().hex[:6]}"
    kube_cluster.kubectl("create", "namespace", name)
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def gadget_crd(kube_cluster: KubeCluster) -> str:
    kube_cluster.kubectl("apply", "-f", "-", input=CRD)
    kube_cluster.wait_established(f"crd/gadgets.{GROUP}")
    return f"gadgets.{GROUP}"


def test_crd_established_and_custom_object_round_trips(
    kube_cluster: KubeCluster, gadget_crd: str, ns: str
) -> None:
    crd = get_json(kube_cluster, "crd", gadget_crd)
    established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert established["Established"] == "True"

    gadget = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gadget",
        "metadata": {"name": "g1", "namespace": ns},
        "spec": {"size": 3, "colour": "blue"},
    }
    kube_cluster.kubectl("create", "-f", "-", input=json.dumps(gadget))
    stored = get_json(kube_cluster, "-n", ns, "gadget", "g1")
    assert stored["spec"] == {"size": 3, "colour": "blue"}
    assert stored["metadata"]["uid"]


def test_schema_invalid_object_is_refused_with_the_field_named(
    kube_cluster: KubeCluster, gadget_crd: str, ns: str
) -> None:
    bad = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gadget",
        "metadata": {"name": "bad", "namespace": ns},
        "spec": {"size": 99, "colour": "green"},
    }
    result = kube_cluster.kubectl("create", "-f", "-", input=json.dumps(bad), check=False)
    assert result.returncode != 0
    assert "is invalid" in result.stderr
    assert "spec.size: Invalid value: 99: spec.size in body should be less than or equal to 10" in (
        result.stderr
    )
    assert 'spec.colour: Unsupported value: "green"' in result.stderr
    missing = kube_cluster.kubectl("get", "-n", ns, "gadget", "bad", check=False)
    assert "NotFound" in missing.stderr


@pytest.mark.local_control_plane
def test_deployment_pods_are_scheduled_and_ready(kube_cluster: KubeCluster, ns: str) -> None:
    # A scale-test workload: it tolerates the kwok nodes' taint and selects them, so its pods
    # are simulated even when the cluster has a real node (where this image could not run).
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "nodeSelector": {"type": "kwok"},
                    "tolerations": [{**KWOK_TAINT, "operator": "Equal"}],
                    "containers": [{"name": "web", "image": "registry.invalid/web:1"}],
                },
            },
        },
    }
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(deployment))

    def ready_replicas() -> int:
        status = get_json(kube_cluster, "-n", ns, "deployment", "web").get("status", {})
        return int(status.get("readyReplicas", 0)) if status.get("readyReplicas") == 2 else 0

    assert eventually(ready_replicas) == 2
    pods = get_json(kube_cluster, "-n", ns, "pods", "-l", "app=web")["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == "kwok-node-0", "bound to the kwok node"
        assert pod["status"]["phase"] == "Running"
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True"


def test_deleting_the_owner_garbage_collects_the_dependent(
    kube_cluster: KubeCluster, ns: str
) -> None:
    kube_cluster.kubectl("-n", ns, "create", "configmap", "owner")
    owner_uid = get_json(kube_cluster, "-n", ns, "configmap", "owner")["metadata"]["uid"]
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": ns,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}
            ],
        },
    }
    kube_cluster.kubectl("create", "-f", "-", input=json.dumps(dependent))
    kube_cluster.kubectl("-n", ns, "delete", "configmap", "owner", "--wait=true")

    def gone() -> bool:
        found = kube_cluster.kubectl(
            "-n", ns, "get", "configmap", "dependent", "--ignore-not-found", "-o", "name"
        )
        return found.stdout.strip() == ""

    assert eventually(gone)


@pytest.mark.local_control_plane
def test_kubectl_lists_nodes_and_pods_with_the_kubeconfig(kube_cluster: KubeCluster) -> None:
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(kube_cluster.kubeconfig), "get", "nodes,pods", "-A"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "node/" in out
    assert " Ready " in out
    nodes = get_json(kube_cluster, "nodes")["items"]
    assert any(n["metadata"]["annotations"].get("kwok.x-k8s.io/node") == "fake" for n in nodes)


def test_write_request_count_sees_writes_and_not_reads(kube_cluster: KubeCluster, ns: str) -> None:
    def quiet() -> int | None:
        """The count once the control plane has settled: no namespace (of earlier tests) is
        being deleted, and no writes for 2 s."""
        namespaces = get_json(kube_cluster, "namespaces")["items"]
        if any(n.get("status", {}).get("phase") == "Terminating" for n in namespaces):
            return None
        first = write_request_count(kube_cluster.kubeconfig)
        time.sleep(2)
        return first if write_request_count(kube_cluster.kubeconfig) == first else None

    def reads_in_a_quiet_window() -> int:
        """Writes counted across three reads made in a window that began quiet."""
        start = eventually(quiet, timeout=90, interval=0)
        for _ in range(3):
            kube_cluster.kubectl("-n", ns, "get", "configmaps")
        return write_request_count(kube_cluster.kubeconfig) - start

    # The control plane (the Job and GC controllers finishing earlier tests' work) can write in any
    # window; reads counted as writes would show in every attempt, a stray write in only one.
    deltas = []
    for _ in range(4):
        deltas.append(reads_in_a_quiet_window())
        if deltas[-1] == 0:
            break
    assert deltas[-1] == 0, f"reads are not writes: writes counted in each window: {deltas}"
    before = write_request_count(kube_cluster.kubeconfig)

    kube_cluster.kubectl("-n", ns, "create", "configmap", "counted")
    kube_cluster.kubectl("-n", ns, "label", "configmap", "counted", "x=y")
    kube_cluster.kubectl("-n", ns, "delete", "configmap", "counted")
    after = write_request_count(kube_cluster.kubeconfig)
    # POST, PATCH and DELETE; the control plane may add its own writes in between, never fewer.
    assert after - before >= 3


# --------------------------------------------------------------------- lifecycle of other clusters

CHILD = """
import sys, time
from pathlib import Path
from localcluster import temporary_cluster
with temporary_cluster(Path(sys.argv[1]), name="child", real_node=False) as cluster:
    print(cluster.server, flush=True)
    time.sleep(600)
"""


def processes_mentioning(marker: str) -> list[int]:
    """Pids of running processes whose command line contains `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


@pytest.mark.local_control_plane
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_an_interrupted_session_leaves_no_processes(tmp_path: Path, sig: signal.Signals) -> None:
    root = tmp_path / "child-cluster"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        server = child.stdout.readline().strip()
        assert server.startswith("https://127.0.0.1:"), "the child cluster came up"
        components = set(processes_mentioning(str(root))) - {child.pid}
        assert len(components) == 5, components  # etcd, apiserver, cm, scheduler, kwok
        child.send_signal(sig)
        child.wait(timeout=60)
        assert eventually(lambda: not processes_mentioning(str(root)), timeout=30)
        pid_files = list((root / "pids").glob("*.pid"))
        if sig == signal.SIGTERM:  # the handler stopped the cluster and cleaned up
            assert pid_files == []
        else:  # nothing in the process ran: the kernel killed the components (PDEATHSIG)
            assert len(pid_files) == 5
    finally:
        child.kill()
        child.wait()


@pytest.mark.local_control_plane
def test_up_status_and_down_from_separate_processes(tmp_path: Path) -> None:
    name = f"harness-{uuid.uuid4().hex[:6]}"
    # The control plane's lifecycle (the real node's is test_node_cleanup's).
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "LOCALCLUSTER_REAL_NODE": "0"}
    # Reuse the built binaries: a fitting kube-apiserver etc. on PATH is taken as is.
    bins = sorted({str(binaries.require(b).parent) for b in CONTROL_PLANE_BINARIES})
    env["PATH"] = os.pathsep.join([*bins, env["PATH"]])

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "localcluster", *args, "--name", name],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    up = cli("up")
    assert up.returncode == 0, up.stderr
    root = tmp_path / "cache" / "vod-operator" / "clusters" / name
    try:
        assert f"export KUBECONFIG={root / 'kubeconfig'}" in up.stdout
        assert cli("status").returncode == 0
        nodes = subprocess.run(
            ["kubectl", "--kubeconfig", str(root / "kubeconfig"), "get", "nodes"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        assert "Ready" in nodes
        assert len(processes_mentioning(str(root))) == 5
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stderr
    assert not processes_mentioning(str(root))
    assert not root.exists()
    assert cli("status").returncode == 1


@pytest.mark.local_control_plane
def test_a_port_taken_before_the_start_is_retried_with_new_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from localcluster import cluster

    real_free_ports = cluster.free_ports
    calls: list[list[int]] = []
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = int(squatter.getsockname()[1])

        def first_one_taken(count: int) -> list[int]:
            ports = real_free_ports(count)
            if not calls:
                ports[0] = taken  # etcd's client port
            calls.append(ports)
            return ports

        monkeypatch.setattr(cluster, "free_ports", first_one_taken)
        root = tmp_path / "retry"
        try:
            up = cluster.start(root, "retry", die_with_parent=True)
            assert len(calls) == 2
            assert up.server == f"https://127.0.0.1:{calls[1][2]}"
            assert "a port was taken meanwhile" in capfd.readouterr().err
        finally:
            cluster.stop(root)
    assert not processes_mentioning(str(root))
