"""Host state the real node changes, put back by `down`, and a check that nothing is left.

The node's network lives in its own namespace (nodenet.py; with several nodes, each has one,
and the switch between them a namespace of its own: nodelink.py), so what remains on the host is:
- the kernel sysctls the kubelet sets (`vm.overcommit_memory`, `kernel.panic`, ...): recorded
  before the node starts and written back after it stops;
- the node's processes, including containerd's shims (their own sessions) and the pods' processes;
- mounts under the cluster folder (container root filesystems, volumes, pod network namespaces);
- the pods' cgroups under the node's cgroup root, on every v1 controller (or the v2 tree);
- containerd's shim sockets in /run/containerd/s and libcni's result cache in /var/lib/cni.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from localcluster import nodelink
from localcluster.nodenet import NodeNet

#: Sysctls the kubelet (setupKernelTunables) may write, and the host-side ones the node must not.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
)
CGROUP_FS = Path("/sys/fs/cgroup")
#: Folders outside the cluster folder where containerd and libcni leave files.
SHARED_FOLDERS = (Path("/run/containerd/s"), Path("/run/containerd"), Path("/var/lib/cni"))
IPTABLES = ("iptables-save", "ip6tables-save")


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    values: dict[str, str] = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    return values


def iptables_chains() -> list[str]:
    """Every `table/chain` of the host's iptables and ip6tables (the node must add none)."""
    chains: list[str] = []
    for command in IPTABLES:
        try:
            out = subprocess.run([command], capture_output=True, text=True, check=False).stdout
        except OSError:
            continue
        table = ""
        for line in out.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                chains.append(f"{command.split('-')[0]}/{table}/{line[1:].split()[0]}")
    return sorted(chains)


def _entries(folders: Iterable[Path]) -> list[str]:
    found: list[str] = []
    for folder in folders:
        with contextlib.suppress(OSError):
            found.extend(str(p) for p in folder.rglob("*"))
        if folder.exists():
            found.append(str(folder))
    return sorted(found)


@dataclass
class HostState:
    """What `snapshot` records before the node starts."""

    sysctls: dict[str, str] = field(default_factory=dict)
    iptables: list[str] = field(default_factory=list)
    shared_files: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> HostState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def snapshot() -> HostState:
    return HostState(read_sysctls(), iptables_chains(), _entries(SHARED_FOLDERS))


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first (the order to unmount them in)."""
    prefix = str(root.resolve())
    points: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def cgroup_dirs(cgroup_root: str) -> list[Path]:
    """The node's cgroup folder under every mounted hierarchy that has it."""
    relative = cgroup_root.strip("/")
    candidates = [CGROUP_FS / relative] + [
        entry / relative for entry in sorted(CGROUP_FS.glob("*")) if entry.is_dir()
    ]
    return [c for c in candidates if c.is_dir()]


def _cgroup_pids(folders: list[Path]) -> set[int]:
    pids: set[int] = set()
    for folder in folders:
        for procs in folder.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def marked_pids(marker: str) -> set[int]:
    """Processes whose command line mentions `marker` (the cluster folder): the components and
    containerd's shims, which run in sessions of their own."""
    found: set[int] = set()
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if marker.encode() in cmdline and stat.rpartition(")")[2].split()[0] != "Z":
            found.add(int(entry.name))
    return found


def node_pids(root: Path, sockets: Path) -> set[int]:
    """The node's processes: those naming the cluster folder, and containerd's shims, which name
    only the socket folder (`-address <sockets>/containerd.sock`)."""
    return marked_pids(f"{root}/") | marked_pids(f"{sockets}/")


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _remove_cgroups(folders: list[Path]) -> None:
    """rmdir the node's cgroup trees bottom-up once their processes are gone."""
    deadline = time.monotonic() + 10
    for folder in folders:
        for sub in sorted(
            (p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
        ):
            _rmdir_retrying(sub, deadline)
        _rmdir_retrying(folder, deadline)


def _rmdir_retrying(path: Path, deadline: float) -> None:
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)


def unmount_all(root: Path) -> None:
    for point in mounts_under(root):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _stale_socket(path: Path) -> bool:
    import socket
    import stat

    try:
        if not stat.S_ISSOCK(path.lstat().st_mode):
            return False
    except OSError:
        return False
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return True
    return False


def _node_debris(before: HostState, network: str) -> list[Path]:
    """Shared entries created since `before` that belong to this node: shim sockets nobody
    answers on any more, libcni results of its network, and folders left empty. (Another
    cluster's node may be running: its live sockets and results are left alone.)"""
    existed = set(before.shared_files)
    debris: list[Path] = []
    for entry in reversed(_entries(SHARED_FOLDERS)):
        if entry in existed:
            continue
        path = Path(entry)
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()) or all(p in debris for p in path.iterdir()):
                debris.append(path)
        elif _stale_socket(path) or path.name.startswith(f"{network}-"):
            debris.append(path)
    return debris


def restore(
    before: HostState | None,
    root: Path,
    cgroup_root: str,
    net: NodeNet | None,
    network: str,
    sockets: Path,
) -> None:
    """Put the host back: kill the node's processes, unmount, remove cgroups, the network and
    the shared files it created, and write back the sysctls it changed."""
    cgroups = cgroup_dirs(cgroup_root)
    for _ in range(3):  # pods may be restarted by a shim while we kill; repeat until quiet
        pids = _cgroup_pids(cgroups) | node_pids(root, sockets)
        if not pids:
            break
        kill_all(pids)
        time.sleep(0.3)
    unmount_all(root)
    _remove_cgroups(cgroups)
    shutil.rmtree(sockets, ignore_errors=True)
    with contextlib.suppress(OSError):
        sockets.parent.rmdir()  # only when no other node's sockets are there
    if net is not None:
        from localcluster import nodenet

        nodenet.delete(net)
    if before is None:
        return
    for name, value in before.sysctls.items():
        if read_sysctls().get(name) != value:
            with contextlib.suppress(OSError):
                _sysctl_path(name).write_text(value + "\n")
    for path in _node_debris(before, network):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()


def leftovers(
    before: HostState,
    root: Path,
    cgroup_root: str,
    net: NodeNet | None,
    network: str,
    sockets: Path,
) -> list[str]:
    """Everything the node left on the host compared with `before` (empty: nothing)."""
    found: list[str] = []
    found += [f"process {pid}" for pid in sorted(node_pids(root, sockets))]
    found += [f"mount {point}" for point in mounts_under(root)]
    found += [f"cgroup {path}" for path in cgroup_dirs(cgroup_root)]
    if sockets.exists():
        found.append(f"folder {sockets}")
    if net is not None:
        if net.netns_path.exists():
            found.append(f"network namespace {net.netns}")
        if Path(f"/sys/class/net/{net.host_veth}").exists():
            found.append(f"interface {net.host_veth}")
        routes = subprocess.run(
            ["ip", "-4", "route", "show"], capture_output=True, text=True, check=False
        ).stdout
        found += [f"route {cidr}" for cidr in net.routes() if cidr in routes]
        if net.is_first and nodelink.switch_path(net.cluster_slot).exists():
            found.append(f"network namespace {nodelink.switch_netns(net.cluster_slot)}")
    now = read_sysctls()
    found += [
        f"sysctl {name}={now.get(name)} (was {value})"
        for name, value in before.sysctls.items()
        if now.get(name) != value
    ]
    new_chains = sorted(set(iptables_chains()) - set(before.iptables))
    found += [f"iptables chain {chain}" for chain in new_chains]
    found += [f"file {path}" for path in _node_debris(before, network)]
    return found
