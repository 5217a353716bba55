"""The monitoring stack's objects, as pure functions returning plain dicts.

The Prometheus Operator watches `Prometheus` resources only in the stack's namespace and
ServiceMonitors, PodMonitors, Probes and PrometheusRules everywhere. Its permissions follow
that split (least privilege, narrower than upstream's example ClusterRole, which grants `*` on
every monitoring.coreos.com resource, StatefulSets, ConfigMaps and Secrets cluster-wide):

- ClusterRole: read the configuration resources and namespaces, emit Events.
- Role in the stack's namespace: the Prometheus resource and its status, and the StatefulSet,
  ConfigMaps, Secrets, Services and Endpoints it makes for it; list Pods for the status.

Controllers it is not granted (Alertmanager, ThanosRuler, PrometheusAgent, ScrapeConfig) are
disabled by the operator itself at start (it checks with SelfSubjectAccessReviews).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NAMESPACE = "monitoring"
#: The Prometheus resource: the operator names its StatefulSet `prometheus-<name>`.
PROMETHEUS_NAME = "k8s"
PROMETHEUS_PORT = 9090
OPERATOR_NAME = "prometheus-operator"
OPERATOR_PORT = 8080
#: nobody, as upstream's images; set as the group too (containerd 1.6 gives GID 0 otherwise).
NOBODY = 65534
MONITORING_GROUP = "monitoring.coreos.com"
#: The configuration resources a Prometheus selects (read cluster-wide).
CONFIG_RESOURCES = ("servicemonitors", "podmonitors", "probes", "prometheusrules")


@dataclass(frozen=True)
class StackSettings:
    """What the stack runs and how often it looks.

    `evaluation_interval` is short so alert tests are quick; a ServiceMonitor's own `interval`
    wins over `scrape_interval` (the platform's is 30 s unless its spec says otherwise)."""

    operator_image: str
    reloader_image: str
    prometheus_image: str
    prometheus_version: str
    namespace: str = NAMESPACE
    scrape_interval: str = "15s"
    evaluation_interval: str = "5s"
    retention: str = "2h"


def _meta(name: str, namespace: str | None, component: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {
            "app.kubernetes.io/name": component,
            "app.kubernetes.io/part-of": "localcluster-monitoring",
        },
    }
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


def _binding(
    kind: str, name: str, namespace: str | None, account: str, account_namespace: str
) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": f"{kind}Binding",
        "metadata": _meta(name, namespace, name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": account_namespace}],
    }


def _service_account(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace, name)}


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": NOBODY,
        "runAsGroup": NOBODY,
        "fsGroup": NOBODY,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def namespace_object(settings: StackSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(settings.namespace, None, "monitoring"),
    }


def operator_rbac(settings: StackSettings) -> list[dict[str, Any]]:
    """ServiceAccount, ClusterRole (+binding) and namespaced Role (+binding) of the operator."""
    ns = settings.namespace
    read = ["get", "list", "watch"]
    write = ["get", "list", "watch", "create", "update", "delete"]
    cluster_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(OPERATOR_NAME, None, OPERATOR_NAME),
        "rules": [
            _rule([MONITORING_GROUP], list(CONFIG_RESOURCES), read),
            _rule([""], ["namespaces"], read),
            _rule([""], ["events"], ["create", "patch"]),
        ],
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(OPERATOR_NAME, ns, OPERATOR_NAME),
        "rules": [
            _rule([MONITORING_GROUP], ["prometheuses"], read),
            # status: server-side apply (patch); finalizers: owner references on its children
            _rule([MONITORING_GROUP], ["prometheuses/status"], ["get", "update", "patch"]),
            _rule([MONITORING_GROUP], ["prometheuses/finalizers"], ["update"]),
            _rule(["apps"], ["statefulsets"], write),
            _rule([""], ["configmaps", "secrets"], write),
            _rule([""], ["services", "endpoints"], ["get", "create", "update", "delete"]),
            _rule([""], ["pods"], ["list"]),
        ],
    }
    return [
        _service_account(OPERATOR_NAME, ns),
        cluster_role,
        _binding("ClusterRole", OPERATOR_NAME, None, OPERATOR_NAME, ns),
        role,
        _binding("Role", OPERATOR_NAME, ns, OPERATOR_NAME, ns),
    ]


def operator_args(settings: StackSettings) -> list[str]:
    return [
        f"--prometheus-config-reloader={settings.reloader_image}",
        # Prometheus resources (and their Secrets, ConfigMaps, StatefulSets) only here;
        # ServiceMonitors and the rest in every namespace.
        f"--prometheus-instance-namespaces={settings.namespace}",
        f"--web.listen-address=:{OPERATOR_PORT}",
    ]


def operator_deployment(settings: StackSettings) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": OPERATOR_NAME}
    container = {
        "name": OPERATOR_NAME,
        "image": settings.operator_image,
        "imagePullPolicy": "IfNotPresent",
        "args": operator_args(settings),
        "env": [{"name": "GOGC", "value": "30"}],
        "ports": [{"name": "http", "containerPort": OPERATOR_PORT}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2},
        "resources": {
            "requests": {"cpu": "20m", "memory": "48Mi"},
            "limits": {"memory": "200Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(OPERATOR_NAME, settings.namespace, OPERATOR_NAME),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": OPERATOR_NAME,
                    "securityContext": _pod_security(),
                    "containers": [container],
                },
            },
        },
    }


def prometheus_rbac(settings: StackSettings) -> list[dict[str, Any]]:
    """What Prometheus' service discovery reads (EndpointSlices, Services, Pods), cluster-wide:
    its selectors cover every namespace."""
    read = ["get", "list", "watch"]
    cluster_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta("prometheus", None, "prometheus"),
        "rules": [
            _rule([""], ["services", "pods"], read),
            _rule(["discovery.k8s.io"], ["endpointslices"], read),
        ],
    }
    return [
        _service_account("prometheus", settings.namespace),
        cluster_role,
        _binding("ClusterRole", "prometheus", None, "prometheus", settings.namespace),
    ]


def prometheus_resource(settings: StackSettings) -> dict[str, Any]:
    """One replica selecting ServiceMonitors, PodMonitors and PrometheusRules in every namespace
    (empty selectors and namespace selectors select all)."""
    return {
        "apiVersion": f"{MONITORING_GROUP}/v1",
        "kind": "Prometheus",
        "metadata": _meta(PROMETHEUS_NAME, settings.namespace, "prometheus"),
        "spec": {
            "version": settings.prometheus_version,
            "image": settings.prometheus_image,
            "replicas": 1,
            "serviceAccountName": "prometheus",
            "serviceDiscoveryRole": "EndpointSlice",
            "serviceMonitorSelector": {},
            "serviceMonitorNamespaceSelector": {},
            "podMonitorSelector": {},
            "podMonitorNamespaceSelector": {},
            "ruleSelector": {},
            "ruleNamespaceSelector": {},
            "scrapeInterval": settings.scrape_interval,
            "evaluationInterval": settings.evaluation_interval,
            "retention": settings.retention,
            "resources": {
                "requests": {"cpu": "50m", "memory": "128Mi"},
                "limits": {"memory": "512Mi"},
            },
            "securityContext": _pod_security(),
        },
    }


def prometheus_service(settings: StackSettings) -> dict[str, Any]:
    """`prometheus-<name>` on port 9090 (`kubectl port-forward svc/...`); the operator adds its
    own headless `prometheus-operated`."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(f"prometheus-{PROMETHEUS_NAME}", settings.namespace, "prometheus"),
        "spec": {
            "selector": {
                "app.kubernetes.io/name": "prometheus",
                "prometheus": PROMETHEUS_NAME,
            },
            "ports": [{"name": "web", "port": PROMETHEUS_PORT, "targetPort": "web"}],
        },
    }


def stack_objects(settings: StackSettings) -> list[dict[str, Any]]:
    """Everything but the CRDs, in an order that applies in one pass once the CRDs exist."""
    return [
        namespace_object(settings),
        *operator_rbac(settings),
        operator_deployment(settings),
        *prometheus_rbac(settings),
        prometheus_resource(settings),
        prometheus_service(settings),
    ]
