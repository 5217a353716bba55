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

from localcluster import kubeobjects
from localcluster.kubeobjects import binding, meta, role, rule, service_account

NAMESPACE = "monitoring"
#: The Prometheus resource: the operator names its StatefulSet `prometheus-<name>`.
PROMETHEUS_NAME = "k8s"
PROMETHEUS_PORT = 9090
OPERATOR_NAME = "prometheus-operator"
OPERATOR_PORT = 8080
MONITORING_GROUP = "monitoring.coreos.com"
PART_OF = "localcluster-monitoring"
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


def namespace_object(settings: StackSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": meta(settings.namespace, None, "monitoring", PART_OF),
    }


def operator_rbac(settings: StackSettings) -> list[dict[str, Any]]:
    """ServiceAccount, ClusterRole (+binding) and namespaced Role (+binding) of the operator."""
    ns = settings.namespace
    read = ["get", "list", "watch"]
    write = ["get", "list", "watch", "create", "update", "delete"]
    cluster_rules = [
        rule([MONITORING_GROUP], list(CONFIG_RESOURCES), read),
        rule([""], ["namespaces"], read),
        rule([""], ["events"], ["create", "patch"]),
    ]
    rules = [
        rule([MONITORING_GROUP], ["prometheuses"], read),
        # status: server-side apply (patch); finalizers: owner references on its children
        rule([MONITORING_GROUP], ["prometheuses/status"], ["get", "update", "patch"]),
        rule([MONITORING_GROUP], ["prometheuses/finalizers"], ["update"]),
        rule(["apps"], ["statefulsets"], write),
        rule([""], ["configmaps", "secrets"], write),
        rule([""], ["services", "endpoints"], ["get", "create", "update", "delete"]),
        rule([""], ["pods"], ["list"]),
    ]
    return [
        service_account(OPERATOR_NAME, ns, PART_OF),
        role("ClusterRole", OPERATOR_NAME, None, cluster_rules, PART_OF),
        binding("ClusterRole", OPERATOR_NAME, OPERATOR_NAME, None, OPERATOR_NAME, ns, PART_OF),
        role("Role", OPERATOR_NAME, ns, rules, PART_OF),
        binding("Role", OPERATOR_NAME, OPERATOR_NAME, ns, OPERATOR_NAME, ns, PART_OF),
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
        "securityContext": kubeobjects.container_security(),
    }
    pod = {
        "serviceAccountName": OPERATOR_NAME,
        "securityContext": kubeobjects.pod_security(fs_group=True),
        "containers": [container],
    }
    return kubeobjects.deployment(OPERATOR_NAME, settings.namespace, pod, PART_OF)


def prometheus_rbac(settings: StackSettings) -> list[dict[str, Any]]:
    """What Prometheus' service discovery reads (EndpointSlices, Services, Pods), cluster-wide:
    its selectors cover every namespace."""
    ns = settings.namespace
    read = ["get", "list", "watch"]
    rules = [
        rule([""], ["services", "pods"], read),
        rule(["discovery.k8s.io"], ["endpointslices"], read),
    ]
    return [
        service_account("prometheus", ns, PART_OF),
        role("ClusterRole", "prometheus", None, rules, PART_OF),
        binding("ClusterRole", "prometheus", "prometheus", None, "prometheus", ns, PART_OF),
    ]


def prometheus_resource(settings: StackSettings) -> dict[str, Any]:
    """One replica selecting ServiceMonitors, PodMonitors and PrometheusRules in every namespace
    (empty selectors and namespace selectors select all)."""
    return {
        "apiVersion": f"{MONITORING_GROUP}/v1",
        "kind": "Prometheus",
        "metadata": meta(PROMETHEUS_NAME, settings.namespace, "prometheus", PART_OF),
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
            "securityContext": kubeobjects.pod_security(fs_group=True),
        },
    }


def prometheus_service(settings: StackSettings) -> dict[str, Any]:
    """`prometheus-<name>` on port 9090 (`kubectl port-forward svc/...`); the operator adds its
    own headless `prometheus-operated`."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(
            f"prometheus-{PROMETHEUS_NAME}", settings.namespace, "prometheus", PART_OF
        ),
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
