"""Pure autoscaling decisions: spec.autoscaling + what the cluster serves -> one scaler.

The targets and the series they read (monitoring/README.md is the contract):
- targetCPUUtilizationPercentage: the pods' CPU, from the resource metrics API (always there).
- targetInFlightRequestsPerPod: `vod_http_requests_in_flight`, a gauge per pod (the scrape
  reading it is not counted: an idle pod is 0).
- targetEgressBytesPerSecondPerPod: the rate of `vod_http_response_body_bytes_total`.

Where the request and egress targets can be honoured, in order of preference:
1. KEDA (keda.sh/v1alpha1 served) and spec.autoscaling.prometheus.serverAddress set: a
   ScaledObject with Prometheus triggers (AverageValue: KEDA's HPA divides the platform's sum by
   the pod count, so the threshold is per pod) beside the CPU trigger.
2. A custom.metrics.k8s.io adapter serving the metric for pods: an HPA `Pods` metric; else an
   external.metrics.k8s.io adapter serving it: an HPA `External` metric (AverageValue).
3. Neither: the target is not honoured and the AutoscalingReady condition names it and what is
   missing; the HPA scales on CPU alone, or, with the CPU target off, no scaler runs and the
   Deployment holds minReplicas pods. Never a silent downgrade.
Exactly one scaler kind is ever desired; the reconciler prunes the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.utils import parse_quantity

from vod_operator import monitoring

HPA = "HorizontalPodAutoscaler"
SCALED_OBJECT = "ScaledObject"
#: The scaler kinds: at most one of them is desired for a platform.
SCALER_KINDS = frozenset({HPA, SCALED_OBJECT})

#: The data plane's in-flight gauge (per pod).
IN_FLIGHT_SERIES = "vod_http_requests_in_flight"
#: The data plane's egress counter (per pod and route).
EGRESS_SERIES = "vod_http_response_body_bytes_total"
#: The name a metrics adapter gives the counter's per-second rate (prometheus-adapter's default
#: rule turns `<name>_total` counters into `<name>_per_second`).
EGRESS_RATE_METRIC = "vod_http_response_body_bytes_per_second"
#: The shortest rate window of the egress query (the scrape interval may lengthen it).
EGRESS_RATE_WINDOW = "1m"


@dataclass(frozen=True)
class MetricsApis:
    """What discovery found for autoscaling."""

    #: keda.sh/v1alpha1 serves scaledobjects.
    keda: bool = False
    #: Metric names custom.metrics.k8s.io serves for pods (its `pods/<name>` resources).
    custom: frozenset[str] = frozenset()
    #: Metric names external.metrics.k8s.io serves.
    external: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Target:
    """One per-pod metric target of spec.autoscaling."""

    #: The spec field (what the condition names).
    field: str
    #: Short name of the trigger and of the target in messages.
    title: str
    #: The metric a custom/external metrics adapter serves for it.
    metric: str
    #: PromQL: the platform's total (KEDA divides it by the pod count).
    query: str
    #: The target value per pod, as written in the spec (a quantity).
    value: str


@dataclass(frozen=True)
class Plan:
    """What spec.autoscaling becomes."""

    #: HPA, SCALED_OBJECT or None (no scaler: autoscaling off, or nothing it could scale on).
    kind: str | None
    #: CPU target in percent, None when off.
    cpu: int | None = None
    #: Targets the scaler honours, and how (for an HPA: "Pods" or "External"; "Prometheus").
    honoured: tuple[tuple[Target, str], ...] = ()
    #: Targets no scaler can honour here.
    missing: tuple[Target, ...] = ()
    #: Why (the AutoscalingReady condition): reason and message.
    reason: str = "Disabled"
    message: str = "spec.autoscaling.enabled is false: spec.replicas applies"
    #: KEDA triggers and HPA metrics (rendered by the templates as they are).
    triggers: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.kind is not None and not self.missing


def targets(name: str, namespace: str, spec: Mapping[str, Any]) -> list[Target]:
    """The request and egress targets `spec` sets (CPU is not a Prometheus target)."""
    autoscaling = spec["autoscaling"]
    selector = monitoring.selector(namespace, name)
    found: list[Target] = []
    if autoscaling.get("targetInFlightRequestsPerPod"):
        found.append(
            Target(
                field="targetInFlightRequestsPerPod",
                title="in-flight-requests",
                metric=IN_FLIGHT_SERIES,
                query=f"sum({IN_FLIGHT_SERIES}{selector})",
                value=str(autoscaling["targetInFlightRequestsPerPod"]),
            )
        )
    if autoscaling.get("targetEgressBytesPerSecondPerPod"):
        window = monitoring.rate_window(
            EGRESS_RATE_WINDOW, 1.0, spec["monitoring"]["scrapeInterval"]
        )
        found.append(
            Target(
                field="targetEgressBytesPerSecondPerPod",
                title="egress-bytes-per-second",
                metric=EGRESS_RATE_METRIC,
                query=f"sum(rate({EGRESS_SERIES}{selector}[{window}]))",
                value=str(autoscaling["targetEgressBytesPerSecondPerPod"]),
            )
        )
    return found


def plan(name: str, namespace: str, spec: Mapping[str, Any], apis: MetricsApis) -> Plan:
    """The one scaler for `spec.autoscaling`, given what the cluster serves."""
    autoscaling = spec["autoscaling"]
    if not autoscaling["enabled"]:
        return Plan(kind=None)
    cpu = int(autoscaling.get("targetCPUUtilizationPercentage", 0)) or None
    wanted = targets(name, namespace, spec)
    address = str(autoscaling.get("prometheus", {}).get("serverAddress") or "")
    if wanted and apis.keda and address:
        triggers = [_cpu_trigger(cpu)] if cpu else []
        triggers += [_prometheus_trigger(t, address) for t in wanted]
        honoured = tuple((t, "Prometheus") for t in wanted)
        message = f"KEDA ScaledObject scales on {_describe(cpu, honoured)}"
        return Plan(SCALED_OBJECT, cpu, honoured, (), SCALED_OBJECT, message, triggers=triggers)
    metrics = [_cpu_metric(cpu)] if cpu else []
    honoured_list: list[tuple[Target, str]] = []
    missing: list[Target] = []
    for target in wanted:
        if target.metric in apis.custom:
            metrics.append(_pods_metric(target))
            honoured_list.append((target, "Pods"))
        elif target.metric in apis.external:
            metrics.append(_external_metric(target, name))
            honoured_list.append((target, "External"))
        else:
            missing.append(target)
    honoured = tuple(honoured_list)
    kind = HPA if metrics else None
    if not missing:
        message = f"HorizontalPodAutoscaler scales on {_describe(cpu, honoured)}"
        return Plan(kind, cpu, honoured, (), HPA, message, metrics=metrics)
    reason, why = _why_missing(missing, apis, address)
    if kind is None:
        fallback = (
            f"no autoscaler runs: the Deployment holds minReplicas "
            f"({autoscaling['minReplicas']}) pods"
        )
    else:
        fallback = f"the HorizontalPodAutoscaler scales on {_describe(cpu, honoured)} only"
    return Plan(kind, cpu, honoured, tuple(missing), reason, f"{why}; {fallback}", metrics=metrics)


def scaler_kind(spec: Mapping[str, Any], apis: MetricsApis) -> str | None:
    """The kind of the scaler `plan` picks (HPA, SCALED_OBJECT or None): it depends on neither
    the platform's name nor its namespace, only on the spec and what the cluster serves."""
    return plan("", "", spec, apis).kind


def _why_missing(missing: list[Target], apis: MetricsApis, address: str) -> tuple[str, str]:
    fields = " and ".join(f"spec.autoscaling.{t.field}" for t in missing)
    metrics = ", ".join(t.metric for t in missing)
    adapter = (
        f"or a custom.metrics.k8s.io (pods) or external.metrics.k8s.io adapter serving {metrics}"
    )
    if apis.keda and not address:
        return (
            "PrometheusAddressMissing",
            f"{fields} not honoured: KEDA is installed but spec.autoscaling.prometheus."
            f"serverAddress is not set ({adapter[3:]} would do too)",
        )
    if not address:
        need = "KEDA (keda.sh/v1alpha1) with spec.autoscaling.prometheus.serverAddress set"
    else:
        need = "KEDA (keda.sh/v1alpha1 is not served)"
    they = "they need" if len(missing) > 1 else "it needs"
    return "MetricsAPIMissing", f"{fields} not honoured: {they} {need}, {adapter}"


def _describe(cpu: int | None, honoured: tuple[tuple[Target, str], ...]) -> str:
    parts = [f"CPU {cpu}%"] if cpu else []
    for target, how in honoured:
        unit = "requests in flight" if target.field == "targetInFlightRequestsPerPod" else "bytes/s"
        parts.append(f"{target.value} {unit} per pod ({how})")
    return ", ".join(parts)


def _cpu_trigger(cpu: int) -> dict[str, Any]:
    return {"type": "cpu", "metricType": "Utilization", "metadata": {"value": str(cpu)}}


def _prometheus_trigger(target: Target, address: str) -> dict[str, Any]:
    return {
        "type": "prometheus",
        "name": target.title,
        # The query sums the platform's pods; AverageValue makes KEDA's HPA divide by the
        # current pod count, so the threshold is the per-pod target.
        "metricType": "AverageValue",
        "metadata": {
            "serverAddress": address,
            "query": target.query,
            "threshold": _plain_number(target.value),
            # An empty answer (no target scraped) is an error, not a zero that scales in.
            "ignoreNullValues": "false",
        },
    }


def _plain_number(quantity: str) -> str:
    """KEDA's threshold is a plain number: 100Mi -> 104857600."""
    return format(parse_quantity(quantity).normalize(), "f")


def _cpu_metric(cpu: int) -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}},
    }


def _pods_metric(target: Target) -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": target.metric},
            "target": {"type": "AverageValue", "averageValue": target.value},
        },
    }


def _external_metric(target: Target, name: str) -> dict[str, Any]:
    return {
        "type": "External",
        "external": {
            "metric": {"name": target.metric, "selector": {"matchLabels": {"platform": name}}},
            "target": {"type": "AverageValue", "averageValue": target.value},
        },
    }


#: The condition of a live scaler that says it cannot scale: (type, reason when it is False).
_WORKING_CONDITION = {HPA: "ScalingActive", SCALED_OBJECT: "Ready"}


def scaler_failure(kind: str, live: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(reason, message) when the live scaler reports that it cannot scale: an HPA whose
    ScalingActive is False (e.g. FailedGetPodsMetric: the adapter does not answer for these
    pods), a ScaledObject whose Ready is False (e.g. its Prometheus cannot be queried). None
    while it works or has not reported yet."""
    wanted = _WORKING_CONDITION[kind]
    conditions = (live or {}).get("status", {}).get("conditions") or []
    found = next((c for c in conditions if c.get("type") == wanted), None)
    if found is None or found.get("status") != "False":
        return None
    reason = str(found.get("reason") or f"{kind}NotReady")
    detail = str(found.get("message") or "no message")
    return reason, f"the {kind} reports {wanted}=False ({reason}): {detail}"


def behavior(spec: Mapping[str, Any]) -> dict[str, Any]:
    """autoscaling/v2 HPA behavior from spec.autoscaling.behavior (defaults already applied)."""
    result: dict[str, Any] = {}
    for direction in ("scaleUp", "scaleDown"):
        rules = spec["autoscaling"]["behavior"][direction]
        result[direction] = {
            "stabilizationWindowSeconds": int(rules["stabilizationWindowSeconds"]),
            "selectPolicy": str(rules["selectPolicy"]),
            "policies": [
                {
                    "type": p["type"],
                    "value": int(p["value"]),
                    "periodSeconds": int(p["periodSeconds"]),
                }
                for p in rules["policies"]
            ],
        }
    return result
