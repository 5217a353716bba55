"""Start and stop the real nodes beside the control plane (see node.py for what runs there):
one by default, or several, each with its own containerd, kubelet, kube-proxy, folder, network
namespace and pod range, joined by a switch (nodelink.py)."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from localcluster import binaries, hoststate, nodelink, nodenet
from localcluster.api import Api
from localcluster.flags import Ports
from localcluster.kubeconfig import render_kubeconfig
from localcluster.node import (
    NodeLayout,
    cgroup_root,
    coredns_args,
    kube_proxy_args,
    kubelet_args,
    kubelet_pki,
    metrics_server_args,
    node_components,
    system_objects,
    write_configs,
)
from localcluster.nodenet import NodeNet


class Starter(Protocol):
    """What cluster.py's start attempt offers: spawn a process, wait for a check."""

    def spawn_argv(self, name: str, argv: list[str]) -> None: ...

    def wait(self, what: str, check: Callable[[], Any], watch: tuple[str, ...]) -> Any: ...


def _progress(message: str) -> None:
    print(f"localcluster: {message}", file=sys.stderr, flush=True)


def default_images(s3_server: bool = True) -> tuple[str, list[Path]]:
    """The sandbox image and the archives a new node imports: the pause image and the
    project's images (and `s3_server`: SeaweedFS), built offline (or reused from the cache when
    their inputs are unchanged)."""
    from localcluster import images

    built = images.ensure_all(s3_server=s3_server)
    return images.PAUSE_IMAGE, [image.archive for image in built if image.name != "python-base"]


def load_nets(root: Path) -> list[NodeNet]:
    """The networks of the cluster's real nodes, first node first (empty: no real node)."""
    try:
        state = json.loads(NodeLayout(root).net_state.read_text())
        slots = [int(slot) for slot in state.get("slots") or [state["slot"]]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [NodeNet(slot, slots[0] if index else 0) for index, slot in enumerate(slots)]


def load_net(root: Path) -> NodeNet | None:
    """The first real node's network (None: no real node)."""
    nets = load_nets(root)
    return nets[0] if nets else None


def components(root: Path) -> tuple[str, ...]:
    """The process names of every real node of the cluster in `root`, in start order."""
    return tuple(name for index in range(len(load_nets(root))) for name in node_components(index))


def prepare(root: Path, nodes: int = 1) -> list[NodeNet]:
    """Record the host's state, then make the nodes' networks (before the API server starts,
    which advertises the host side of the first node's veth), and the switch between them."""
    if nodes < 1:
        raise ValueError(f"a real node count must be at least 1, not {nodes}")
    layout = NodeLayout(root)
    layout.base.mkdir(parents=True, exist_ok=True)
    hoststate.snapshot().save(layout.host_state)
    nets: list[NodeNet] = []
    for _ in range(nodes):
        net = NodeNet(nodenet.free_slot(), nets[0].slot if nets else 0)
        nets.append(net)
        # Recorded before it exists, so that `stop` removes whatever part of it was made.
        slots = [n.slot for n in nets]
        layout.net_state.write_text(json.dumps({"slot": slots[0], "slots": slots}))
        nodenet.create(net)
    if len(nets) > 1:
        nodelink.create(nets)
    return nets


def _write_kubeconfigs(layout: NodeLayout, net: NodeNet, ports: Ports, name: str) -> None:
    """Kubeconfigs the node's components use to reach the API server through the veth."""
    pki = layout.root / "pki"
    server = f"https://{net.api_ip}:{ports.apiserver}"
    ca = (pki / "ca.crt").read_bytes()
    for component, identity in (
        ("kubelet", kubelet_pki(layout.index)[0]),
        ("kube-proxy", "kube-proxy"),
        ("coredns", "admin"),
        ("metrics-server", "admin"),
    ):
        path = layout.config(f"{component}.kubeconfig")
        path.write_text(
            render_kubeconfig(
                name,
                server,
                ca,
                (pki / f"{identity}.crt").read_bytes(),
                (pki / f"{identity}.key").read_bytes(),
            )
        )
        path.chmod(0o600)


def _make_cgroup_root(net: NodeNet) -> None:
    """The kubelet wants its cgroup root to exist on every controller it uses."""
    relative = cgroup_root(net).strip("/")
    v2 = (hoststate.CGROUP_FS / "cgroup.controllers").is_file()
    hierarchies = [hoststate.CGROUP_FS] if v2 else sorted(hoststate.CGROUP_FS.glob("*"))
    for hierarchy in hierarchies:
        if hierarchy.is_dir() and not hierarchy.is_symlink():
            (hierarchy / relative).mkdir(exist_ok=True)


def ctr(layout: NodeLayout, *args: str, timeout: float = 300) -> str:
    """`ctr` against the node's containerd, in the Kubernetes namespace."""
    result = subprocess.run(
        ["ctr", "--address", str(layout.containerd_socket), "--namespace", "k8s.io", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _containerd_answers(layout: NodeLayout) -> bool | None:
    return True if layout.containerd_socket.exists() and ctr(layout, "version") else None


def _node_is_ready(api: Api, name: str) -> bool | None:
    node = api.get_json(f"/api/v1/nodes/{name}")
    conditions = ((node or {}).get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return True if ready else None


def _apply_objects(api: Api, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        group_version = obj["apiVersion"]
        base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        namespace = obj["metadata"].get("namespace")
        plural = {
            "Service": "services",
            "EndpointSlice": "endpointslices",
            "APIService": "apiservices",
        }[obj["kind"]]
        path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
        status, text = api.request("POST", path, obj)
        if status not in (201, 409):
            raise RuntimeError(f"creating {obj['kind']} {obj['metadata']['name']}: {status} {text}")


#: The kubelet binds `<root-dir>/pod-resources/<10 digits>` (and device-plugin sockets there):
#: a cluster folder deep enough to push that over a unix socket's 107 bytes fails the kubelet.
KUBELET_SOCKET = Path("pod-resources") / "0123456789"
#: Image archives imported into the nodes' containerds at once (over all nodes).
IMPORT_WORKERS = 4


def check_socket_room(layout: NodeLayout) -> None:
    """Refuse, naming the folder, a cluster folder too deep for the kubelet's own sockets."""
    from localcluster.engine import MAX_SOCKET_PATH

    longest = layout.kubelet_root / KUBELET_SOCKET
    if len(str(longest)) > MAX_SOCKET_PATH:
        raise RuntimeError(
            f"the cluster folder {layout.root} is too deep for a real node: the kubelet's socket "
            f"{longest} would be {len(str(longest))} bytes (unix sockets: {MAX_SOCKET_PATH}); "
            "use a shorter folder"
        )


def _import_all(layouts: list[NodeLayout], archives: list[Path]) -> None:
    """Every archive into every node's containerd, IMPORT_WORKERS at a time."""
    from localcluster import imageload

    importing = time.monotonic()
    jobs = [(layout, archive) for layout in layouts for archive in archives]

    def one(job: tuple[NodeLayout, Path]) -> str:
        layout, archive = job
        loaded = imageload.load(archive, layout.containerd_socket)
        return f"{layout.name}: {loaded.action} {loaded.ref} in {loaded.seconds:.1f} s"

    # At once: an import is mostly hashing and unpacking one archive's layers (a core each), and
    # the largest (the packaging image's ffmpeg) would otherwise add to the others' time.
    with ThreadPoolExecutor(max_workers=IMPORT_WORKERS, thread_name_prefix="import") as pool:
        for line in pool.map(one, jobs):
            _progress(f"node: {line}")
    took = time.monotonic() - importing
    _progress(f"node: {len(archives)} images into {len(layouts)} node(s) in {took:.1f} s")


def _spawn_in(starter: Starter, net: NodeNet, name: str, argv: list[str]) -> None:
    starter.spawn_argv(name, nodenet.enter(net, argv))


def start(
    starter: Starter,
    root: Path,
    nets: list[NodeNet],
    ports: Ports,
    api: Api,
    cluster_name: str,
    archives: list[Path],
    sandbox_image: str,
) -> None:
    """Each node's containerd (images loaded), kubelet (node Ready) and kube-proxy; CoreDNS and
    metrics-server on the first."""
    began = time.monotonic()
    layouts = [NodeLayout(root, index) for index in range(len(nets))]
    for layout in layouts:
        check_socket_room(layout)
    for layout, net in zip(layouts, nets, strict=True):
        write_configs(layout, net, sandbox_image)
        _write_kubeconfigs(layout, net, ports, cluster_name)
        _make_cgroup_root(net)
        containerd = [shutil.which("containerd") or "containerd", "--config"]
        containerd.append(str(layout.containerd_config))
        _spawn_in(starter, net, node_components(layout.index)[0], containerd)
    for layout in layouts:
        starter.wait(
            f"containerd socket of {layout.name}",
            functools.partial(_containerd_answers, layout),
            node_components(layout.index)[:1],
        )
    _import_all(layouts, archives)
    for layout, net in zip(layouts, nets, strict=True):
        kubelet, kube_proxy = node_components(layout.index)[1:3]
        argv = [str(binaries.require("kubelet")), *kubelet_args(layout, net)]
        _spawn_in(starter, net, kubelet, argv)
        argv = [str(binaries.require("kube-proxy")), *kube_proxy_args(layout)]
        _spawn_in(starter, net, kube_proxy, argv)
    first, first_net = layouts[0], nets[0]
    _apply_objects(api, system_objects(first_net))
    argv = [str(binaries.require("coredns")), *coredns_args(first)]
    _spawn_in(starter, first_net, "coredns", argv)
    argv = [str(binaries.require("metrics-server")), *metrics_server_args(first, first_net)]
    _spawn_in(starter, first_net, "metrics-server", argv)
    for layout in layouts:
        starter.wait(
            f"node {layout.name} Ready (kubelet)",
            functools.partial(_node_is_ready, api, layout.name),
            node_components(layout.index),
        )
        _progress(f"node: {layout.name} Ready after {time.monotonic() - began:.1f} s")


def stop(root: Path) -> None:
    """Kill what the nodes run and put the host back as it was (idempotent)."""
    nets = load_nets(root)
    if not nets:
        return
    before = hoststate.HostState.load(NodeLayout(root).host_state)
    for index, net in enumerate(nets):
        sockets = NodeLayout(root, index).sockets
        hoststate.restore(before, root, cgroup_root(net), net, net.netns, sockets)
    nodelink.delete(nets[0].cluster_slot)


def leftovers(before: hoststate.HostState, root: Path, nets: list[NodeNet]) -> list[str]:
    """What the nodes of the cluster in `root` left on the host, compared with `before`."""
    found: list[str] = []
    for index, net in enumerate(nets):
        sockets = NodeLayout(root, index).sockets
        found += hoststate.leftovers(before, root, cgroup_root(net), net, net.netns, sockets)
    return list(dict.fromkeys(found))  # what all nodes share (sysctls, chains) once
