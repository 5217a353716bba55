"""status.compute(): conditions, phase and counters from observed children."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from vod_operator import status
from vod_operator.status import Failure, Monitoring, Observed

pytestmark = pytest.mark.unit

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def deployment(
    desired: int = 2,
    ready: int = 2,
    updated: int = 2,
    replicas: int | None = None,
    lag: bool = False,
    available: str | None = None,
    deadline_exceeded: bool = False,
) -> dict[str, Any]:
    """A Deployment as the API server returns it; `available` sets its Available condition."""
    conditions = []
    if available is not None:
        conditions.append({"type": "Available", "status": available})
    if deadline_exceeded:
        conditions.append(
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        )
    return {
        "metadata": {"generation": 4},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": 3 if lag else 4,
            "replicas": desired if replicas is None else replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            **({"conditions": conditions} if conditions else {}),
        },
    }


def observe(dep: dict[str, Any] | None, **overrides: Any) -> Observed:
    values: dict[str, Any] = {
        "name": "demo",
        "namespace": "media",
        "generation": 7,
        "suspended": False,
        "deployment": dep,
        "monitoring": Monitoring.CRDS_MISSING,
        "previous": {},
        "now": T0,
    }
    values.update(overrides)
    return Observed(**values)


def conditions(st: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}


def test_ready_platform() -> None:
    st = status.compute(observe(deployment()))
    assert st["phase"] == "Ready"
    assert conditions(st) == {
        "Ready": ("True", "Serving"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
        "Monitoring": ("False", "MonitoringCRDsNotInstalled"),
        "AutoscalingReady": ("False", "Disabled"),
    }
    assert (st["replicas"], st["readyReplicas"], st["observedGeneration"]) == (2, 2, 7)
    assert st["endpoint"] == "http://demo-stream.media.svc:8080"
    assert st["selector"] == (
        "app.kubernetes.io/component=streaming,app.kubernetes.io/instance=demo,"
        "app.kubernetes.io/name=vod-stream"
    )
    assert all(c["observedGeneration"] == 7 for c in st["conditions"])


def test_no_deployment_yet_is_pending_and_progressing() -> None:
    st = status.compute(observe(None))
    assert st["phase"] == "Pending"
    assert conditions(st)["Ready"] == ("False", "DeploymentMissing")
    assert conditions(st)["Progressing"] == ("True", "Creating")
    assert (st["replicas"], st["readyReplicas"]) == (0, 0)


@pytest.mark.parametrize(
    "dep",
    [deployment(ready=1), deployment(updated=1, replicas=3), deployment(lag=True)],
    ids=["pods-not-ready", "old-pods-left", "controller-lagging"],
)
def test_rollouts_in_flight_are_progressing(dep: dict[str, Any]) -> None:
    assert conditions(status.compute(observe(dep)))["Progressing"] == ("True", "RollingOut")


def test_apply_error_is_degraded_and_failed() -> None:
    failure = Failure("ApplyFailed", "Deployment/x: bad cpu")
    st = status.compute(observe(deployment(), failure=failure))
    assert st["phase"] == "Failed"
    degraded = status.condition(st, "Degraded")
    assert degraded is not None
    assert (degraded["status"], degraded["reason"], degraded["message"]) == (
        "True",
        "ApplyFailed",
        "Deployment/x: bad cpu",
    )


def test_suspended_says_so() -> None:
    st = status.compute(observe(deployment(), suspended=True))
    assert st["phase"] == "Suspended"
    assert conditions(st)["Progressing"] == ("False", "Suspended")
    assert conditions(st)["Ready"] == ("True", "Serving")


def test_scaled_to_zero_is_not_ready() -> None:
    st = status.compute(observe(deployment(desired=0, ready=0, updated=0)))
    assert conditions(st)["Ready"] == ("False", "ScaledToZero")


def test_deadline_exceeded_is_degraded() -> None:
    dep = deployment(ready=1, available="False", deadline_exceeded=True)
    st = status.compute(observe(dep))
    assert conditions(st)["Degraded"] == ("True", "ProgressDeadlineExceeded")
    assert conditions(st)["Ready"] == ("False", "DeploymentUnavailable")
    assert st["phase"] == "Degraded"


# -- Ready means serving: it does not flap while pods are added or replaced ---------------


def test_scale_up_with_the_deployment_available_stays_ready() -> None:
    before = status.compute(observe(deployment(desired=2, ready=2, available="True")))
    # kubectl scale 2 -> 3: the third pod is not ready yet.
    dep = deployment(desired=3, ready=2, updated=3, available="True")
    after = status.compute(observe(dep, previous=before, now=T1))
    assert conditions(after)["Ready"] == ("True", "Serving")
    assert conditions(after)["Progressing"] == ("True", "RollingOut")
    ready = status.condition(after, "Ready")
    assert ready is not None
    assert ready["lastTransitionTime"] == T0
    assert after["phase"] == "Ready"


def test_scale_up_below_minimum_availability_stays_ready_while_progressing() -> None:
    # maxUnavailable is 0, so the Deployment itself says Available=False while it scales up.
    dep = deployment(desired=3, ready=2, updated=3, available="False")
    st = status.compute(observe(dep))
    assert conditions(st)["Ready"] == ("True", "Serving")
    assert conditions(st)["Progressing"] == ("True", "RollingOut")


def test_new_image_rolling_out_stays_ready() -> None:
    dep = deployment(desired=2, ready=2, updated=1, replicas=3, lag=True, available="True")
    st = status.compute(observe(dep))
    assert conditions(st)["Ready"] == ("True", "Serving")
    assert conditions(st)["Progressing"] == ("True", "RollingOut")


@pytest.mark.parametrize("available", ["True", "False", None])
def test_no_ready_pod_is_not_ready(available: str | None) -> None:
    st = status.compute(observe(deployment(desired=2, ready=0, available=available)))
    assert conditions(st)["Ready"] == ("False", "ReplicasNotReady")


def test_without_deployment_conditions_every_replica_must_be_ready() -> None:
    assert conditions(status.compute(observe(deployment(ready=1))))["Ready"] == (
        "False",
        "ReplicasNotReady",
    )
    assert conditions(status.compute(observe(deployment(ready=2))))["Ready"][0] == "True"


# -- failures to observe ------------------------------------------------------------------


def test_list_failure_makes_ready_unknown_and_degraded() -> None:
    failure = Failure("ListFailed", "deployments is forbidden")
    previous = status.compute(observe(deployment()))
    st = status.compute(
        observe(None, failure=failure, deployment_observed=False, previous=previous, now=T1)
    )
    assert conditions(st)["Ready"] == ("Unknown", "ListFailed")
    assert conditions(st)["Degraded"] == ("True", "ListFailed")
    assert st["phase"] == "Degraded"  # not Failed: nothing was refused


def test_discovery_failure_keeps_serving_and_says_unknown() -> None:
    failure = Failure("DiscoveryFailed", "503 ServiceUnavailable")
    st = status.compute(observe(deployment(), failure=failure, monitoring=Monitoring.UNKNOWN))
    assert conditions(st)["Ready"] == ("True", "Serving")
    assert conditions(st)["Degraded"] == ("True", "DiscoveryFailed")
    assert conditions(st)["Monitoring"] == ("Unknown", "DiscoveryFailed")
    assert st["phase"] == "Ready"


def test_monitoring_condition() -> None:
    enabled = status.compute(observe(deployment(), monitoring=Monitoring.ENABLED))
    disabled = status.compute(observe(deployment(), monitoring=Monitoring.DISABLED))
    assert conditions(enabled)["Monitoring"] == ("True", "Enabled")
    assert conditions(disabled)["Monitoring"] == ("False", "Disabled")


def test_autoscaling_condition_carries_the_plan_verdict() -> None:
    missing = (False, "MetricsAPIMissing", "spec.autoscaling.targetInFlightRequestsPerPod ...")
    st = status.compute(replace(observe(deployment()), autoscaling=missing))
    found = status.condition(st, "AutoscalingReady")
    assert found is not None
    assert (found["status"], found["reason"], found["message"]) == ("False", *missing[1:])
    assert st["phase"] == "Ready"  # scaling on CPU only still serves: no phase change


def test_transition_time_moves_only_when_a_condition_flips() -> None:
    first = status.compute(observe(deployment(ready=1)))
    # Still not ready, other counts: same status, so the time stays T0 although now is T1.
    second = status.compute(observe(deployment(ready=0), previous=first, now=T1))
    ready = status.condition(second, "Ready")
    assert ready is not None
    assert ready["lastTransitionTime"] == T0
    # Now it flips to True: the time moves.
    third = status.compute(observe(deployment(), previous=second, now=T1))
    flipped = status.condition(third, "Ready")
    assert flipped is not None
    assert flipped["lastTransitionTime"] == T1


def test_status_at_rest_is_unchanged() -> None:
    first = status.compute(observe(deployment()))
    again = status.compute(observe(deployment(), previous=first, now=T1))
    assert not status.changed({**first, "kopf": {"x": 1}}, again)
    bumped = status.compute(observe(deployment(), previous=first, now=T1, generation=8))
    assert status.changed(first, bumped)
