"""Bring a control plane up and down in one folder: etcd, kube-apiserver, controller-manager,
scheduler and kwok on 127.0.0.1, with a fake Node that kwok keeps Ready."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from localcluster import binaries, preflight, processes, realnode
from localcluster.api import Api
from localcluster.flags import (
    AUDIT_POLICY,
    COMPONENTS,
    Layout,
    Ports,
    apiserver_args,
    controller_manager_args,
    etcd_args,
    fake_node,
    kwok_args,
    scheduler_args,
    service_ip,
)
from localcluster.kubeconfig import render_kubeconfig
from localcluster.node import node_name
from localcluster.nodenet import NodeNet
from localcluster.paths import kwok_stages
from localcluster.pki import write_pki

NODE_NAME = "kwok-node-0"
#: Node images: (the sandbox image name, archives to import into the node's containerd).
NodeImages = tuple[str, list[Path]]
T = TypeVar("T")


class ClusterError(RuntimeError):
    """The control plane did not come up; the message carries the failing component's log tail."""


@dataclass(frozen=True)
class Running:
    """What `up` reports: where the API server is and how to reach it."""

    name: str
    root: Path
    server: str
    kubeconfig: Path


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def log_tail(layout: Layout, name: str, lines: int = 30) -> str:
    path = layout.logs / f"{name}.log"
    text = path.read_text(errors="replace") if path.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _progress(message: str) -> None:
    print(f"localcluster: {message}", file=sys.stderr, flush=True)


def running(root: Path) -> Running | None:
    """The cluster in `root` if every component is still running, else None."""
    layout = Layout(root)
    if not layout.state.is_file():
        return None
    pids = [processes.owned_pid(layout.pids / f"{n}.pid", str(root)) for n in components(root)]
    if any(pid is None for pid in pids):
        return None
    state = json.loads(layout.state.read_text())
    return Running(state["name"], root, state["server"], layout.kubeconfig)


def components(root: Path) -> tuple[str, ...]:
    """What the cluster in `root` runs, in start order: the control plane, and the real nodes'
    components when it has any."""
    return COMPONENTS + realnode.components(root)


def component_status(root: Path) -> dict[str, int | None]:
    """Component -> pid (None when not running)."""
    layout = Layout(root)
    return {n: processes.owned_pid(layout.pids / f"{n}.pid", str(root)) for n in components(root)}


class _Starter:
    """One start attempt: spawns processes, waits for each to be usable, explains failures."""

    def __init__(self, layout: Layout, die_with_parent: bool, timeout: float) -> None:
        self.layout = layout
        self.die_with_parent = die_with_parent
        self.deadline = time.monotonic() + timeout
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, args: list[str]) -> None:
        self.spawn_argv(name, [str(binaries.require(name)), *args])

    def spawn_argv(self, name: str, argv: list[str]) -> None:
        self.procs[name] = processes.spawn(
            name, argv, self.layout.logs, self.layout.pids, die_with_parent=self.die_with_parent
        )

    def wait(self, what: str, check: Callable[[], T | None], watch: tuple[str, ...]) -> T:
        """Poll `check` until it returns a value; fail fast when a watched process exits."""
        while True:
            for name in watch:
                if self.procs[name].poll() is not None:
                    raise ClusterError(
                        f"{name} exited while waiting for {what}:\n{log_tail(self.layout, name)}"
                    )
            try:
                value = check()
            except OSError:
                value = None
            if value is not None:
                return value
            if time.monotonic() > self.deadline:
                logs = "\n".join(f"--- {n}\n{log_tail(self.layout, n, 10)}" for n in watch)
                raise ClusterError(f"timed out waiting for {what}\n{logs}")
            time.sleep(0.2)


def _etcd_healthy(port: int) -> Callable[[], bool | None]:
    def check() -> bool | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return True if json.loads(resp.read()).get("health") == "true" else None

    return check


def _apiserver_ready(api: Api) -> Callable[[], bool | None]:
    return lambda: True if api.request("GET", "/readyz", timeout=3)[0] == 200 else None


def ports_of(root: Path) -> Ports:
    """The ports the cluster in `root` was started on."""
    return Ports(**json.loads(Layout(root).state.read_text())["ports"])


def admin_api(layout: Layout, server: str) -> Api:
    """The API server at `server` as the cluster's admin (client certificate)."""
    pki = layout.pki_file
    return Api(server, pki("ca.crt"), pki("admin.crt"), pki("admin.key"))


def start_component(
    root: Path, name: str, extra_args: tuple[str, ...] = (), timeout: float = 120
) -> float:
    """Start one stopped component of the cluster in `root` again with its first command line
    (plus `extra_args`, this time only) and wait until it serves: etcd's /health, the API
    server's /readyz; the other components once started. Seconds until then.

    Call it from the thread that started the cluster (see processes.respawn)."""
    layout = Layout(root)
    started = time.monotonic()
    starter = _Starter(layout, die_with_parent=False, timeout=timeout)  # the record decides
    starter.procs[name] = processes.respawn(name, layout.logs, layout.pids, extra_args)
    if name == "etcd":
        starter.wait("etcd /health", _etcd_healthy(ports_of(root).etcd_client), (name,))
    elif name == "kube-apiserver":
        state = json.loads(layout.state.read_text())
        api = admin_api(layout, state["server"])
        starter.wait("kube-apiserver /readyz", _apiserver_ready(api), (name,))
    return time.monotonic() - started


def node_ready(node: dict[str, Any] | None) -> bool:
    """True when the Node object's Ready condition is True."""
    conditions = ((node or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def clear(layout: Layout) -> None:
    """Remove what a previous run left in the cluster folder (only localcluster's own entries)."""
    for entry in layout.entries():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)


def start(
    root: Path,
    name: str,
    *,
    die_with_parent: bool = False,
    timeout: float = 180,
    node_images: NodeImages | None = None,
    nodes: int = 1,
) -> Running:
    """Start a fresh cluster in `root` (or return the one already running there): the control
    plane, kwok's simulated node and, given `node_images`, `nodes` real nodes.

    Ports are picked free just before the start; if another process takes one in between, the
    start is retried once with new ports."""
    already = running(root)
    if already is not None:
        return already
    for attempt in (1, 2):
        try:
            return _start_once(Layout(root), name, die_with_parent, timeout, node_images, nodes)
        except ClusterError as err:
            if attempt == 2 or "address already in use" not in str(err):
                raise
            _progress(f"{name}: a port was taken meanwhile; retrying with new ports")
    raise AssertionError("unreachable")


def _write_config(layout: Layout, name: str, ports: Ports, nets: list[NodeNet]) -> Api:
    """Certificates, kubeconfig and state file for a start on `ports`; the admin API client."""
    server = f"https://127.0.0.1:{ports.apiserver}"
    if not nets:
        write_pki(layout.pki, service_ip(None))
    else:
        real = [(node_name(index), net.node_ip) for index, net in enumerate(nets)]
        write_pki(layout.pki, service_ip(nets[0]), real, nets[0].api_ip)
    pki = layout.pki_file
    layout.audit_policy.write_text(AUDIT_POLICY)
    kubeconfig = render_kubeconfig(
        name,
        server,
        pki("ca.crt").read_bytes(),
        pki("admin.crt").read_bytes(),
        pki("admin.key").read_bytes(),
    )
    layout.kubeconfig.write_text(kubeconfig)
    layout.kubeconfig.chmod(0o600)
    layout.state.write_text(json.dumps({"name": name, "server": server, "ports": asdict(ports)}))
    return admin_api(layout, server)


def _start_once(
    layout: Layout,
    name: str,
    die_with_parent: bool,
    timeout: float,
    node_images: NodeImages | None,
    nodes: int,
) -> Running:
    stop(layout.root)
    clear(layout)
    if node_images is not None:
        preflight.require_real_node()
    layout.root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    ports = Ports(*free_ports(6))
    starter = _Starter(layout, die_with_parent, timeout)
    try:
        nets = realnode.prepare(layout.root, nodes) if node_images is not None else []
        net = nets[0] if nets else None
        api = _write_config(layout, name, ports, nets)
        starter.spawn("etcd", etcd_args(layout, ports))
        starter.wait("etcd /health", _etcd_healthy(ports.etcd_client), ("etcd",))
        starter.spawn("kube-apiserver", apiserver_args(layout, ports, net))
        starter.wait("kube-apiserver /readyz", _apiserver_ready(api), ("etcd", "kube-apiserver"))
        _progress(f"{name}: API server ready after {time.monotonic() - started:.1f} s")
        starter.spawn("kube-controller-manager", controller_manager_args(layout, ports, net))
        starter.spawn("kube-scheduler", scheduler_args(layout, ports))
        starter.spawn("kwok", kwok_args(layout, ports, kwok_stages()))
        status, text = api.request(
            "POST", "/api/v1/nodes", fake_node(NODE_NAME, tainted=net is not None)
        )
        if status not in (201, 409):
            raise ClusterError(f"creating node {NODE_NAME} answered {status}: {text}")
        starter.wait(
            f"node {NODE_NAME} Ready (kwok)",
            lambda: True if node_ready(api.get_json(f"/api/v1/nodes/{NODE_NAME}")) else None,
            COMPONENTS,
        )
        if nets and node_images is not None:
            sandbox_image, archives = node_images
            realnode.start(starter, layout.root, nets, ports, api, name, archives, sandbox_image)
        starter.wait(
            "ServiceAccount default/default (controller-manager)",
            lambda: api.get_json("/api/v1/namespaces/default/serviceaccounts/default"),
            COMPONENTS,
        )
    except BaseException:
        stop(layout.root)
        raise
    _progress(f"{name}: control plane ready after {time.monotonic() - started:.1f} s")
    return Running(name, layout.root, api.server, layout.kubeconfig)


def stop(root: Path) -> list[str]:
    """Stop every component of the cluster in `root` (from any process). Returns those killed."""
    layout = Layout(root)
    if not layout.pids.is_dir():
        realnode.stop(root)
        return []
    # The nodes first (kubelet before containerd, then their pods, shims, mounts, network), so
    # nothing of them calls the API server while that stops.
    node_components = list(reversed(realnode.components(root)))
    killed = processes.stop_all(layout.pids, node_components, marker=str(root))
    realnode.stop(root)
    return killed + processes.stop_all(layout.pids, list(reversed(COMPONENTS)), marker=str(root))
