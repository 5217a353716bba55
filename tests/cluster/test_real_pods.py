"""What a platform team checks after `kubectl apply`, on the local cluster's real node: real
containers of the streaming image, their real probes, the Service and cluster DNS, a rolling
update under load, a hung container restarted by its liveness probe, and a
HorizontalPodAutoscaler fed by metrics-server.

The origin is a hostPath PersistentVolume in the test's temporary folder (written from the
host), so these scenarios need this project's local cluster (`local_control_plane`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster.node import NODE_NAME
from tests.cluster.conftest import Namespace, OperatorProcess, eventually, image_alias
from tests.cluster.podclient import client_result, pattern, run_client_pod, start_client_pod
from tests.cluster.test_operator import platform, wait_ready
from vod_operator.naming import DEFAULT_IMAGE

pytestmark = [pytest.mark.cluster, pytest.mark.local_control_plane]

CLIP = "clip.bin"
CLIP_SIZE = 8 * 1024 * 1024
STREAM_UID = 10001


def offer_media(namespace: Namespace, folder: Path) -> str:
    """`folder` (on the node) holding clip.bin, offered to the namespace as PVC `videos` through
    a hostPath PersistentVolume; returns the volume's name (cluster-scoped: delete it after)."""
    folder.mkdir()
    (folder / CLIP).write_bytes(pattern(CLIP_SIZE))
    os.chown(folder, STREAM_UID, STREAM_UID)
    os.chmod(folder.parent, 0o755)
    pv = f"vod-e2e-{namespace.name}"
    namespace.cluster.kubectl(
        "apply", "-f", "-",
        input=json.dumps({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                "claimRef": {"namespace": namespace.name, "name": "videos"},
                "hostPath": {"path": str(folder), "type": "Directory"},
            },
        }),
    )  # fmt: skip
    namespace.apply(
        json.dumps({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "videos"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv,
                     "resources": {"requests": {"storage": "1Gi"}}},
        })
    )  # fmt: skip
    return pv


def withdraw_media(namespace: Namespace, pv: str) -> None:
    """Delete the namespace's platforms (their pods release the volume), then the volume."""
    namespace.kubectl("delete", "vp", "--all", "--wait=true", "--timeout=60s", check=False)
    namespace.cluster.kubectl("delete", "pv", pv, "--wait=false", check=False)


@pytest.fixture
def media(namespace: Namespace, tmp_path: Path) -> Iterator[Path]:
    """A folder on the node holding clip.bin, offered to the namespace as PVC `videos`."""
    folder = tmp_path / "media"
    pv = offer_media(namespace, folder)
    yield folder
    withdraw_media(namespace, pv)


def stream_pods(ns: Namespace, name: str) -> list[dict[str, Any]]:
    pods = json.loads(
        ns.kubectl("get", "pods", "-l", f"app.kubernetes.io/instance={name}", "-o", "json").stdout
    )["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def all_pods_ready(ns: Namespace, name: str) -> None:
    """Every streaming pod of `name` passes its readiness probe (the platform is Ready with one)."""
    ns.kubectl("rollout", "status", f"deploy/{name}-stream", "--timeout=180s", timeout=200)
    ns.kubectl(
        "wait", "--for=condition=Ready", "pod", "-l", f"app.kubernetes.io/instance={name}",
        "--timeout=180s", timeout=200,
    )  # fmt: skip


def service_url(ns: Namespace, name: str) -> tuple[str, int]:
    return f"{name}-stream.{ns.name}.svc.cluster.local", 8080


def client(ns: Namespace, name: str, seconds: float, **extra: Any) -> dict[str, Any]:
    host, port = service_url(ns, name)
    return {"host": host, "port": port, "path": f"/{CLIP}", "size": CLIP_SIZE,
            "span": 64 * 1024, "seconds": seconds, "threads": 1, **extra}  # fmt: skip


def pvc_platform(name: str, spec: str = "") -> str:
    return platform(name, spec).replace("    emptyDir: {}\n", "    pvc: {claimName: videos}\n")


def test_pods_become_ready_by_their_probes_and_serve_ranges_to_another_pod(
    operator: OperatorProcess, namespace: Namespace, media: Path
) -> None:
    namespace.apply(pvc_platform("web", "replicas: 2"))
    wait_ready(namespace, "web", timeout=180)
    all_pods_ready(namespace, "web")
    pods = stream_pods(namespace, "web")
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == NODE_NAME
        assert pod["status"]["podIP"].startswith("10.244.")
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"] is True
        assert "running" in status["state"]
    # the in-cluster client resolves the Service name through CoreDNS and checks every byte
    result = run_client_pod(namespace, "reader", DEFAULT_IMAGE, client(namespace, "web", 5))
    assert result["failed"] == 0, result["errors"]
    assert result["ok"] >= 10
    # kubectl logs and exec reach the kubelet
    pod_name = pods[0]["metadata"]["name"]
    assert namespace.kubectl("logs", pod_name, "-c", "stream").stdout.strip()
    whoami = namespace.kubectl("exec", pod_name, "-c", "stream", "--", "id", "-u").stdout.strip()
    assert whoami == str(STREAM_UID)


def test_rolling_update_while_a_client_streams_fails_no_request(
    operator: OperatorProcess, namespace: Namespace, media: Path, kube_cluster: Any
) -> None:
    alias = image_alias(kube_cluster)  # a second name: the Deployment really rolls
    namespace.apply(pvc_platform("roll", "replicas: 2"))
    wait_ready(namespace, "roll", timeout=180)
    all_pods_ready(namespace, "roll")
    first = {p["metadata"]["name"] for p in stream_pods(namespace, "roll")}
    start_client_pod(namespace, "streamer", DEFAULT_IMAGE, client(namespace, "roll", 75, threads=2))
    eventually(lambda: namespace.get("pod", "streamer")["status"].get("phase") == "Running")
    time.sleep(5)
    # an image change, then a spec change that changes the configuration hash
    namespace.kubectl(
        "patch", "vp/roll", "--type=merge", "-p", json.dumps({"spec": {"image": alias}})
    )
    namespace.kubectl("rollout", "status", "deploy/roll-stream", "--timeout=120s", timeout=150)
    namespace.kubectl(
        "patch", "vp/roll", "--type=merge", "-p", '{"spec":{"server":{"logLevel":"debug"}}}'
    )
    namespace.kubectl("rollout", "status", "deploy/roll-stream", "--timeout=120s", timeout=150)
    result = client_result(namespace, "streamer", timeout=150)
    after = stream_pods(namespace, "roll")
    print(f"rolling update: {result['ok']} requests ok, {result['failed']} failed")
    print(f"timeline [s, ok, failed]: {result['timeline']}")
    assert result["failed"] == 0, result["errors"]
    assert result["ok"] > 100
    assert first.isdisjoint(p["metadata"]["name"] for p in after)
    assert {p["spec"]["containers"][0]["image"] for p in after} == {alias}
    wait_ready(namespace, "roll", timeout=60)


def test_a_hung_container_is_restarted_by_its_liveness_probe_and_status_shows_it(
    operator: OperatorProcess, namespace: Namespace, media: Path
) -> None:
    namespace.apply(pvc_platform("hang", "replicas: 1"))
    wait_ready(namespace, "hang", timeout=180)
    (pod,) = stream_pods(namespace, "hang")
    name = pod["metadata"]["name"]
    # freeze every process of the container (same user): the port stays open, nothing answers
    freeze = "import os, signal; os.kill(-1, signal.SIGSTOP)"
    namespace.kubectl("exec", name, "-c", "stream", "--", "python", "-c", freeze, check=False)
    seen: list[tuple[int, int, str]] = []
    began = time.monotonic()

    def observe() -> tuple[int, str]:
        vp = namespace.get("vp", "hang")
        ready = next(c["status"] for c in vp["status"]["conditions"] if c["type"] == "Ready")
        point = (round(time.monotonic() - began), vp["status"].get("readyReplicas", 0), ready)
        if not seen or seen[-1][1:] != point[1:]:
            seen.append(point)
        return point[1], ready

    eventually(lambda: observe() == (0, "False"), timeout=60, interval=1)
    restarted = eventually(
        lambda: (
            observe() == (1, "True")
            and namespace.get("pod", name)["status"]["containerStatuses"][0]["restartCount"] >= 1
        ),
        timeout=120,
        interval=1,
    )
    print(f"status over time [s, readyReplicas, Ready]: {seen}")
    assert restarted
    events = namespace.kubectl(
        "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json"
    ).stdout
    messages = [e.get("message", "") for e in json.loads(events)["items"]]
    assert any("Liveness probe failed" in m for m in messages), messages
    assert any("failed liveness probe, will be restarted" in m for m in messages), messages


def test_horizontal_pod_autoscaler_scales_out_under_load_and_back_in(
    operator: OperatorProcess, namespace: Namespace, media: Path, kube_cluster: Any
) -> None:
    namespace.apply(
        pvc_platform(
            "auto",
            """
            autoscaling:
              enabled: true
              minReplicas: 1
              maxReplicas: 3
              targetCPUUtilizationPercentage: 30
              # In within the test's time: the rendered behaviour overrides the controller
              # manager's --horizontal-pod-autoscaler-downscale-stabilization (30s here).
              behavior:
                scaleDown:
                  stabilizationWindowSeconds: 30
                  selectPolicy: Max
                  policies: [{type: Percent, value: 100, periodSeconds: 15}]
            resources:
              requests: {cpu: 50m, memory: 64Mi}
              limits: {cpu: 500m, memory: 512Mi}
            """,
        )
    )
    wait_ready(namespace, "auto", timeout=180)
    # metrics-server reports the pod before the HPA can act on it
    eventually(
        lambda: "auto-stream" in kube_cluster.kubectl("top", "pod", "-n", namespace.name).stdout,
        timeout=90,
        interval=3,
    )
    timeline: list[tuple[int, int]] = []
    began = time.monotonic()

    def replicas() -> int:
        hpa = namespace.get("hpa", "auto-stream")
        current = int(hpa.get("status", {}).get("currentReplicas", 0))
        if not timeline or timeline[-1][1] != current:
            timeline.append((round(time.monotonic() - began), current))
        return current

    start_client_pod(
        namespace, "load", DEFAULT_IMAGE, client(namespace, "auto", 90, threads=4, span=1024)
    )
    eventually(lambda: replicas() >= 2, timeout=100, interval=2)
    client_result(namespace, "load", timeout=150)
    eventually(lambda: replicas() == 1, timeout=150, interval=2)
    print(f"HPA replicas over time [s, replicas]: {timeline}")
    assert max(r for _, r in timeline) >= 2
    assert timeline[-1][1] == 1
