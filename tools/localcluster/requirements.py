"""What the machine must have for images and a real node: root and a few Debian packages.

A missing piece gives one message naming the Debian package to install, never a stack trace
(the CLI prints `RuntimeError` messages as they are).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

#: The Debian package that installs each tool (`libc.a`: the static C library gcc links;
#: `cni-plugins`: the CNI bridge, host-local, portmap, firewall and loopback plugins).
DEBIAN_PACKAGES = {
    "mmdebstrap": "mmdebstrap",
    "dockerd": "docker.io",
    "docker": "docker.io",
    "runc": "runc",
    "containerd": "containerd",
    "ctr": "containerd",
    "gcc": "gcc",
    "libc.a": "libc6-dev",
    "containerd-shim-runc-v2": "containerd",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "cni-plugins": "containernetworking-plugins",
}
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
CNI_PLUGINS = ("bridge", "host-local", "portmap", "firewall", "loopback")
#: Debian installs daemons in sbin, which a non-login root shell may lack on PATH.
_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


class RequirementError(RuntimeError):
    """Root or a system package is missing; the message says what to install."""


def missing_message(missing: Sequence[str], is_root: bool, what: str) -> str | None:
    """The one message for `what` (e.g. "building images") when tools or root are missing,
    None when nothing is."""
    problems = []
    if not is_root:
        problems.append("run it as root")
    if missing:
        packages = sorted({DEBIAN_PACKAGES.get(tool, tool) for tool in missing})
        problems.append(
            f"missing {', '.join(missing)}: install the Debian package"
            f"{'s' if len(packages) > 1 else ''} with `apt-get install {' '.join(packages)}`"
        )
    if not problems:
        return None
    return f"{what} needs root and system packages: " + "; ".join(problems)


def has_static_libc() -> bool:
    """Whether gcc finds libc.a (libc6-dev), needed for `-static`."""
    try:
        out = subprocess.run(
            ["gcc", "-print-file-name=libc.a"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return False
    return os.path.isabs(out) and Path(out).is_file()


def which(tool: str) -> str | None:
    """`tool` on PATH or in the sbin folders."""
    return shutil.which(tool) or shutil.which(tool, path=_SBIN)


def cni_bin_dir() -> str | None:
    """The folder holding every CNI plugin the node uses (Debian's, or the upstream default)."""
    for folder in CNI_BIN_DIRS:
        if all((Path(folder) / plugin).is_file() for plugin in CNI_PLUGINS):
            return folder
    return None


def missing_tools(tools: Sequence[str], lookup: Callable[[str], str | None] = which) -> list[str]:
    """The tools (keys of DEBIAN_PACKAGES) this machine lacks, in the given order."""
    missing = []
    for tool in tools:
        if tool == "libc.a":
            if lookup("gcc") is not None and not has_static_libc():
                missing.append(tool)
        elif tool == "cni-plugins":
            if cni_bin_dir() is None:
                missing.append(tool)
        elif lookup(tool) is None:
            missing.append(tool)
    return missing


def require(tools: Sequence[str], what: str, *, root: bool = True) -> None:
    """Raise RequirementError (one clear message) when a tool, or root, is missing."""
    message = missing_message(missing_tools(tools), os.geteuid() == 0 or not root, what)
    if message is not None:
        raise RequirementError(message)
