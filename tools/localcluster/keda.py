"""KEDA in a local cluster, on demand (`python -m localcluster keda`).

The operator and its external-metrics API server, built from KEDA's Go module at the pinned
version (versions.py: a wrapper module copying its `replace` directives), from images composed
on the project's base (stackimages.py), with KEDA's CRDs taken from the same module
(`config/crd/bases`). What runs and why, and the permissions: kedamanifests.py.

Certificates are made here (pki.py): a CA and one certificate for both Services, in the Secret
both pods mount; the APIService trusts that CA. A second install reuses the Secret, so the
running pods and the APIService keep agreeing.

Installed for the tests that ask for it (the `keda` fixture, tests/cluster/conftest.py): once
KEDA serves keda.sh and external.metrics.k8s.io, the vod operator renders ScaledObjects.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

from localcluster import pki, stackimages, stackinstall
from localcluster.handle import KubeCluster
from localcluster.kedamanifests import (
    ADAPTER_NAME,
    API_SERVICE,
    CERT_SECRET,
    OPERATOR_NAME,
    KedaSettings,
    keda_objects,
    service_dns_names,
)
from localcluster.versions import KEDA_VERSION

CRD_FOLDER = Path("config") / "crd" / "bases"
#: The CRDs the operator's controllers watch (all six in the folder are applied).
NEEDED_CRDS = tuple(
    f"crd/{name}"
    for name in (
        "scaledobjects.keda.sh",
        "scaledjobs.keda.sh",
        "triggerauthentications.keda.sh",
        "clustertriggerauthentications.keda.sh",
        "cloudeventsources.eventing.keda.sh",
        "clustercloudeventsources.eventing.keda.sh",
    )
)
FIELD_MANAGER = "localcluster-keda"


def log(message: str) -> None:
    print(f"localcluster keda: {message}", file=sys.stderr, flush=True)


def default_settings() -> KedaSettings:
    return KedaSettings(
        operator_image=stackimages.KEDA_OPERATOR_IMAGE,
        adapter_image=stackimages.KEDA_ADAPTER_IMAGE,
        version=KEDA_VERSION,
    )


def certificates(cluster: KubeCluster, settings: KedaSettings) -> tuple[bytes, bytes, bytes]:
    """(ca.crt, tls.crt, tls.key): those of the Secret already in the cluster, else new ones."""
    found = cluster.kubectl(
        "get", "secret", CERT_SECRET, "-n", settings.namespace, "-o", "json", check=False
    )
    if found.returncode == 0:
        data = json.loads(found.stdout).get("data") or {}
        if {"ca.crt", "tls.crt", "tls.key"} <= set(data):
            pem = [base64.b64decode(data[k]) for k in ("ca.crt", "tls.crt", "tls.key")]
            return pem[0], pem[1], pem[2]
    authority = pki.make_ca("localcluster-keda-ca")
    leaf = pki.issue(
        authority, OPERATOR_NAME, server=True, client_too=True,
        dns_names=service_dns_names(settings.namespace),
    )  # fmt: skip
    cert, key = pki.pair_pem(leaf)
    return pki.pair_pem(authority)[0], cert, key


def api_available(cluster: KubeCluster) -> bool:
    """The aggregation layer reaches the metrics server (APIService Available=True)."""
    result = cluster.kubectl("get", "apiservice", API_SERVICE, "-o", "json", check=False)
    if result.returncode != 0:
        return False
    conditions = json.loads(result.stdout).get("status", {}).get("conditions") or []
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)


def install(
    cluster: KubeCluster, settings: KedaSettings | None = None, timeout: float = 180
) -> float:
    """Images into the node, CRDs, certificates, both Deployments and the APIService; return
    the seconds it took once external.metrics.k8s.io is Available. Idempotent."""
    settings = settings or default_settings()
    began = time.monotonic()
    stackinstall.load_images(cluster, stackimages.ensure_keda_images, log, "KEDA runs real pods")
    # KEDA's CRDs as its module ships them (upstream's kustomize patches only tighten the
    # ScaledJob schema and bound stabilizationWindowSeconds; they are not applied).
    crds = stackinstall.module_folder("keda-operator", CRD_FOLDER)
    stackinstall.apply_crds(cluster, crds, FIELD_MANAGER, NEEDED_CRDS)
    ca, cert, key = certificates(cluster, settings)
    stackinstall.apply_objects(cluster, keda_objects(settings, ca, cert, key), FIELD_MANAGER)
    stackinstall.wait_rollouts(cluster, settings.namespace, (OPERATOR_NAME, ADAPTER_NAME), timeout)
    deadline = time.monotonic() + timeout
    while not api_available(cluster):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{API_SERVICE} not Available after {timeout:.0f} s")
        time.sleep(1)
    took = time.monotonic() - began
    log(f"operator and {API_SERVICE} ready after {took:.1f} s")
    return took
