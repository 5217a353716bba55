"""Install steps shared by the stacks the local cluster installs on demand (monitoring.py,
keda.py): images into the real node, CRDs from a Go module, objects by server-side apply,
Deployments rolled out."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from localcluster import imageload, realnode
from localcluster.build import module_dir
from localcluster.handle import KubeCluster
from localcluster.images import Image
from localcluster.node import NodeLayout
from localcluster.versions import component_of


def module_folder(component_name: str, folder: Path) -> Path:
    """`folder` inside the pinned Go module of `component_name` (downloaded once by Go)."""
    component = component_of(component_name)
    found = module_dir(component) / folder
    if not found.is_dir():
        raise RuntimeError(f"{component.module}@{component.version} has no {folder}")
    return found


def load_images(
    cluster: KubeCluster,
    ensure: Callable[[], list[Image]],
    log: Callable[[str], None],
    why_real_node: str,
) -> list[imageload.Loaded]:
    """Compose (or reuse) the images `ensure` returns and import them into each of the
    cluster's real nodes; fail first, saying `why_real_node`, when the cluster has none."""
    root = cluster.kubeconfig.parent
    nodes = [NodeLayout(root, index) for index in range(max(1, len(realnode.load_nets(root))))]
    for node in nodes:
        if not node.containerd_socket.exists():
            raise RuntimeError(
                f"no real node's containerd at {node.containerd_socket}: {why_real_node}"
            )
    loaded = []
    for image in ensure():
        for node in nodes:
            done = imageload.load(image.archive, node.containerd_socket)
            log(
                f"{done.action} {done.ref} ({image.size / 1e6:.0f} MB) into {node.name} in "
                f"{done.seconds:.1f} s"
            )
            loaded.append(done)
    return loaded


def apply_crds(
    cluster: KubeCluster, folder: Path, field_manager: str, needed: Iterable[str]
) -> None:
    """Server-side apply (CRDs can exceed client-side apply's annotation limit) of every CRD in
    `folder`, then wait until the `needed` ones (`crd/<name>`) are served."""
    cluster.kubectl("apply", "--server-side", f"--field-manager={field_manager}", "-f", str(folder))
    cluster.wait_established(*needed)


def apply_objects(cluster: KubeCluster, objects: list[dict[str, Any]], field_manager: str) -> None:
    """Server-side apply of `objects` in one List."""
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    cluster.kubectl(
        "apply", "--server-side", f"--field-manager={field_manager}", "-f", "-", input=manifest
    )


def wait_rollouts(
    cluster: KubeCluster, namespace: str, deployments: Iterable[str], timeout: float
) -> None:
    """`kubectl rollout status` of each Deployment, one after the other."""
    for name in deployments:
        cluster.kubectl(
            "rollout", "status", f"deploy/{name}", "-n", namespace,
            f"--timeout={int(timeout)}s", timeout=timeout + 10,
        )  # fmt: skip
