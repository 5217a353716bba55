"""Upgrade day for a platform team, on two real nodes: a platform's streaming pods spread over
both, then `kubectl drain` of one of them while an in-cluster client streams ranges through the
Service: no request fails, the PodDisruptionBudget holds (evictions, never deletions; never fewer
healthy pods than it asks for), and the pods come back Ready on the other node.

This module starts its own cluster with two real nodes (the session's has one), and checks at the
end that stopping it leaves nothing of either node on the host.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from localcluster import (
    KubeCluster,
    cluster,
    hoststate,
    images,
    nodelink,
    realnode,
    temporary_cluster,
)
from localcluster.api import Api
from localcluster.flags import Layout
from localcluster.node import node_name
from localcluster.nodenet import NodeNet
from tests.cluster.conftest import Namespace, OperatorProcess, eventually, install_crds
from tests.cluster.disruption import Watch, healthy, placement, pod_writes, ready
from tests.cluster.podclient import client_result, start_client_pod
from tests.cluster.test_operator import wait_ready
from tests.cluster.test_real_pods import client, offer_media, pvc_platform, withdraw_media
from vod_operator.naming import DEFAULT_IMAGE

pytestmark = [pytest.mark.cluster, pytest.mark.local_control_plane]

NODES = (node_name(0), node_name(1))
REPLICAS = 4
#: How long the client streams: the drain starts 5 s in and takes about 20-30 s here.
STREAM_SECONDS = 60


@dataclass
class TwoNodes:
    """The module's cluster: its handle, folder and networks, and the host before it started."""

    kube: KubeCluster
    root: Path
    nets: list[NodeNet]
    before: hoststate.HostState

    def api(self) -> Api:
        pki = Layout(self.root).pki_file
        return Api(self.kube.server, pki("ca.crt"), pki("admin.crt"), pki("admin.key"))


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[TwoNodes]:
    """A cluster with two real nodes, holding only the images this module runs (the pause and
    streaming images), in a folder right under /tmp (the kubelet's socket paths)."""
    folder = Path(tempfile.mkdtemp(prefix="lc-", dir="/tmp"))
    root = folder / "drain"
    before = hoststate.snapshot()
    pause = images.ensure_pause()
    (stream,) = images.ensure_images(
        [spec for spec in images.project_images() if spec.name == "vod-stream"]
    )
    node_images = (images.PAUSE_IMAGE, [pause.archive, stream.archive])
    try:
        with temporary_cluster(
            root, name="vod-drain", real_node=True, nodes=2, node_images=node_images
        ) as kube:
            yield TwoNodes(kube, root, realnode.load_nets(root), before)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def drain_operator(
    two_nodes: TwoNodes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator against the two-node cluster (no leader election: it is alone there)."""
    install_crds(two_nodes.kube)
    env = {**two_nodes.kube.env, "VOD_OPERATOR_LEADER_ELECTION": "false", "PYTHONUNBUFFERED": "1"}
    proc = OperatorProcess(env=env, log_path=tmp_path_factory.mktemp("op") / "operator.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def drain_namespace(
    two_nodes: TwoNodes, drain_operator: OperatorProcess, tmp_path: Path
) -> Iterator[Namespace]:
    """A namespace offering clip.bin as PVC `videos` (a hostPath volume: the same folder on
    both nodes, which share this machine's filesystem)."""
    ns = Namespace(name=f"t-{uuid.uuid4().hex[:8]}", cluster=two_nodes.kube)
    two_nodes.kube.kubectl("create", "namespace", ns.name)
    pv = offer_media(ns, tmp_path / "media")
    yield ns
    withdraw_media(ns, pv)
    two_nodes.kube.kubectl("delete", "namespace", ns.name, "--wait=false", check=False)


def test_both_nodes_are_ready_and_the_api_server_reaches_each_kubelet(two_nodes: TwoNodes) -> None:
    items = json.loads(two_nodes.kube.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    real = {n["metadata"]["name"]: n for n in items if n["metadata"]["name"] in NODES}
    assert sorted(real) == sorted(NODES)
    assert all(map(ready, real.values())), real
    addresses = {name: n["status"]["addresses"][0]["address"] for name, n in real.items()}
    assert addresses == {node_name(i): net.node_ip for i, net in enumerate(two_nodes.nets)}
    for name in NODES:  # what `kubectl logs/exec` need: the API server reaches each kubelet
        proxied = two_nodes.kube.kubectl("get", "--raw", f"/api/v1/nodes/{name}/proxy/healthz")
        assert proxied.stdout == "ok"


def test_drain_of_a_node_under_load_fails_no_request_and_respects_the_budget(
    two_nodes: TwoNodes, drain_namespace: Namespace
) -> None:
    ns, kube = drain_namespace, two_nodes.kube
    ns.apply(pvc_platform("tv", f"replicas: {REPLICAS}"))
    wait_ready(ns, "tv", timeout=180)
    selector = "app.kubernetes.io/instance=tv"
    watch = Watch(two_nodes.api(), ns.name, selector, pdb="tv-stream")
    eventually(lambda: sum(map(healthy, watch.pods())) == REPLICAS, timeout=120, interval=1)
    before = placement(watch.pods())
    # the spread the operator renders: half of the pods on each node
    assert Counter(before.values()) == {NODES[0]: REPLICAS // 2, NODES[1]: REPLICAS // 2}
    budget = ns.get("pdb", "tv-stream")
    assert budget["spec"]["maxUnavailable"] == 1
    eventually(lambda: ns.get("pdb", "tv-stream")["status"].get("disruptionsAllowed") == 1)
    desired = int(ns.get("pdb", "tv-stream")["status"]["desiredHealthy"])

    drained, other = NODES

    def all_back_on(node: str) -> bool:
        pods = [p for p in watch.pods() if not p["metadata"].get("deletionTimestamp")]
        return sum(map(healthy, pods)) == REPLICAS and set(placement(pods).values()) == {node}

    settings = client(ns, "tv", STREAM_SECONDS, threads=2, pause=0.02, requests=20_000)
    start_client_pod(ns, "viewer", DEFAULT_IMAGE, settings, node=other)
    eventually(lambda: ns.get("pod", "viewer")["status"].get("phase") == "Running", timeout=60)
    streaming = time.monotonic()
    time.sleep(5)
    watch.start()
    began = time.monotonic()
    try:
        drain = kube.kubectl(
            "drain", drained, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=150s",
            timeout=180,
        )  # fmt: skip
        drain_seconds = time.monotonic() - began
        eventually(lambda: all_back_on(other), timeout=120, interval=1)
        back = time.monotonic() - began
        result = client_result(ns, "viewer", timeout=STREAM_SECONDS + 60)
    finally:
        samples = watch.stop()
        kube.kubectl("uncordon", drained, check=False)
    after = placement([p for p in watch.pods() if not p["metadata"].get("deletionTimestamp")])
    writes = pod_writes(Layout(two_nodes.root).audit_log, ns.name)
    fewest = min(s.total for s in samples)
    print(f"\ndrain of {drained} under load: {result['ok'] + result['failed']} requests, "
          f"{result['failed']} failed ({result['bytes'] / 1e6:.1f} MB of 64 KiB ranges through "
          f"the Service, client on {other})")  # fmt: skip
    print(f"kubectl drain took {drain_seconds:.1f} s (from {began - streaming:.1f} s into the "
          f"stream); all {REPLICAS} pods Ready on {other} {back:.1f} s after it began")  # fmt: skip
    print(f"evictions by response code: {writes.evictions} (429: refused by the PDB); pod "
          f"deletions by user agent: {writes.deletions}")  # fmt: skip
    print(f"PDB tv-stream: maxUnavailable 1, desiredHealthy {desired}; fewest healthy pods "
          f"seen during the drain: {fewest}")  # fmt: skip
    print(f"healthy pods by node, PDB (current, desired, allowed) [s]: {watch.changes()}")
    print(f"before: {dict(sorted(before.items()))}")
    print(f"after:  {dict(sorted(after.items()))}")
    print(f"client timeline [s, ok, failed]: {result['timeline']}")
    print(f"kubectl drain said:\n{drain.stdout.strip()}\n{drain.stderr.strip()}")

    assert result["failed"] == 0, result["errors"]
    assert result["ok"] > 200
    # the load covered the whole drain and the pods' return, with some seconds to spare
    streamed = result["timeline"][-1][0]
    assert streamed - (began - streaming) - back > 3, (streamed, began - streaming, back)
    # the budget held: evictions only (kubectl never deleted a pod), one at a time
    assert writes.evictions.get(201) == REPLICAS // 2, writes
    assert writes.evictions.get(429, 0) >= 1, writes  # the second waited for a Ready replacement
    assert writes.deletions.get("kubectl", 0) == 0, writes
    assert fewest >= desired == REPLICAS - 1, watch.changes()
    assert all(s.pdb[0] >= desired for s in samples if s.pdb[1]), watch.changes()
    # rescheduled onto the other node, Ready
    assert set(after.values()) == {other}
    assert len(after) == REPLICAS
    assert set(after).isdisjoint(name for name, node in before.items() if node == drained)
    wait_ready(ns, "tv", timeout=60)


def test_stopping_the_cluster_leaves_nothing_of_either_node(two_nodes: TwoNodes) -> None:
    """Last in the module: stop its cluster (the fixture's stop then finds nothing to do)."""
    assert len(two_nodes.nets) == 2
    first, second = two_nodes.nets
    running = realnode.leftovers(two_nodes.before, two_nodes.root, two_nodes.nets)
    # while it runs, the check does see both nodes and the switch between them: it can fail
    for netns in (first.netns, second.netns, nodelink.switch_netns(first.cluster_slot)):
        assert f"network namespace {netns}" in running, running
    assert f"interface {second.host_veth}" in running, running
    cluster.stop(two_nodes.root)
    time.sleep(0.5)
    left = realnode.leftovers(two_nodes.before, two_nodes.root, two_nodes.nets)
    assert left == [], left
