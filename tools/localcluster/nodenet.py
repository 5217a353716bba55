"""The real node's network: its own network namespace joined to the host by one veth pair.

Everything the node's components change in the network (the CNI bridge, kube-proxy's and the CNI
plugins' iptables chains, per-namespace sysctls such as `net.ipv4.ip_forward` and
`route_localnet`, pod veths) lives inside that namespace and disappears with it, so two clusters
can run side by side (a `make demo` cluster while `make test` runs) and stopping one restores the
host by deleting the namespace. The host keeps only two routes (pod and Service ranges via the
node), removed with the veth.

Addresses, for node slot `n` (1..250, the first free one at start):
    host side of the veth   10.251.n.1/30   (the API server advertises the first node's to pods)
    node side (node IP)     10.251.n.2/30
    pods                    10.244.n.0/24   (CNI bridge, host-local IPAM)
    Services                10.96.c.0/24    (c: the cluster's first node's slot; kubernetes = .1,
                                             kube-dns = .10)

A cluster of several real nodes takes one slot per node; its nodes reach each other through a
switch of their own (nodelink.py), never through the host (whose ip_forward stays as it is).
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

NETNS_DIR = Path("/run/netns")
#: Interface and namespace names carry this prefix (interface names are at most 15 bytes).
PREFIX = "lcnode"
SLOTS = range(1, 251)


@dataclass(frozen=True)
class NodeNet:
    """Names and addresses of one real node's network (pure: derived from the slots)."""

    slot: int
    #: The slot of the cluster's first node (0: this node is the first). The cluster's Service
    #: range and the switch between its nodes are named after it.
    first_slot: int = 0

    @property
    def cluster_slot(self) -> int:
        return self.first_slot or self.slot

    @property
    def is_first(self) -> bool:
        return self.cluster_slot == self.slot

    @property
    def netns(self) -> str:
        return f"{PREFIX}{self.slot}"

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    @property
    def host_veth(self) -> str:
        return f"{PREFIX}{self.slot}h"

    @property
    def node_veth(self) -> str:
        return f"{PREFIX}{self.slot}n"

    @property
    def host_ip(self) -> str:
        return f"10.251.{self.slot}.1"

    @property
    def node_ip(self) -> str:
        return f"10.251.{self.slot}.2"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.slot}.0/24"

    @property
    def api_ip(self) -> str:
        """Where the node reaches the API server: the host side of the first node's veth (the
        address the API server advertises; a local address of the host, so other nodes reach it
        through their own veth without the host forwarding anything)."""
        return f"10.251.{self.cluster_slot}.1"

    @property
    def service_cidr(self) -> str:
        return f"10.96.{self.cluster_slot}.0/24"

    def service_ip(self, host: int) -> str:
        """The `host`-th address of the Service range (1: kubernetes, 10: kube-dns)."""
        return str(ipaddress.ip_network(self.service_cidr)[host])

    @property
    def bridge(self) -> str:
        """The CNI bridge (inside the namespace, so its name need not be unique on the host)."""
        return "cni0"

    def routes(self) -> list[str]:
        """Host routes to the node: its pods, and (the first node) the cluster's Services."""
        return [self.pod_cidr, self.service_cidr] if self.is_first else [self.pod_cidr]


def _ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def slot_in_use(slot: int) -> bool:
    net = NodeNet(slot)
    if net.netns_path.exists():
        return True
    return Path(f"/sys/class/net/{net.host_veth}").exists()


def free_slot() -> int:
    for slot in SLOTS:
        if not slot_in_use(slot):
            return slot
    raise RuntimeError(f"no free node network slot ({PREFIX}1..{PREFIX}{SLOTS[-1]} all taken)")


def create(net: NodeNet) -> None:
    """The namespace, the veth pair with addresses, loopback up and the host routes."""
    _ip("netns", "add", net.netns)
    try:
        _ip("link", "add", net.host_veth, "type", "veth", "peer", "name", net.node_veth)
        _ip("link", "set", net.node_veth, "netns", net.netns)
        _ip("addr", "add", f"{net.host_ip}/30", "dev", net.host_veth)
        _ip("link", "set", net.host_veth, "up")
        _ip("addr", "add", f"{net.node_ip}/30", "dev", net.node_veth, netns=net.netns)
        _ip("link", "set", net.node_veth, "up", netns=net.netns)
        _ip("link", "set", "lo", "up", netns=net.netns)
        _ip("route", "add", "default", "via", net.host_ip, netns=net.netns)
        for cidr in net.routes():
            _ip("route", "add", cidr, "via", net.node_ip, "dev", net.host_veth)
    except BaseException:
        delete(net)
        raise


def delete(net: NodeNet) -> None:
    """Remove the namespace (with everything inside) and the veth (with its routes)."""
    if Path(f"/sys/class/net/{net.host_veth}").exists():
        _ip("link", "del", net.host_veth, check=False)
    if net.netns_path.exists():
        _ip("netns", "del", net.netns, check=False)


def enter(net: NodeNet, argv: list[str]) -> list[str]:
    """`argv` run inside the node's network namespace (only the network: mounts stay shared,
    so the kubelet's volume mounts are visible to containerd and to `down`)."""
    return ["nsenter", f"--net={net.netns_path}", "--", *argv]
