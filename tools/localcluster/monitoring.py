"""The monitoring stack in a local cluster, on demand (`python -m localcluster monitoring`).

The Prometheus Operator (built from its Go module) and a Prometheus it manages, from images
composed on the project's base (stackimages.py), with the operator's CRDs taken from the same
module (`example/prometheus-operator-crd/`, server-side apply: they exceed client-side apply's
annotation limit). The images are imported into the real node's containerd here, not at every
`up`: most sessions never need them.

The host reaches the Prometheus pod at its pod IP (the node's pod range is routed to the node's
veth, nodenet.py), so no port-forward is needed for tests; people get the port-forward line.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster import stackimages, stackinstall
from localcluster.handle import KubeCluster
from localcluster.promapi import Prometheus
from localcluster.stackmanifests import (
    OPERATOR_NAME,
    PROMETHEUS_NAME,
    PROMETHEUS_PORT,
    StackSettings,
    stack_objects,
)
from localcluster.versions import PROMETHEUS_VERSION

#: The CRDs of the resources the stack uses (the folder holds all ten; all are applied).
CRD_FOLDER = Path("example") / "prometheus-operator-crd"
NEEDED_CRDS = tuple(
    f"crd/{plural}.monitoring.coreos.com"
    for plural in ("prometheuses", "servicemonitors", "podmonitors", "prometheusrules")
)
FIELD_MANAGER = "localcluster-monitoring"
#: A query worth trying first: is every target up?
SAMPLE_QUERY = "sum by (namespace, job) (up)"


def log(message: str) -> None:
    print(f"localcluster monitoring: {message}", file=sys.stderr, flush=True)


def default_settings() -> StackSettings:
    return StackSettings(
        operator_image=stackimages.OPERATOR_IMAGE,
        reloader_image=stackimages.RELOADER_IMAGE,
        prometheus_image=stackimages.PROMETHEUS_IMAGE,
        prometheus_version=PROMETHEUS_VERSION,
    )


def serving_ip(pod: dict[str, Any], image: str) -> str | None:
    """The pod's IP once it is Ready and runs `image` (not a pod of an earlier spec that the
    operator has yet to replace), else None."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return None
    containers = pod.get("spec", {}).get("containers") or []
    if not any(c.get("name") == "prometheus" and c.get("image") == image for c in containers):
        return None
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return str(status["podIP"]) if ready and status.get("podIP") else None


def prometheus_pod_ip(cluster: KubeCluster, settings: StackSettings) -> str | None:
    result = cluster.kubectl(
        "get", "pod", f"prometheus-{PROMETHEUS_NAME}-0", "-n", settings.namespace, "-o", "json",
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        return None
    return serving_ip(json.loads(result.stdout), settings.prometheus_image)


@dataclass(frozen=True)
class Installed:
    """What `install` reports."""

    prometheus: Prometheus
    namespace: str
    seconds: float

    @property
    def port_forward(self) -> str:
        return (
            f"kubectl -n {self.namespace} port-forward svc/prometheus-{PROMETHEUS_NAME} "
            f"{PROMETHEUS_PORT}:{PROMETHEUS_PORT}"
        )

    @property
    def try_query(self) -> str:
        """One query to try once the port-forward runs (the API: the build has no UI assets)."""
        return (
            f"then: curl -s http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query"
            f" --data-urlencode 'query={SAMPLE_QUERY}'"
        )


def _wait(what: str, check: Any, timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def install(
    cluster: KubeCluster, settings: StackSettings | None = None, timeout: float = 240
) -> Installed:
    """Images into the node, CRDs, the operator, a Prometheus; return once `/-/ready` answers.
    Idempotent: on a cluster that has the stack it re-applies and returns at once."""
    settings = settings or default_settings()
    began = time.monotonic()
    stackinstall.load_images(
        cluster,
        stackimages.ensure_stack_images,
        log,
        "the monitoring stack runs real pods (start the cluster with its real node)",
    )
    crds = stackinstall.module_folder("prometheus-operator", CRD_FOLDER)
    stackinstall.apply_crds(cluster, crds, FIELD_MANAGER, NEEDED_CRDS)
    stackinstall.apply_objects(cluster, stack_objects(settings), FIELD_MANAGER)
    ns = settings.namespace
    stackinstall.wait_rollouts(cluster, ns, (OPERATOR_NAME,), timeout)
    log(f"operator ready after {time.monotonic() - began:.1f} s")
    pod_ip = _wait("the Prometheus pod", lambda: prometheus_pod_ip(cluster, settings), timeout)
    prometheus = Prometheus(f"http://{pod_ip}:{PROMETHEUS_PORT}")
    _wait(f"{prometheus.url}/-/ready", prometheus.ready, timeout)
    took = time.monotonic() - began
    log(f"Prometheus ready at {prometheus.url} after {took:.1f} s")
    return Installed(prometheus, ns, took)
