"""Reconciler against an in-memory API (tests/unit/operator/fakekube.py): what one pass writes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.operator import crdschema
from tests.unit.operator.fakekube import FakeKube
from vod_operator import naming, status
from vod_operator.kube import KubeError, owns_field
from vod_operator.reconcile import HANDOVER_MANAGER, Reconciler, Result

pytestmark = pytest.mark.unit

NS = "media"
T0 = "2026-01-01T00:00:00Z"
EMPTY_DIR: dict[str, Any] = {"storage": {"emptyDir": {}}}


def setup(spec: dict[str, Any] | None = None, *, monitoring: bool = False) -> FakeKube:
    kube = FakeKube(monitoring=monitoring)
    kube.add_platform(crdschema.platform(spec or EMPTY_DIR, name="demo", namespace=NS))
    return kube


_reconcilers: dict[int, Reconciler] = {}


def run(kube: FakeKube, *, restarted: bool = False) -> Result:
    """One pass, by the same Reconciler each time (a new one: the operator restarted)."""
    if restarted or id(kube) not in _reconcilers:
        _reconcilers[id(kube)] = Reconciler(kube, now=lambda: T0)
    return _reconcilers[id(kube)].reconcile(NS, "demo")


def change_spec(kube: FakeKube, spec: dict[str, Any]) -> None:
    """What `kubectl apply` of a new spec does: new defaults, generation + 1, status kept."""
    old = kube.platform(NS, "demo")
    new = crdschema.platform(spec, name="demo", namespace=NS)
    new["metadata"]["generation"] = old["metadata"]["generation"] + 1
    new["status"] = old.get("status", {})
    kube.add_platform(new)


def condition(kube: FakeKube, kind: str) -> tuple[str, str]:
    found = status.condition(kube.platform(NS, "demo")["status"], kind)
    assert found is not None
    return found["status"], found["reason"]


def child_writes(kube: FakeKube) -> list[tuple[str, str]]:
    return [w for w in kube.writes if not w[1].startswith("VideoPlatform/")]


def mark_deployment_ready(kube: FakeKube, replicas: int = 2) -> None:
    dep = kube.child("Deployment", NS, "demo-stream")
    dep["metadata"]["generation"] = 1
    dep["status"] = {
        "observedGeneration": 1,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [{"type": "Available", "status": "True"}],
    }


# -- writes only where something differs ---------------------------------------------------


def test_first_pass_creates_the_children_and_the_next_writes_nothing() -> None:
    kube = setup()
    result = run(kube)
    assert result.error is None
    assert result.created == [
        "ConfigMap/demo-stream-config",
        "Deployment/demo-stream",
        "Service/demo-stream",
        "PodDisruptionBudget/demo-stream",
    ]
    mark_deployment_ready(kube)
    run(kube)
    assert condition(kube, "Ready") == ("True", "Serving")
    kube.writes.clear()
    kube.events.clear()
    for _ in range(3):
        again = run(kube)
        assert (again.created, again.updated, again.pruned, again.error) == ([], [], [], None)
    assert kube.writes == []
    assert kube.events == []


FULL = {
    "storage": {"emptyDir": {}},
    "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "2", "memory": "512Mi"}},
    "security": {
        "cors": {"allowedOrigins": ["https://app.example.com"]},
        "jwt": {"secretName": "jwt-key"},
    },
    "ingress": {
        "enabled": True,
        "host": "videos.example.com",
        "className": "nginx",
        "tlsSecretName": "videos-tls",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "0"},
    },
}
TRIMMED = {
    "storage": {"emptyDir": {}},
    "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "512Mi"}},
    "ingress": {"enabled": True, "host": "videos.example.com"},
}


def test_fields_removed_from_the_spec_leave_the_children() -> None:
    kube = setup(FULL)
    run(kube)
    config = kube.child("ConfigMap", NS, "demo-stream-config")["data"]
    assert {"VOD_CORS_ALLOWED_ORIGINS", "VOD_JWT_SECRET_FILE"} <= set(config)

    change_spec(kube, TRIMMED)
    kube.writes.clear()
    result = run(kube)
    assert result.error is None
    # The ConfigMap only lost keys: applied although what is left is still a subset of live.
    assert "ConfigMap/demo-stream-config" in result.updated
    config = kube.child("ConfigMap", NS, "demo-stream-config")["data"]
    assert "VOD_CORS_ALLOWED_ORIGINS" not in config
    assert "VOD_JWT_SECRET_FILE" not in config
    pod = kube.child("Deployment", NS, "demo-stream")["spec"]["template"]["spec"]
    assert "jwt" not in {v["name"] for v in pod["volumes"]}
    assert "jwt" not in {m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert pod["containers"][0]["resources"]["limits"] == {"memory": "512Mi"}
    ingress = kube.child("Ingress", NS, "demo-stream")
    assert set(ingress["metadata"]["annotations"]) == {naming.APPLIED_HASH_ANNOTATION}
    assert "ingressClassName" not in ingress["spec"]
    assert "tls" not in ingress["spec"]
    # Unchanged children are not written.
    assert ("apply", "Service/demo-stream") not in kube.writes


def test_needs_apply_compares_the_applied_hash_then_the_fields() -> None:
    kube = setup()
    run(kube)
    live = kube.child("ConfigMap", NS, "demo-stream-config")
    desired = {k: v for k, v in live.items() if k != "status"}
    needs_apply = Reconciler._needs_apply
    assert not needs_apply(desired, live)
    stale = {**live, "metadata": {**live["metadata"], "annotations": {}}}  # older operator
    assert needs_apply(desired, stale)
    other_hash = {**desired, "metadata": {**desired["metadata"], "annotations": {}}}
    other_hash["metadata"]["annotations"][naming.APPLIED_HASH_ANNOTATION] = "0" * 64
    assert needs_apply(other_hash, live)
    edited = {**live, "data": {**live["data"], "VOD_LOG_LEVEL": "debug"}}  # same hash
    assert needs_apply(desired, edited)


def test_a_hand_edit_is_reverted() -> None:
    kube = setup()
    run(kube)

    def container() -> dict[str, Any]:
        pod = kube.child("Deployment", NS, "demo-stream")["spec"]["template"]["spec"]
        first: dict[str, Any] = pod["containers"][0]
        return first

    container()["image"] = "evil:1"
    result = run(kube)
    assert result.updated == ["Deployment/demo-stream"]
    assert container()["image"] == naming.DEFAULT_IMAGE


# -- the generated signing key ---------------------------------------------------------------

SIGNED = {"storage": {"emptyDir": {}}, "security": {"signedUrls": {"enabled": True}}}


def test_signing_key_is_generated_once_and_announced_after_the_secret_exists() -> None:
    kube = setup(SIGNED)
    run(kube)
    keys = kube.child("Secret", NS, "demo-stream-signing")["data"]
    assert len(keys) == 1
    assert kube.reasons().count("SigningKeyGenerated") == 1
    assert next(iter(keys)) in kube.events[kube.reasons().index("SigningKeyGenerated")][2]
    change_spec(kube, {**SIGNED, "replicas": 3})
    run(kube)
    run(kube)
    assert kube.child("Secret", NS, "demo-stream-signing")["data"] == keys
    assert kube.reasons().count("SigningKeyGenerated") == 1
    config = kube.child("ConfigMap", NS, "demo-stream-config")["data"]
    assert config["VOD_SIGNING_ACTIVE_KEY_ID"] == next(iter(keys))


def test_signing_key_of_an_existing_secret_is_kept() -> None:
    kube = setup(SIGNED)
    run(kube)
    keys = kube.child("Secret", NS, "demo-stream-signing")["data"]
    kube.events.clear()
    # A new operator process: nothing in memory, the Secret is the only record of the key.
    run(kube, restarted=True)
    assert kube.child("Secret", NS, "demo-stream-signing")["data"] == keys
    assert "SigningKeyGenerated" not in kube.reasons()


def test_no_signing_key_event_while_the_secret_is_refused() -> None:
    kube = setup(SIGNED)
    kube.fail[("apply", "Secret")] = KubeError(500, "InternalError", "etcd timeout")
    for _ in range(2):
        result = run(kube)
        assert result.error is not None
        assert result.retry
    assert "SigningKeyGenerated" not in kube.reasons()
    assert not kube.has("Secret", NS, "demo-stream-signing")
    del kube.fail[("apply", "Secret")]
    run(kube)
    assert kube.reasons().count("SigningKeyGenerated") == 1


# -- replicas and the HPA ----------------------------------------------------------------------


def test_replicas_are_handed_over_when_autoscaling_turns_on_and_taken_back() -> None:
    kube = setup({**EMPTY_DIR, "replicas": 3})
    run(kube)
    dep = kube.child("Deployment", NS, "demo-stream")
    assert owns_field(dep, naming.FIELD_MANAGER, "spec", "replicas")

    change_spec(kube, {**EMPTY_DIR, "replicas": 3, "autoscaling": {"enabled": True}})
    result = run(kube)
    assert "HorizontalPodAutoscaler/demo-stream" in result.created
    dep = kube.child("Deployment", NS, "demo-stream")
    assert dep["spec"]["replicas"] == 3  # kept by the handover manager, never dropped to 1
    assert not owns_field(dep, naming.FIELD_MANAGER, "spec", "replicas")
    assert owns_field(dep, HANDOVER_MANAGER, "spec", "replicas")
    kube.writes.clear()
    run(kube)
    assert child_writes(kube) == []  # released once, not on every pass

    change_spec(kube, {**EMPTY_DIR, "replicas": 1})
    result = run(kube)
    assert "HorizontalPodAutoscaler/demo-stream" in result.pruned
    dep = kube.child("Deployment", NS, "demo-stream")
    assert dep["spec"]["replicas"] == 1
    assert owns_field(dep, naming.FIELD_MANAGER, "spec", "replicas")


def test_an_autoscaled_platform_starts_at_min_replicas_and_leaves_the_count_to_the_hpa() -> None:
    spec = {**EMPTY_DIR, "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 6}}
    kube = setup(spec)
    result = run(kube)
    assert result.error is None
    assert "Deployment/demo-stream" in result.created
    assert "Deployment/demo-stream" not in result.updated
    dep = kube.child("Deployment", NS, "demo-stream")
    assert dep["spec"]["replicas"] == 3  # created at the floor, never at 1
    assert not owns_field(dep, naming.FIELD_MANAGER, "spec", "replicas")
    assert owns_field(dep, HANDOVER_MANAGER, "spec", "replicas")
    # The HPA scales it (an Update by another manager): the operator leaves that alone.
    kube.configs[("deployments", NS, "demo-stream")][HANDOVER_MANAGER]["spec"]["replicas"] = 5
    kube.objects[("deployments", NS, "demo-stream")]["spec"]["replicas"] = 5
    kube.writes.clear()
    run(kube)
    assert child_writes(kube) == []
    assert kube.child("Deployment", NS, "demo-stream")["spec"]["replicas"] == 5


# -- pruning ---------------------------------------------------------------------------------


def test_children_no_longer_wanted_are_pruned_and_foreign_ones_left_alone() -> None:
    kube = setup({**EMPTY_DIR, "ingress": {"enabled": True}})
    run(kube)
    assert kube.has("Ingress", NS, "demo-stream")
    # Same labels, but owned by another VideoPlatform (another uid): not ours to delete.
    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "other-config",
            "namespace": NS,
            "labels": naming.child_labels("demo", "config"),
            "ownerReferences": [{"uid": "someone-else", "controller": True}],
        },
    }
    kube.apply(foreign, manager="someone")
    change_spec(kube, {**EMPTY_DIR, "ingress": {"enabled": False}})
    result = run(kube)
    assert result.pruned == ["Ingress/demo-stream"]
    assert not kube.has("Ingress", NS, "demo-stream")
    assert kube.has("ConfigMap", NS, "other-config")
    assert "Pruned" in kube.reasons()


# -- failures ----------------------------------------------------------------------------------


def test_discovery_failure_is_degraded_and_keeps_the_monitoring_verdict() -> None:
    kube = setup(monitoring=True)
    run(kube)
    mark_deployment_ready(kube)
    run(kube)
    assert condition(kube, "Monitoring") == ("True", "Enabled")
    assert kube.has("ServiceMonitor", NS, "demo-stream")
    kube.discovery_error = KubeError(503, "ServiceUnavailable", "the server is busy")
    result = run(kube)
    assert result.error is not None
    assert result.retry
    assert condition(kube, "Degraded") == ("True", "DiscoveryFailed")
    assert condition(kube, "Monitoring") == ("True", "Enabled")
    assert condition(kube, "Ready") == ("True", "Serving")
    assert ("Warning", "DiscoveryFailed") in [(t, r) for t, r, _ in kube.events]
    assert kube.has("ServiceMonitor", NS, "demo-stream")  # not pruned on a guess
    kube.discovery_error = None
    assert run(kube).error is None
    assert condition(kube, "Degraded") == ("False", "AsExpected")


def test_discovery_failure_without_an_earlier_verdict_is_unknown() -> None:
    kube = setup()
    kube.discovery_error = KubeError(500, "InternalError", "boom")
    run(kube)
    assert condition(kube, "Monitoring") == ("Unknown", "DiscoveryFailed")
    assert kube.has("Deployment", NS, "demo-stream")  # the rest is still reconciled


def test_a_failed_list_is_degraded_not_a_stale_ready() -> None:
    kube = setup()
    run(kube)
    mark_deployment_ready(kube)
    run(kube)
    assert condition(kube, "Ready") == ("True", "Serving")
    kube.fail[("list", "Deployment")] = KubeError(403, "Forbidden", "deployments is forbidden")
    kube.writes.clear()
    result = run(kube)
    assert result.error is not None
    assert result.retry
    assert condition(kube, "Ready") == ("Unknown", "ListFailed")
    assert condition(kube, "Degraded") == ("True", "ListFailed")
    assert kube.platform(NS, "demo")["status"]["phase"] == "Degraded"
    assert ("Warning", "ListFailed") in [(t, r) for t, r, _ in kube.events]
    assert child_writes(kube) == []  # nothing applied or pruned blind


@pytest.mark.parametrize(
    ("errors", "retry"),
    [
        ({"Deployment": 422}, False),
        ({"Deployment": 422, "Service": 422}, False),
        ({"Deployment": 422, "Service": 403}, True),
        ({"Deployment": 403}, True),
        ({"Deployment": 500}, True),
    ],
)
def test_only_invalid_refusals_are_not_worth_a_retry(errors: dict[str, int], retry: bool) -> None:
    kube = setup()
    for kind, code in errors.items():
        kube.fail[("apply", kind)] = KubeError(code, "Refused", f"{kind} refused")
    result = run(kube)
    assert result.reason == "ApplyFailed"
    assert result.retry is retry
    assert condition(kube, "Degraded") == ("True", "ApplyFailed")
    assert kube.platform(NS, "demo")["status"]["phase"] == "Failed"


def test_a_request_refused_as_invalid_is_not_sent_again() -> None:
    bad = {**EMPTY_DIR, "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}
    kube = setup(bad)
    refusal = KubeError(422, "Invalid", "requests.cpu must be less than or equal to cpu limit")
    kube.fail[("apply", "Deployment")] = refusal
    for _ in range(3):  # e.g. the resync, or events of the other children
        result = run(kube)
        assert result.retry is False
        assert result.error is not None
        assert "cpu limit" in result.error
    assert kube.attempts.count("Deployment/demo-stream") == 1
    assert condition(kube, "Degraded") == ("True", "ApplyFailed")
    assert kube.reasons().count("ApplyFailed") == 1  # one Warning Event, not one per pass

    run(kube, restarted=True)  # a new process knows nothing: one more attempt
    assert kube.attempts.count("Deployment/demo-stream") == 2

    # The user fixes the spec: a new request, sent and accepted.
    del kube.fail[("apply", "Deployment")]
    change_spec(kube, {**EMPTY_DIR, "resources": {"requests": {"cpu": "1"}}})
    assert run(kube).error is None
    assert kube.attempts.count("Deployment/demo-stream") == 3
    assert kube.has("Deployment", NS, "demo-stream")


def test_a_refused_update_is_sent_again_once_the_live_object_changed() -> None:
    kube = setup()
    run(kube)
    change_spec(kube, {**EMPTY_DIR, "replicas": 3})
    kube.fail[("apply", "Deployment")] = KubeError(422, "Invalid", "field is immutable")
    run(kube)
    run(kube)
    assert kube.attempts.count("Deployment/demo-stream") == 2  # created, then refused once
    kube.child("Deployment", NS, "demo-stream")["metadata"]["resourceVersion"] = "999"
    run(kube)
    assert kube.attempts.count("Deployment/demo-stream") == 3


def test_a_terminating_namespace_ends_the_pass_quietly() -> None:
    """Creating in a namespace being deleted is refused for every child: one try, no failure."""
    kube = setup()
    terminating = KubeError(
        403, "Forbidden", 'unable to create new content in namespace media because it is being '
        "terminated",
    )  # fmt: skip
    for kind in ("ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"):
        kube.fail[("apply", kind)] = terminating
    result = run(kube)
    assert result.error is None
    assert len(kube.attempts) == 1
    assert child_writes(kube) == []
