"""How fast the lean images start on the real node, measured and printed (`-s` shows them):

- a new node (a second cluster's real node, holding only the pause image) imports the serving
  image and runs a Ready pod of it: the import, then the pod's start until its readiness probe
  passes;
- a VideoPlatform goes from 2 to 6 Ready pods on the session's real node.

The bounds are loose (a shared 2-core machine); the printed figures are the measurement.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster import cluster, imageload, images
from localcluster.node import NodeLayout
from tests.cluster.conftest import Namespace, OperatorProcess, eventually
from tests.cluster.test_operator import platform, wait_ready
from vod_operator import naming

pytestmark = [pytest.mark.cluster, pytest.mark.local_control_plane]


@pytest.fixture
def short_folder() -> Iterator[Path]:
    """A cluster folder right under /tmp (the kubelet's socket paths must stay short)."""
    folder = Path(tempfile.mkdtemp(prefix="lc-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def serving_pod(image: str) -> dict[str, Any]:
    """The serving image's own command, restricted as the operator runs it, probed on /readyz."""
    probe = {"httpGet": {"path": "/readyz", "port": naming.PORT}, "periodSeconds": 1}
    container = {
        "name": "stream",
        "image": image,
        "imagePullPolicy": "Never",
        "env": [{"name": "VOD_SIGNING_KEYS_DIR", "value": "/keys"}],
        "readinessProbe": probe,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": name, "mountPath": f"/{name}"} for name in ("tmp", "media", "keys")
        ],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "stream", "namespace": "default"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532},
            "containers": [container],
            "volumes": [{"name": name, "emptyDir": {}} for name in ("tmp", "media", "keys")],
        },
    }


def test_new_node_imports_the_serving_image_and_runs_a_ready_pod(short_folder: Path) -> None:
    pause = images.ensure_pause()
    serving = next(i for i in images.ensure_project_images() if i.name == "vod-stream")
    root = short_folder / "fresh"
    up = cluster.start(
        root, "fresh", die_with_parent=True, node_images=(images.PAUSE_IMAGE, [pause.archive])
    )
    env = {"KUBECONFIG": str(up.kubeconfig), "PATH": "/usr/local/bin:/usr/bin:/bin"}

    def kubectl(*args: str, data: str | None = None, timeout: float = 120) -> str:
        return subprocess.run(
            ["kubectl", *args], input=data, env=env, capture_output=True, text=True,
            timeout=timeout, check=True,
        ).stdout  # fmt: skip

    try:
        kubectl("wait", "--for=create", "serviceaccount/default", "--timeout=60s")
        layout = NodeLayout(root)
        began = time.monotonic()
        loaded = imageload.load(serving.archive, layout.containerd_socket)
        imported = time.monotonic()
        kubectl("apply", "-f", "-", data=json.dumps(serving_pod(serving.ref)))
        kubectl("wait", "--for=condition=Ready", "pod/stream", "--timeout=120s", timeout=150)
        ready = time.monotonic()
        print(
            f"\nnew node: {serving.ref} ({serving.size / 1e6:.0f} MB) {loaded.action} in "
            f"{imported - began:.1f} s, pod Ready {ready - imported:.1f} s later: "
            f"{ready - began:.1f} s from import to a Ready pod"
        )
        assert loaded.action == "imported"
        assert ready - began < 120
    finally:
        cluster.stop(root)


def ready_replicas(ns: Namespace, name: str) -> int:
    deployment = ns.get("deployment", f"{name}-stream")
    return int(deployment.get("status", {}).get("readyReplicas") or 0)


def test_platform_goes_from_2_to_6_ready_pods(
    operator: OperatorProcess, namespace: Namespace
) -> None:
    namespace.apply(platform("web", "replicas: 2"))
    wait_ready(namespace, "web", timeout=180)
    eventually(lambda: ready_replicas(namespace, "web") == 2, timeout=120)
    began = time.monotonic()
    namespace.apply(platform("web", "replicas: 6"))
    eventually(lambda: ready_replicas(namespace, "web") == 6, timeout=180, interval=0.2)
    took = time.monotonic() - began
    namespace.kubectl("wait", "--for=condition=Ready", "vp/web", "--timeout=60s")
    print(f"\nplatform web: 2 -> 6 Ready pods in {took:.1f} s")
    assert took < 180
