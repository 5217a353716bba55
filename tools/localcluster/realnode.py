"""Start and stop the real node beside the control plane (see node.py for what runs there)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from localcluster import binaries, hoststate, nodenet
from localcluster.api import Api
from localcluster.flags import Ports
from localcluster.kubeconfig import render_kubeconfig
from localcluster.node import (
    NODE_COMPONENTS,
    NODE_NAME,
    NodeLayout,
    cgroup_root,
    coredns_args,
    kube_proxy_args,
    kubelet_args,
    metrics_server_args,
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


def load_net(root: Path) -> NodeNet | None:
    """The node network recorded for the cluster in `root` (None: no real node)."""
    try:
        return NodeNet(int(json.loads(NodeLayout(root).net_state.read_text())["slot"]))
    except (OSError, ValueError, KeyError):
        return None


def prepare(root: Path) -> NodeNet:
    """Record the host's state, then make the node's network (before the API server starts,
    which advertises the host side of the veth)."""
    layout = NodeLayout(root)
    layout.base.mkdir(parents=True, exist_ok=True)
    hoststate.snapshot().save(layout.host_state)
    net = NodeNet(nodenet.free_slot())
    layout.net_state.write_text(json.dumps({"slot": net.slot}))
    nodenet.create(net)
    return net


def _write_kubeconfigs(layout: NodeLayout, net: NodeNet, ports: Ports, name: str) -> None:
    """Kubeconfigs the node's components use to reach the API server through the veth."""
    pki = layout.root / "pki"
    server = f"https://{net.host_ip}:{ports.apiserver}"
    ca = (pki / "ca.crt").read_bytes()
    for component, identity in (
        ("kubelet", "kubelet"),
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


def _node_is_ready(api: Api) -> bool | None:
    node = api.get_json(f"/api/v1/nodes/{NODE_NAME}")
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
#: Image archives imported into the node's containerd at once.
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


def start(
    starter: Starter,
    root: Path,
    net: NodeNet,
    ports: Ports,
    api: Api,
    cluster_name: str,
    archives: list[Path],
    sandbox_image: str,
) -> None:
    """containerd (images loaded), kubelet (node Ready), kube-proxy, CoreDNS, metrics-server."""
    began = time.monotonic()
    layout = NodeLayout(root)
    check_socket_room(layout)
    write_configs(layout, net, sandbox_image)
    _write_kubeconfigs(layout, net, ports, cluster_name)
    _make_cgroup_root(net)
    starter.spawn_argv(
        "containerd",
        nodenet.enter(
            net,
            [shutil.which("containerd") or "containerd", "--config", str(layout.containerd_config)],
        ),
    )
    starter.wait(
        "containerd socket",
        lambda: True if layout.containerd_socket.exists() and ctr(layout, "version") else None,
        ("containerd",),
    )
    from localcluster import imageload

    importing = time.monotonic()
    # At once: an import is mostly hashing and unpacking one archive's layers (a core each), and
    # the largest (the packaging image's ffmpeg) would otherwise add to the others' time.
    with ThreadPoolExecutor(max_workers=IMPORT_WORKERS, thread_name_prefix="import") as pool:
        for loaded in pool.map(lambda a: imageload.load(a, layout.containerd_socket), archives):
            _progress(f"node: {loaded.action} {loaded.ref} in {loaded.seconds:.1f} s")
    _progress(f"node: {len(archives)} images in {time.monotonic() - importing:.1f} s")
    starter.spawn_argv(
        "kubelet",
        nodenet.enter(net, [str(binaries.require("kubelet")), *kubelet_args(layout, net)]),
    )
    starter.spawn_argv(
        "kube-proxy",
        nodenet.enter(net, [str(binaries.require("kube-proxy")), *kube_proxy_args(layout)]),
    )
    _apply_objects(api, system_objects(net))
    starter.spawn_argv(
        "coredns", nodenet.enter(net, [str(binaries.require("coredns")), *coredns_args(layout)])
    )
    starter.spawn_argv(
        "metrics-server",
        nodenet.enter(
            net, [str(binaries.require("metrics-server")), *metrics_server_args(layout, net)]
        ),
    )
    starter.wait(f"node {NODE_NAME} Ready (kubelet)", lambda: _node_is_ready(api), NODE_COMPONENTS)
    _progress(f"node: {NODE_NAME} Ready after {time.monotonic() - began:.1f} s")


def stop(root: Path) -> None:
    """Kill what the node runs and put the host back as it was (idempotent)."""
    net = load_net(root)
    if net is None:
        return
    layout = NodeLayout(root)
    before = hoststate.HostState.load(layout.host_state)
    hoststate.restore(before, root, cgroup_root(net), net, net.netns, layout.sockets)


def leftovers(before: hoststate.HostState, root: Path, net: NodeNet) -> list[str]:
    """What the node of the cluster in `root` left on the host, compared with `before`."""
    sockets = NodeLayout(root).sockets
    return hoststate.leftovers(before, root, cgroup_root(net), net, net.netns, sockets)
