"""A private control plane for one Python process (tests, benchmarks) that never outlives it."""

from __future__ import annotations

import atexit
import functools
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from localcluster import cluster, preflight, realnode
from localcluster.build import build
from localcluster.handle import KubeCluster
from localcluster.versions import CONTROL_PLANE_BINARIES, NODE_BINARIES


@contextmanager
def _stop_on_signals(root: Path) -> Iterator[None]:
    """Stop the cluster at interpreter exit and on SIGTERM/SIGHUP (then let the signal proceed:
    the previous handler runs, or the default action ends the process).

    (SIGKILL of this process is covered by PR_SET_PDEATHSIG on every component.)"""
    stop = functools.partial(cluster.stop, root)
    previous: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        stop()
        signal.signal(signum, previous[signal.Signals(signum)])
        signal.raise_signal(signum)

    if threading.current_thread() is threading.main_thread():  # signals are main-thread only
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, handler)
    atexit.register(stop)
    try:
        yield
    finally:
        atexit.unregister(stop)
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def temporary_cluster(
    root: Path,
    name: str = "localcluster",
    real_node: bool | None = None,
    nodes: int | None = None,
    node_images: cluster.NodeImages | None = None,
) -> Iterator[KubeCluster]:
    """Build what is missing, start a cluster in `root`, yield it, stop it on the way out.

    `real_node` (default: unless LOCALCLUSTER_REAL_NODE=0) adds real nodes, `nodes` of them
    (default: LOCALCLUSTER_NODES, else 1), with the pause and project images built offline and
    loaded (or `node_images`: the sandbox image and the archives to import); without it, pods
    are simulated by kwok alone.

    Nothing outlives the calling process: the cluster stops on leaving the block, at exit, on
    SIGTERM/SIGHUP, and each component is SIGKILLed by the kernel if this process dies anyway
    (PR_SET_PDEATHSIG, bound to the calling thread: enter it from a thread that lives as long).
    """
    if real_node is None:
        real_node = preflight.real_node_wanted()
    if real_node:
        preflight.require_real_node()
    count = preflight.real_nodes_wanted() if nodes is None else nodes
    build([*CONTROL_PLANE_BINARIES, *(NODE_BINARIES if real_node else ())])
    if not real_node:
        node_images = None
    elif node_images is None:
        node_images = realnode.default_images()
    with _stop_on_signals(root):
        try:
            up = cluster.start(
                root, name, die_with_parent=True, node_images=node_images, nodes=count
            )
            yield KubeCluster(kubeconfig=up.kubeconfig, server=up.server)
        finally:
            killed = cluster.stop(root)
            if killed:
                print(f"localcluster: had to SIGKILL {', '.join(killed)}", file=sys.stderr)
