"""KEDA's objects in a local cluster, as pure functions returning plain dicts.

Two processes, as upstream's `config/` runs them (built from the pinned module, versions.py):
- `keda-operator` (cmd/operator): reconciles ScaledObjects into HPAs and serves their metrics
  over gRPC (port 9666, mutual TLS) to
- `keda-metrics-apiserver` (cmd/adapter): serves external.metrics.k8s.io through an APIService
  (the API server's aggregation layer, configured in flags.py: requestheader + proxy client
  certificates), so KEDA's HPA reads a ScaledObject's triggers as External metrics.

Certificates: one CA and one certificate (server and client, SANs of both Services) made by
the installer (keda.py, pki.py), in the Secret `kedaorg-certs` both pods mount; the APIService
trusts the CA by its caBundle. The operator's own certificate rotation is off: it would need to
write Secrets, APIServices and webhook configurations cluster-wide.

Not run: the admission webhooks (cmd/webhooks). They only reject invalid ScaledObjects (two on
one workload, a CPU trigger without CPU requests), which the vod operator never renders, and
upstream registers them with failurePolicy Ignore; they would add a third image and a
ValidatingWebhookConfiguration the API server must reach. Leader election is off (one replica).

Permissions are narrower than upstream's ClusterRole (which grants `get` on every resource of
every group, `*/scale` on everything and Secrets cluster-wide): the operator reads what its
controllers watch, reads and scales Deployments and StatefulSets, owns HPAs, and reads Secrets
only in its own namespace (TriggerAuthentication secrets live there, as
KEDA_CLUSTER_OBJECT_NAMESPACE says); the metrics server reads ScaledObjects and delegates
authentication and authorization to the API server.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from localcluster import kubeobjects
from localcluster.kubeobjects import binding, meta, role, rule, service_account

NAMESPACE = "keda"
OPERATOR_NAME = "keda-operator"
ADAPTER_NAME = "keda-metrics-apiserver"
CERT_SECRET = "kedaorg-certs"
GRPC_PORT = 9666
METRICS_PORT = 8080
PROBE_PORT = 8081
ADAPTER_PORT = 6443
EXTERNAL_METRICS_GROUP = "external.metrics.k8s.io"
API_SERVICE = f"v1beta1.{EXTERNAL_METRICS_GROUP}"
KEDA_GROUP = "keda.sh"
EVENTING_GROUP = "eventing.keda.sh"
PART_OF = "localcluster-keda"


@dataclass(frozen=True)
class KedaSettings:
    operator_image: str
    adapter_image: str
    version: str
    namespace: str = NAMESPACE


def service_dns_names(namespace: str) -> tuple[str, ...]:
    """What the certificate must name: both Services, as the API server (`<svc>.<ns>.svc`) and
    the metrics server's gRPC client (`keda-operator.<ns>.svc.cluster.local`) address them."""
    return tuple(
        f"{service}.{namespace}.{suffix}"
        for service in (OPERATOR_NAME, ADAPTER_NAME)
        for suffix in ("svc", "svc.cluster.local")
    )


READ = ["get", "list", "watch"]
WRITE = [*READ, "update", "patch"]


def operator_rbac(settings: KedaSettings) -> list[dict[str, Any]]:
    ns = settings.namespace
    keda_resources = [
        "scaledobjects", "scaledjobs", "triggerauthentications", "clustertriggerauthentications",
    ]  # fmt: skip
    eventing = ["cloudeventsources", "clustercloudeventsources"]
    cluster_rules = [
        # Every controller the operator starts watches its kind (an unreadable one stops it).
        rule([KEDA_GROUP], keda_resources, WRITE),
        rule([KEDA_GROUP], [f"{r}/status" for r in keda_resources], ["get", "update", "patch"]),
        rule([KEDA_GROUP], ["scaledobjects/finalizers", "scaledjobs/finalizers"], ["update"]),
        rule([EVENTING_GROUP], eventing, WRITE),
        rule([EVENTING_GROUP], [f"{r}/status" for r in eventing], ["get", "update", "patch"]),
        rule(["autoscaling"], ["horizontalpodautoscalers"], [*WRITE, "create", "delete"]),
        # The scale targets the vod operator names (Deployments), and StatefulSets.
        rule(["apps"], ["deployments", "statefulsets"], READ),
        rule(["apps"], ["deployments/scale", "statefulsets/scale"], ["get", "update", "patch"]),
        # Triggers resolve env from the target's containers (ConfigMaps in envFrom); the CPU
        # trigger checks pods' requests and LimitRanges.
        rule([""], ["configmaps", "pods"], READ),
        rule([""], ["limitranges"], ["list", "watch"]),
        rule(["batch"], ["jobs"], READ),
        rule(["", "events.k8s.io"], ["events"], ["create", "patch"]),
    ]
    return [
        service_account(OPERATOR_NAME, ns, PART_OF),
        role("ClusterRole", OPERATOR_NAME, None, cluster_rules, PART_OF),
        binding("ClusterRole", OPERATOR_NAME, OPERATOR_NAME, None, OPERATOR_NAME, ns, PART_OF),
        role("Role", OPERATOR_NAME, ns, [rule([""], ["secrets"], READ)], PART_OF),
        binding("Role", OPERATOR_NAME, OPERATOR_NAME, ns, OPERATOR_NAME, ns, PART_OF),
    ]


def adapter_rbac(settings: KedaSettings) -> list[dict[str, Any]]:
    """The metrics server: ScaledObjects (which metric belongs to which), authentication and
    authorization delegated to the API server, and the front proxy's CA from kube-system."""
    ns = settings.namespace
    reader = f"{ADAPTER_NAME}-reader"
    return [
        service_account(ADAPTER_NAME, ns, PART_OF),
        role("ClusterRole", reader, None, [rule([KEDA_GROUP], ["scaledobjects"], READ)], PART_OF),
        binding("ClusterRole", reader, reader, None, ADAPTER_NAME, ns, PART_OF),
        binding(
            "ClusterRole",
            f"{ADAPTER_NAME}-auth-delegator",
            "system:auth-delegator",
            None,
            ADAPTER_NAME,
            ns,
            PART_OF,
        ),
        binding(
            "Role",
            f"{ADAPTER_NAME}-auth-reader",
            "extension-apiserver-authentication-reader",
            "kube-system",
            ADAPTER_NAME,
            ns,
            PART_OF,
        ),
        # As upstream: the HPA controller reads external metrics (needed where the controller
        # manager uses per-controller service accounts; here it runs as admin).
        role(
            "ClusterRole",
            "keda-external-metrics-reader",
            None,
            [rule([EXTERNAL_METRICS_GROUP], ["*"], ["get", "list", "watch"])],
            PART_OF,
        ),
        binding(
            "ClusterRole",
            "keda-hpa-controller-external-metrics",
            "keda-external-metrics-reader",
            None,
            "horizontal-pod-autoscaler",
            "kube-system",
            PART_OF,
        ),
    ]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cert_secret(settings: KedaSettings, ca: bytes, cert: bytes, key: bytes) -> dict[str, Any]:
    """`kedaorg-certs` as both processes read it: ca.crt, tls.crt, tls.key."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta(CERT_SECRET, settings.namespace, "keda", PART_OF),
        "type": "kubernetes.io/tls",
        "data": {"ca.crt": _b64(ca), "tls.crt": _b64(cert), "tls.key": _b64(key)},
    }


def _env(settings: KedaSettings) -> list[dict[str, Any]]:
    return [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "WATCH_NAMESPACE", "value": ""},
        {"name": "GOGC", "value": "30"},
    ]


def _certs_volume() -> dict[str, Any]:
    return {"name": "certificates", "secret": {"secretName": CERT_SECRET, "defaultMode": 0o444}}


def _deployment(
    name: str, settings: KedaSettings, container: dict[str, Any], volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    pod = {
        "serviceAccountName": name,
        "securityContext": kubeobjects.pod_security(),
        "terminationGracePeriodSeconds": 10,
        "containers": [container],
        "volumes": volumes,
    }
    return kubeobjects.deployment(name, settings.namespace, pod, PART_OF)


def operator_args() -> list[str]:
    return [
        "--zap-log-level=info",
        "--zap-encoder=console",
        "--zap-time-encoding=rfc3339",
        # The installer made the certificates; nothing for the operator to write or patch.
        "--enable-cert-rotation=false",
        "--enable-webhook-patching=false",
        "--enable-apiservice-patching=false",
        f"--metrics-bind-address=:{METRICS_PORT}",
        f"--health-probe-bind-address=:{PROBE_PORT}",
        f"--metrics-service-bind-address=:{GRPC_PORT}",
    ]


def operator_deployment(settings: KedaSettings) -> dict[str, Any]:
    container = {
        "name": OPERATOR_NAME,
        "image": settings.operator_image,
        "imagePullPolicy": "IfNotPresent",
        "args": operator_args(),
        "env": _env(settings),
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT},
            {"name": "metrics", "containerPort": METRICS_PORT},
            {"name": "probes", "containerPort": PROBE_PORT},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "probes"}, "periodSeconds": 2},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "probes"},
            "initialDelaySeconds": 25,
        },
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "400Mi"}},
        "securityContext": kubeobjects.container_security(),
        "volumeMounts": [{"name": "certificates", "mountPath": "/certs", "readOnly": True}],
    }
    return _deployment(OPERATOR_NAME, settings, container, [_certs_volume()])


def adapter_args() -> list[str]:
    return [
        f"--secure-port={ADAPTER_PORT}",
        "--tls-cert-file=/certs/tls.crt",
        "--tls-private-key-file=/certs/tls.key",
        # Where the gRPC client finds ca.crt, tls.crt and tls.key (mutual TLS to the operator).
        "--cert-dir=/certs",
        f"--port={METRICS_PORT}",
        "--zap-log-level=info",
    ]


def adapter_deployment(settings: KedaSettings) -> dict[str, Any]:
    https = {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    container = {
        "name": ADAPTER_NAME,
        "image": settings.adapter_image,
        "imagePullPolicy": "IfNotPresent",
        "args": adapter_args(),
        "env": _env(settings),
        "ports": [
            {"name": "https", "containerPort": ADAPTER_PORT},
            {"name": "metrics", "containerPort": METRICS_PORT},
        ],
        "readinessProbe": {"httpGet": https, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {**https, "path": "/healthz"}, "initialDelaySeconds": 25},
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "400Mi"}},
        "securityContext": kubeobjects.container_security(),
        "volumeMounts": [
            {"name": "certificates", "mountPath": "/certs", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return _deployment(
        ADAPTER_NAME, settings, container, [_certs_volume(), {"name": "tmp", "emptyDir": {}}]
    )


def _service(name: str, settings: KedaSettings, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, settings.namespace, name, PART_OF),
        "spec": {"selector": {"app.kubernetes.io/name": name}, "ports": ports},
    }


def services(settings: KedaSettings) -> list[dict[str, Any]]:
    return [
        _service(
            OPERATOR_NAME, settings,
            [{"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc"},
             {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}],
        ),
        _service(
            ADAPTER_NAME, settings,
            [{"name": "https", "port": 443, "targetPort": "https"},
             {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}],
        ),
    ]  # fmt: skip


def api_service(settings: KedaSettings, ca: bytes) -> dict[str, Any]:
    """external.metrics.k8s.io/v1beta1 served by the metrics server, its certificate checked
    against `ca` (no insecureSkipTLSVerify)."""
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": meta(API_SERVICE, None, ADAPTER_NAME, PART_OF),
        "spec": {
            "service": {"name": ADAPTER_NAME, "namespace": settings.namespace, "port": 443},
            "group": EXTERNAL_METRICS_GROUP,
            "version": "v1beta1",
            "caBundle": _b64(ca),
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }


def keda_objects(
    settings: KedaSettings, ca: bytes, cert: bytes, key: bytes
) -> list[dict[str, Any]]:
    """Everything but the CRDs, in an order that applies in one pass once the CRDs exist."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": meta(settings.namespace, None, "keda", PART_OF),
        },
        *operator_rbac(settings),
        *adapter_rbac(settings),
        cert_secret(settings, ca, cert, key),
        *services(settings),
        operator_deployment(settings),
        adapter_deployment(settings),
        api_service(settings, ca),
    ]
