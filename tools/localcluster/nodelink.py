"""The switch between a cluster's real nodes: a bridge in a network namespace of its own.

Each node's namespace (nodenet.py) gets one more veth, `lclink`, whose other end is a port of the
bridge in the cluster's switch namespace `lclink<c>` (c: the first node's slot). Nodes talk over
it directly (one layer-2 segment, `10.252.c.0/24`, node at `.<its slot>`): each node routes every
other node's pod range and node IP to that node's switch address. Nothing of it is on the host:
deleting the switch namespace removes the bridge and every node's `lclink` with it, and traffic
between nodes never passes the host (whose `net.ipv4.ip_forward` is left as it is).

    node A (lcnodeA)                      switch (lclink<c>)                  node B (lcnodeB)
    lclink 10.252.c.A/24 ---- pA ---- br0 ---- pB ---- lclink 10.252.c.B/24
    10.244.B.0/24, 10.251.B.2 via 10.252.c.B          10.244.A.0/24, 10.251.A.2 via 10.252.c.A
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from localcluster import nodenet
from localcluster.nodenet import NodeNet

PREFIX = "lclink"
#: The interface in each node's namespace (names are per namespace: no clash between nodes).
NODE_SIDE = PREFIX
BRIDGE = "br0"


def switch_netns(cluster_slot: int) -> str:
    return f"{PREFIX}{cluster_slot}"


def switch_path(cluster_slot: int) -> Path:
    return nodenet.NETNS_DIR / switch_netns(cluster_slot)


def link_ip(net: NodeNet) -> str:
    """The node's address on the switch."""
    return f"10.252.{net.cluster_slot}.{net.slot}"


def port(net: NodeNet) -> str:
    """The switch's port (in the switch namespace) that leads to the node."""
    return f"p{net.slot}"


def peer_routes(net: NodeNet, nets: Sequence[NodeNet]) -> list[tuple[str, str]]:
    """(destination, gateway) routes in `net`'s namespace: each other node's pods and node IP
    (CoreDNS and metrics-server listen on the first node's IP; the API server reaches kubelets
    at theirs), via that node's switch address."""
    routes: list[tuple[str, str]] = []
    for peer in nets:
        if peer.slot != net.slot:
            routes += [(peer.pod_cidr, link_ip(peer)), (f"{peer.node_ip}/32", link_ip(peer))]
    return routes


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


def _ip(*args: str, netns: str) -> None:
    _run(["ip", "-n", netns, *args])


def _forward(net: NodeNet) -> None:
    """Forwarding on in the node's namespace (its own sysctl, not the host's): traffic from the
    host to a ClusterIP whose pod runs on another node passes through the first node."""
    _run(nodenet.enter(net, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]))


def create(nets: Sequence[NodeNet]) -> None:
    """The switch namespace and bridge, one port per node, and each node's routes to the others
    (the node namespaces exist already)."""
    switch = switch_netns(nets[0].cluster_slot)
    _run(["ip", "netns", "add", switch])
    try:
        _ip("link", "add", BRIDGE, "type", "bridge", netns=switch)
        _ip("link", "set", BRIDGE, "up", netns=switch)
        for net in nets:
            _ip(
                "link", "add", NODE_SIDE, "type", "veth", "peer", "name", port(net),
                "netns", switch, netns=net.netns,
            )  # fmt: skip
            _ip("link", "set", port(net), "master", BRIDGE, "up", netns=switch)
            _ip("addr", "add", f"{link_ip(net)}/24", "dev", NODE_SIDE, netns=net.netns)
            _ip("link", "set", NODE_SIDE, "up", netns=net.netns)
            _forward(net)
        for net in nets:
            for destination, gateway in peer_routes(net, nets):
                _ip("route", "add", destination, "via", gateway, netns=net.netns)
    except BaseException:
        delete(nets[0].cluster_slot)
        raise


def delete(cluster_slot: int) -> None:
    """Remove the switch namespace (its bridge and ports go with it, and so does each node's
    end of its link)."""
    if switch_path(cluster_slot).exists():
        subprocess.run(
            ["ip", "netns", "del", switch_netns(cluster_slot)], capture_output=True, check=False
        )
