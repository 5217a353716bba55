"""What the real node needs from the machine, checked before anything starts: one clear message.

Set LOCALCLUSTER_REAL_NODE=0 to start the control plane with kwok's simulated node only (no root
and none of these packages needed).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from localcluster.node import CNI_BIN_DIRS

#: command -> the Debian package that provides it
COMMANDS = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "mount": "mount",
}
CNI_PLUGINS = ("bridge", "host-local", "portmap", "firewall", "loopback")
CNI_PACKAGE = "containernetworking-plugins"


class PreflightError(RuntimeError):
    """The machine cannot run the real node; the message says what to install or change."""


def real_node_wanted() -> bool:
    return os.environ.get("LOCALCLUSTER_REAL_NODE", "1") not in ("0", "false", "no")


def missing_packages(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """Debian packages whose commands or CNI plugins are missing (sorted, unique)."""
    packages = {package for command, package in COMMANDS.items() if which(command) is None}
    has_cni = any(
        all((Path(folder) / plugin).is_file() for plugin in CNI_PLUGINS) for folder in CNI_BIN_DIRS
    )
    if not has_cni:
        packages.add(CNI_PACKAGE)
    return sorted(packages)


def problem(is_root: bool, missing: list[str]) -> str | None:
    """The one message for what stops the real node from starting (None: nothing)."""
    parts: list[str] = []
    if not is_root:
        parts.append("it must run as root (containers, network namespaces, mounts, cgroups)")
    if missing:
        parts.append(f"missing Debian packages: apt-get install {' '.join(missing)}")
    if not parts:
        return None
    return (
        "the local cluster's real node cannot start: "
        + "; ".join(parts)
        + ". (LOCALCLUSTER_REAL_NODE=0 starts the control plane with kwok's simulated node only.)"
    )


def require_real_node() -> None:
    message = problem(os.geteuid() == 0, missing_packages())
    if message is not None:
        raise PreflightError(message)
