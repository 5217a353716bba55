"""Pure status computation: what was observed -> the VideoPlatform's status.

Conditions follow metav1.Condition. A condition's lastTransitionTime changes only when its
status flips; every condition carries the observedGeneration it was computed for (so
`kubectl wait --for=condition=Ready` never trusts a stale verdict).

Ready means "the platform serves traffic", not "every replica is ready": it does not flap when
`kubectl scale`, the HPA or a new image start pods. Rollout progress is the Progressing
condition's business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from vod_operator import naming

Condition = dict[str, Any]
Verdict = tuple[bool | None, str, str]  # status (None: Unknown), reason, message


class Monitoring(Enum):
    """What became of spec.monitoring."""

    DISABLED = "Disabled"
    ENABLED = "Enabled"
    CRDS_MISSING = "MonitoringCRDsNotInstalled"
    #: Discovery failed and there is no earlier verdict to keep.
    UNKNOWN = "DiscoveryFailed"


@dataclass(frozen=True)
class Failure:
    """Why a reconcile pass fell short: a CamelCase reason and the API server's words."""

    reason: str
    message: str


#: Failures to observe the cluster, as opposed to the API server refusing a change.
OBSERVATION_FAILURES = frozenset({"DiscoveryFailed", "ListFailed", "ReadFailed"})


@dataclass(frozen=True)
class Observed:
    """Everything status depends on, gathered by the reconciler."""

    name: str
    namespace: str
    generation: int
    suspended: bool
    deployment: Mapping[str, Any] | None
    monitoring: Monitoring
    previous: Mapping[str, Any]
    now: str
    failure: Failure | None = None
    #: False when the children could not be listed: `deployment` is then unknown, not absent.
    deployment_observed: bool = True
    #: VideoAssets of this platform by phase group (ready, processing, failed); None: unknown.
    assets: Mapping[str, int] | None = None
    #: The AutoscalingReady verdict (autoscaling.plan's: which scaler honours which target,
    #: or what is missing to honour them).
    autoscaling: Verdict = (
        False,
        "Disabled",
        "spec.autoscaling.enabled is false: spec.replicas applies",
    )


@dataclass(frozen=True)
class _Rollout:
    desired: int
    replicas: int
    updated: int
    ready: int
    current: bool  # the Deployment controller has seen the latest Deployment spec
    deadline_exceeded: bool
    available: bool | None  # the Deployment's own Available condition (None: none yet)

    @property
    def complete(self) -> bool:
        return (
            self.current
            and self.updated >= self.desired
            and self.ready >= self.desired
            and self.replicas <= self.updated
        )

    def summary(self) -> str:
        return f"{self.ready}/{self.desired} streaming pods ready, {self.updated} up to date"


def _rollout(deployment: Mapping[str, Any]) -> _Rollout:
    spec, st = deployment.get("spec", {}), deployment.get("status", {})
    conditions = {c.get("type"): c for c in st.get("conditions", [])}
    progressing = conditions.get("Progressing", {})
    return _Rollout(
        desired=int(spec.get("replicas", 1)),
        replicas=int(st.get("replicas", 0)),
        updated=int(st.get("updatedReplicas", 0)),
        ready=int(st.get("readyReplicas", 0)),
        current=int(st.get("observedGeneration", 0))
        >= int(deployment.get("metadata", {}).get("generation", 0)),
        deadline_exceeded=progressing.get("reason") == "ProgressDeadlineExceeded",
        available=_flag(conditions["Available"]) if "Available" in conditions else None,
    )


def _flag(cond: Mapping[str, Any]) -> bool | None:
    return {"True": True, "False": False}.get(str(cond.get("status")))


def compute(observed: Observed) -> dict[str, Any]:
    """The full status for `observed` (only fields the operator owns)."""
    dep = observed.deployment
    rollout = _rollout(dep) if dep is not None else None
    verdicts = [
        ("Ready", *_ready(observed, rollout)),
        ("Progressing", *_progressing(observed, rollout)),
        ("Degraded", *_degraded(observed, rollout)),
        ("Monitoring", *_monitoring(observed.monitoring)),
        ("AutoscalingReady", *observed.autoscaling),
    ]
    previous = {c["type"]: c for c in observed.previous.get("conditions", [])}
    conditions = [
        _condition(previous.get(kind), kind, flag, reason, message, observed)
        for kind, flag, reason, message in verdicts
    ]
    dep_status = dep.get("status", {}) if dep is not None else {}
    return {
        "observedGeneration": observed.generation,
        "phase": _phase(observed, conditions),
        "replicas": int(dep_status.get("replicas", 0)),
        "readyReplicas": int(dep_status.get("readyReplicas", 0)),
        "selector": ",".join(
            f"{k}={v}" for k, v in sorted(naming.selector_labels(observed.name).items())
        ),
        "endpoint": naming.endpoint(observed.name, observed.namespace),
        "conditions": conditions,
    } | ({"assets": dict(observed.assets)} if observed.assets is not None else {})


def asset_counts(assets: Sequence[Mapping[str, Any]], platform_name: str) -> dict[str, int]:
    """VideoAssets that reference `platform_name`, counted by phase: ready, processing, failed."""
    counts = {"ready": 0, "processing": 0, "failed": 0}
    for asset in assets:
        if asset.get("spec", {}).get("platformRef", {}).get("name") != platform_name:
            continue
        phase = asset.get("status", {}).get("phase")
        key = {"Ready": "ready", "Failed": "failed"}.get(str(phase), "processing")
        counts[key] += 1
    return counts


def changed(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether writing `desired` would change the live status (only our keys count)."""
    return any(live.get(key) != value for key, value in desired.items())


def condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The condition of type `kind` in `status`, if any."""
    return next((c for c in status.get("conditions", []) if c.get("type") == kind), None)


def _ready(observed: Observed, rollout: _Rollout | None) -> Verdict:
    """Serving: the Deployment exists, wants pods, one is ready and it is available.

    With maxUnavailable 0 the Deployment reports Available=False while it scales up (fewer
    available pods than spec.replicas); that is not an outage while the rollout still
    progresses, so only Available=False together with ProgressDeadlineExceeded counts. Without
    conditions yet (a brand-new Deployment), every desired replica must be ready.
    """
    failure = observed.failure
    if not observed.deployment_observed:
        message = failure.message if failure else "the streaming Deployment could not be read"
        return None, failure.reason if failure else "Unknown", message
    if rollout is None:
        if failure is not None:
            return False, failure.reason, failure.message
        return False, "DeploymentMissing", "the streaming Deployment does not exist yet"
    if rollout.desired == 0:
        return False, "ScaledToZero", "spec.replicas is 0: no streaming pod runs"
    if rollout.ready < 1:
        return False, "ReplicasNotReady", rollout.summary()
    if rollout.available is None:
        if rollout.ready >= rollout.desired:
            return True, "Serving", rollout.summary()
        return False, "ReplicasNotReady", rollout.summary()
    if rollout.available or not rollout.deadline_exceeded:
        return True, "Serving", rollout.summary()
    return False, "DeploymentUnavailable", rollout.summary()


def _progressing(observed: Observed, rollout: _Rollout | None) -> Verdict:
    if observed.suspended:
        return False, "Suspended", "reconciliation is paused by spec.suspend"
    if observed.failure is not None:
        return False, observed.failure.reason, observed.failure.message
    if rollout is None:
        return True, "Creating", "creating the streaming Deployment"
    if rollout.deadline_exceeded:
        return False, "ProgressDeadlineExceeded", "the Deployment rollout stopped progressing"
    if not rollout.complete:
        return True, "RollingOut", rollout.summary()
    return False, "RolloutComplete", rollout.summary()


def _degraded(observed: Observed, rollout: _Rollout | None) -> Verdict:
    if observed.failure is not None:
        return True, observed.failure.reason, observed.failure.message
    if rollout is not None and rollout.deadline_exceeded:
        return True, "ProgressDeadlineExceeded", rollout.summary()
    return False, "AsExpected", "no known problem"


def _monitoring(monitoring: Monitoring) -> Verdict:
    messages = {
        Monitoring.DISABLED: "spec.monitoring.enabled is false",
        Monitoring.ENABLED: "ServiceMonitor and PrometheusRule are applied",
        Monitoring.CRDS_MISSING: "monitoring.coreos.com/v1 is not served: install the "
        "Prometheus Operator CRDs to get a ServiceMonitor and PrometheusRule",
        Monitoring.UNKNOWN: "discovery of monitoring.coreos.com/v1 failed",
    }
    flag = None if monitoring is Monitoring.UNKNOWN else monitoring is Monitoring.ENABLED
    return flag, monitoring.value, messages[monitoring]


def _condition(
    previous: Mapping[str, Any] | None,
    kind: str,
    flag: bool | None,
    reason: str,
    message: str,
    observed: Observed,
) -> Condition:
    status = "Unknown" if flag is None else "True" if flag else "False"
    flipped = previous is None or previous.get("status") != status
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": observed.now if flipped else previous["lastTransitionTime"],  # type: ignore[index]
        "observedGeneration": observed.generation,
    }


def _phase(observed: Observed, conditions: Sequence[Condition]) -> str:
    state = {c["type"]: c for c in conditions}
    if observed.suspended:
        return "Suspended"
    if observed.failure is not None and observed.failure.reason not in OBSERVATION_FAILURES:
        return "Failed"
    if state["Ready"]["status"] == "True":
        return "Ready"
    if state["Degraded"]["status"] == "True":
        return "Degraded"
    if observed.deployment is None:
        return "Pending"
    return "Progressing"
