"""What the real node needs from the machine, checked before anything starts: one clear message.

Set LOCALCLUSTER_REAL_NODE=0 to start the control plane with kwok's simulated node only (no root
and none of these packages needed), LOCALCLUSTER_NODES=N for N real nodes (default 1).
"""

from __future__ import annotations

import os

from localcluster.requirements import missing_message, missing_tools

#: What the node runs or calls (keys of requirements.DEBIAN_PACKAGES).
NODE_TOOLS = (
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "iptables",
    "conntrack",
    "ip",
    "nsenter",
    "cni-plugins",
)
WHAT = "the local cluster's real node (LOCALCLUSTER_REAL_NODE=0 runs kwok's simulated node only)"


class PreflightError(RuntimeError):
    """The machine cannot run the real node; the message says what to install or change."""


def real_node_wanted() -> bool:
    return os.environ.get("LOCALCLUSTER_REAL_NODE", "1") not in ("0", "false", "no")


def real_nodes_wanted() -> int:
    """How many real nodes a cluster starts with: LOCALCLUSTER_NODES (default 1)."""
    value = os.environ.get("LOCALCLUSTER_NODES", "1")
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise PreflightError(f"LOCALCLUSTER_NODES must be a whole number from 1, not {value!r}")
    return count


def require_real_node() -> None:
    message = missing_message(missing_tools(NODE_TOOLS), os.geteuid() == 0, WHAT)
    if message is not None:
        raise PreflightError(message)
