"""One reconcile pass for one VideoPlatform: desired = render(spec); apply; prune; status.

Synchronous (runs in a worker thread). Writes happen only where the live state differs from
the desired state, so a platform at rest costs reads only. What a pass saw (phase, replicas,
VideoAssets) also goes to the metrics' `PlatformView`, when one is given.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vod_operator import autoscaling, compare, metrics, monitoring, naming, render, status
from vod_operator.kube import (
    CHILD_KINDS,
    KEDA_KINDS,
    MONITORING_KINDS,
    VIDEOASSET,
    VIDEOPLATFORM,
    KubeApi,
    KubeError,
    owns_field,
)

log = logging.getLogger(__name__)

#: Field manager that keeps spec.replicas alive while ownership passes to an HPA.
HANDOVER_MANAGER = "vod-operator-hpa-handover"

ChildKey = tuple[str, str]  # (kind, name)

#: HTTP status of an object the API server refuses as invalid: the same spec is refused again.
INVALID = 422


@dataclass
class Result:
    """What one pass did; `error` set means the pass fell short (see `retry`)."""

    found: bool = True
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    error: str | None = None
    #: CamelCase reason of the first failure (the Degraded condition's reason).
    reason: str = "ApplyFailed"
    #: Whether to retry a failed pass with backoff. False when every error was a 422 Invalid:
    #: only a spec change (which triggers a pass anyway) can fix that.
    retry: bool = True
    #: resourceVersion of the VideoPlatform after our status write (to ignore its echo).
    status_version: str | None = None
    #: Run another pass after this many seconds (a packaging Job is running).
    requeue_after: float | None = None

    def fail(self, reason: str, message: str, *, retry: bool = True) -> None:
        """Record a failure; the first one names the reason, the messages add up."""
        if self.error is None:
            self.error, self.reason, self.retry = message, reason, retry
        else:
            self.error = f"{self.error}; {message}"
            self.retry = self.retry or retry

    @property
    def failure(self) -> status.Failure | None:
        return None if self.error is None else status.Failure(self.reason, self.error)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    """Brings the children of one VideoPlatform in line with its spec."""

    def __init__(
        self,
        kube: KubeApi,
        now: Callable[[], str] = utc_now,
        view: metrics.PlatformView | None = None,
        runbook_base_url: str = monitoring.DEFAULT_RUNBOOK_BASE_URL,
    ) -> None:
        self.kube = kube
        self.now = now
        self.view = view
        #: Where the alerts of the rendered PrometheusRules link their runbooks.
        self.runbook_base_url = runbook_base_url
        #: Per platform (namespace, name): children refused as invalid (422), keyed by child,
        #: with the request that was refused (applied hash, live resourceVersion) and why.
        #: The same request against the same object is refused again: it is not re-sent.
        self._invalid: dict[tuple[str, str], dict[ChildKey, tuple[Refusal, str]]] = {}

    def names(self, namespace: str) -> set[str]:
        """The VideoPlatforms of `namespace` now (`Controller.lister`)."""
        return {p["metadata"]["name"] for p in self.kube.list(VIDEOPLATFORM, namespace, "")}

    def reconcile(self, namespace: str, name: str) -> Result:
        platform = self.kube.get(VIDEOPLATFORM, namespace, name)
        if platform is None or platform["metadata"].get("deletionTimestamp"):
            self._invalid.pop((namespace, name), None)
            if self.view is not None:
                uid = None if platform is None else platform["metadata"].get("uid")
                self.view.forget_platform(namespace, name, uid)
            return Result(found=False)
        spec = platform["spec"]
        previous = platform.get("status", {})
        names = naming.ChildNames.of(name)
        result = Result()
        monitoring, monitoring_api = self._monitoring(platform, result)
        apis = self._metrics_apis(result)
        try:
            live: dict[ChildKey, dict[str, Any]] | None = self._live_children(
                platform, monitoring_api, keda_api=apis is not None and apis.keda
            )
        except KubeError as exc:
            live = None
            result.fail("ListFailed", f"listing the children failed: {exc}")
        if live is not None and apis is not None and not spec.get("suspend", False):
            self._change(platform, live, monitoring_api, apis, result)
        deployment = (live or {}).get(("Deployment", names.stream))
        assets = self._assets(namespace)
        observed = status.Observed(
            name=name,
            namespace=namespace,
            generation=int(platform["metadata"].get("generation", 1)),
            suspended=bool(spec.get("suspend", False)),
            deployment=deployment,
            monitoring=monitoring,
            previous=previous,
            now=self.now(),
            failure=result.failure,
            deployment_observed=live is not None,
            assets=previous.get("assets") if assets is None else status.asset_counts(assets, name),
            autoscaling=_autoscaling_verdict(platform, apis, live),
        )
        desired = status.compute(observed)
        self._write_status(platform, desired, result)
        if self.view is not None:
            seen = metrics.platform_state(
                platform,
                desired["phase"],
                deployment,
                deployment_observed=live is not None,
                assets=assets,
            )
            self.view.observe_platform(namespace, name, seen)
        return result

    def _change(
        self,
        platform: Mapping[str, Any],
        live: dict[ChildKey, dict[str, Any]],
        monitoring_api: bool,
        apis: autoscaling.MetricsApis,
        result: Result,
    ) -> None:
        """Render, apply what differs, prune what is no longer wanted.

        A scaler that is no longer wanted (the HPA when a ScaledObject takes over, or the
        reverse) goes before anything is applied: KEDA refuses a ScaledObject for a Deployment
        another HPA scales, and two scalers must never fight over the replica count.
        """
        try:
            keys, generated = self._signing_keys(platform, live)
            inputs = render.RenderInputs(
                signing_keys=keys,
                monitoring_available=monitoring_api,
                runbook_base_url=self.runbook_base_url,
                metrics_apis=apis,
            )
            desired = render.render(platform, inputs)
        except render.RenderError as exc:
            result.fail("RenderFailed", str(exc))
            return
        except KubeError as exc:
            result.fail("ReadFailed", f"reading the signing Secret failed: {exc}")
            return
        self._prune(platform, desired, live, result, kinds=autoscaling.SCALER_KINDS)
        self._apply_all(platform, desired, live, result)
        self._prune(platform, desired, live, result)
        secret = f"Secret/{naming.ChildNames.of(platform['metadata']['name']).signing}"
        if generated and secret in result.created + result.updated:
            self.kube.event(
                platform, "Normal", "SigningKeyGenerated", f"generated URL-signing key {generated}"
            )

    # -- observation ----------------------------------------------------------------------
    def _assets(self, namespace: str) -> list[dict[str, Any]] | None:
        """The VideoAssets of the namespace (None when they cannot be listed: the status then
        keeps its last counts)."""
        try:
            return self.kube.list(VIDEOASSET, namespace, "")
        except KubeError as exc:
            log.warning("listing VideoAssets in %s failed: %s", namespace, exc)
            return None

    def _monitoring(
        self, platform: Mapping[str, Any], result: Result
    ) -> tuple[status.Monitoring, bool]:
        """What becomes of spec.monitoring, and whether monitoring.coreos.com/v1 is served.

        When discovery fails the answer is unknown: the previous Monitoring verdict is kept
        and the API counts as served only if that verdict says so (then its objects are
        listed, so they can still be kept or pruned; otherwise they are left alone).
        """
        wants = bool(platform["spec"]["monitoring"]["enabled"])
        try:
            available = self.kube.monitoring_available()
        except KubeError as exc:
            result.fail("DiscoveryFailed", f"discovery of monitoring.coreos.com/v1 failed: {exc}")
            before = status.condition(platform.get("status", {}), "Monitoring") or {}
            known = {m.value: m for m in status.Monitoring}
            kept = known.get(str(before.get("reason")), status.Monitoring.UNKNOWN)
            if kept is status.Monitoring.DISABLED:
                kept = status.Monitoring.UNKNOWN
            served = kept is status.Monitoring.ENABLED
            return (kept if wants else status.Monitoring.DISABLED), served
        if not wants:
            return status.Monitoring.DISABLED, available
        state = status.Monitoring.ENABLED if available else status.Monitoring.CRDS_MISSING
        return state, available

    def _metrics_apis(self, result: Result) -> autoscaling.MetricsApis | None:
        """What autoscaling can use; None when discovery failed (the pass then changes
        nothing: a ScaledObject must not be pruned because KEDA's API was briefly unknown)."""
        try:
            return self.kube.metrics_apis()
        except KubeError as exc:
            result.fail("DiscoveryFailed", f"discovery of KEDA and the metrics APIs failed: {exc}")
            return None

    def _live_children(
        self, platform: Mapping[str, Any], monitoring_api: bool, *, keda_api: bool = False
    ) -> dict[ChildKey, dict[str, Any]]:
        """Children carrying our labels and owned by this very VideoPlatform (same uid).

        KEDA's own HPA (keda-hpa-<name>) copies the ScaledObject's labels but is owned by the
        ScaledObject, not by the platform: it is never listed here, so never pruned or fought.
        """
        meta = platform["metadata"]
        selector = naming.instance_selector(meta["name"])
        found: dict[ChildKey, dict[str, Any]] = {}
        for kind_name, kind in CHILD_KINDS.items():
            if kind_name in MONITORING_KINDS and not monitoring_api:
                continue
            if kind_name in KEDA_KINDS and not keda_api:
                continue
            for obj in self.kube.list(kind, meta["namespace"], selector):
                if _owned_by(obj, meta["uid"]):
                    found[(kind_name, obj["metadata"]["name"])] = obj
        return found

    def _signing_keys(
        self, platform: Mapping[str, Any], live: Mapping[ChildKey, Mapping[str, Any]]
    ) -> tuple[dict[str, str], str | None]:
        """The generated signing key(s), kept from the live Secret, and the id of a new key.

        A key is generated only while the Secret holds none; the caller announces it once the
        Secret carrying it was written.
        """
        signed = platform["spec"]["security"]["signedUrls"]
        if not signed["enabled"] or signed.get("secretName"):
            return {}, None
        meta = platform["metadata"]
        secret_name = naming.ChildNames.of(meta["name"]).signing
        secret = live.get(("Secret", secret_name)) or self.kube.get(
            CHILD_KINDS["Secret"], meta["namespace"], secret_name
        )
        keys = dict((secret or {}).get("data") or {})
        if keys:
            return keys, None
        key_id = f"k-{secrets.token_hex(4)}"
        return {key_id: base64.b64encode(secrets.token_bytes(32)).decode()}, key_id

    # -- changes --------------------------------------------------------------------------
    def _apply_all(
        self,
        platform: Mapping[str, Any],
        desired: list[dict[str, Any]],
        live: dict[ChildKey, dict[str, Any]],
        result: Result,
    ) -> None:
        errors: list[str] = []
        statuses: set[int] = set()
        meta = platform["metadata"]
        invalid = self._invalid.setdefault((meta["namespace"], meta["name"]), {})
        before = set(live)
        for manifest in desired:
            key = (manifest["kind"], manifest["metadata"]["name"])
            current = live.get(key)
            label = f"{key[0]}/{key[1]}"
            if current is not None and not self._needs_apply(manifest, current):
                invalid.pop(key, None)
                continue
            attempt = _refusal(manifest, current)
            if key in invalid and invalid[key][0] == attempt:
                errors.append(f"{label}: {invalid[key][1]}")  # refused before: not re-sent
                statuses.add(INVALID)
                continue
            try:
                if current is None and manifest["kind"] == "Deployment":
                    current = self._create_at_floor(platform, manifest)
                if current is not None and manifest["kind"] == "Deployment":
                    self._hand_over_replicas(manifest, current)
                live[key] = self.kube.apply(manifest)
            except KubeError as exc:
                namespace = meta["namespace"]
                if exc.namespace_terminating:  # every other apply there is refused alike
                    log.info("namespace %s is being deleted: not recreating %s", namespace, label)
                    break
                log.warning("apply %s in %s failed: %s", label, namespace, exc)
                errors.append(f"{label}: {exc.message}")
                statuses.add(exc.status)
                if exc.status == INVALID:
                    invalid[key] = (attempt, exc.message)
                continue
            invalid.pop(key, None)
            (result.updated if key in before else result.created).append(label)
        if not invalid:
            del self._invalid[(meta["namespace"], meta["name"])]
        if errors:
            message = "the API server refused " + "; ".join(errors)
            result.fail("ApplyFailed", message, retry=statuses != {INVALID})
        if result.created:
            self.kube.event(platform, "Normal", "Created", "created " + ", ".join(result.created))
        if result.updated:
            self.kube.event(platform, "Normal", "Updated", "updated " + ", ".join(result.updated))

    @staticmethod
    def _needs_apply(manifest: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
        # A different applied-hash means the rendering changed since the last apply, maybe by
        # dropping fields: only an apply makes the API server remove what we stopped sending.
        if _applied_hash(current) != _applied_hash(manifest):
            return True
        # Same rendering, but someone edited a field we own.
        if compare.drift(manifest, current) is not None:
            return True
        # We still hold spec.replicas although an HPA should own it now: release it.
        return (
            manifest["kind"] == "Deployment"
            and "replicas" not in manifest["spec"]
            and _owns_replicas(current, naming.FIELD_MANAGER)
        )

    def _create_at_floor(
        self, platform: Mapping[str, Any], manifest: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Create an autoscaled Deployment with minReplicas pods (not 1), then let the caller
        hand spec.replicas over as for any Deployment an HPA takes: the count is the HPA's
        from the first second. None (nothing created) when the manifest carries its count."""
        if "replicas" in manifest["spec"] or not platform["spec"]["autoscaling"]["enabled"]:
            return None
        return self.kube.apply(render.creation_manifest(dict(manifest), platform["spec"]))

    def _hand_over_replicas(self, manifest: Mapping[str, Any], current: Mapping[str, Any]) -> None:
        """Before we stop sending spec.replicas, let a second manager keep the current value.

        Otherwise the API server would drop the field and the Deployment would fall back to
        one replica until the HPA scales it up again.
        """
        if "replicas" in manifest["spec"] or not _owns_replicas(current, naming.FIELD_MANAGER):
            return
        meta = manifest["metadata"]
        self.kube.apply(
            {
                "apiVersion": manifest["apiVersion"],
                "kind": manifest["kind"],
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                "spec": {"replicas": current["spec"].get("replicas", 1)},
            },
            manager=HANDOVER_MANAGER,
        )

    def _prune(
        self,
        platform: Mapping[str, Any],
        desired: list[dict[str, Any]],
        live: dict[ChildKey, dict[str, Any]],
        result: Result,
        kinds: frozenset[str] | None = None,
    ) -> None:
        """Delete live children not in `desired` (only those of `kinds`, when given)."""
        wanted = {(m["kind"], m["metadata"]["name"]) for m in desired}
        already = len(result.pruned)
        for key, obj in list(live.items()):
            if key in wanted or (kinds is not None and key[0] not in kinds):
                continue
            meta = obj["metadata"]
            try:
                self.kube.delete(CHILD_KINDS[key[0]], meta["namespace"], key[1], meta["uid"])
            except KubeError as exc:
                result.fail("PruneFailed", f"delete {key[0]}/{key[1]}: {exc.message}")
                continue
            del live[key]
            result.pruned.append(f"{key[0]}/{key[1]}")
        if len(result.pruned) > already:
            pruned = ", ".join(result.pruned[already:])
            self.kube.event(platform, "Normal", "Pruned", "deleted " + pruned)

    def _write_status(
        self, platform: Mapping[str, Any], desired: dict[str, Any], result: Result
    ) -> None:
        previous = platform.get("status", {})
        if not status.changed(previous, desired):
            return
        meta = platform["metadata"]
        try:
            written = self.kube.apply_status(meta["namespace"], meta["name"], desired)
        except KubeError as exc:
            result.fail("StatusUpdateFailed", f"status update failed: {exc.message}")
            return
        result.status_version = written.get("metadata", {}).get("resourceVersion")
        for event in transition_events(previous, desired):
            self.kube.event(platform, *event)


def transition_events(
    previous: Mapping[str, Any], current: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """Events (type, reason, message) worth recording for a status change."""
    events: list[tuple[str, str, str]] = []
    before = status.condition(previous, "Ready")
    after = status.condition(current, "Ready")
    if after is not None and (before is None or before["status"] != after["status"]):
        if after["status"] == "True":
            events.append(("Normal", "Ready", after["message"]))
        elif before is not None:
            events.append(("Warning", "NotReady", after["message"]))
    degraded = status.condition(current, "Degraded")
    old_degraded = status.condition(previous, "Degraded")
    if (
        degraded is not None
        and degraded["status"] == "True"
        and (
            old_degraded is None
            or (old_degraded["status"], old_degraded["message"])
            != (degraded["status"], degraded["message"])
        )
    ):
        events.append(("Warning", degraded["reason"], degraded["message"]))
    scaling = status.condition(current, "AutoscalingReady")
    old_scaling = status.condition(previous, "AutoscalingReady")
    if (
        scaling is not None
        and scaling["status"] == "False"
        and scaling["reason"] != "Disabled"
        and (old_scaling is None or old_scaling["message"] != scaling["message"])
    ):
        # A target that cannot be honoured is said once, where `kubectl describe` shows it.
        events.append(("Warning", scaling["reason"], scaling["message"]))
    if current.get("phase") == "Suspended" and previous.get("phase") != "Suspended":
        events.append(("Normal", "Suspended", "reconciliation paused by spec.suspend"))
    if previous.get("phase") == "Suspended" and current.get("phase") != "Suspended":
        events.append(("Normal", "Resumed", "reconciliation resumed"))
    return events


def _autoscaling_verdict(
    platform: Mapping[str, Any],
    apis: autoscaling.MetricsApis | None,
    live: Mapping[ChildKey, Mapping[str, Any]] | None,
) -> status.Verdict:
    """The AutoscalingReady condition's status, reason and message: the plan's verdict, and,
    when the plan honours every target, what the live scaler itself reports."""
    if apis is None:
        if not platform["spec"]["autoscaling"]["enabled"]:
            return False, "Disabled", autoscaling.Plan(kind=None).message
        return None, "DiscoveryFailed", "discovery of KEDA and the metrics APIs failed"
    meta = platform["metadata"]
    plan = autoscaling.plan(meta["name"], meta["namespace"], platform["spec"], apis)
    if not plan.ready or plan.kind is None or live is None:
        return plan.ready, plan.reason, plan.message
    scaler = live.get((plan.kind, naming.ChildNames.of(meta["name"]).stream))
    failing = autoscaling.scaler_failure(plan.kind, scaler)
    if failing is None:
        return plan.ready, plan.reason, plan.message
    reason, message = failing
    return False, reason, f"{plan.message}, but {message}"


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences", [])
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


Refusal = tuple[str | None, str | None]  # (applied hash sent, live resourceVersion then)


def _refusal(manifest: Mapping[str, Any], current: Mapping[str, Any] | None) -> Refusal:
    """What identifies an apply request: the same one is refused the same way."""
    version = None if current is None else current["metadata"].get("resourceVersion")
    return _applied_hash(manifest), version


def _applied_hash(obj: Mapping[str, Any]) -> str | None:
    annotations = obj.get("metadata", {}).get("annotations") or {}
    value = annotations.get(naming.APPLIED_HASH_ANNOTATION)
    return None if value is None else str(value)


def _owns_replicas(live: Mapping[str, Any], manager: str) -> bool:
    return owns_field(live, manager, "spec", "replicas")
