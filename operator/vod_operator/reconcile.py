"""One reconcile pass for one VideoPlatform: desired = render(spec); apply; prune; status.

Synchronous (runs in a worker thread). Writes happen only where the live state differs from
the desired state, so a platform at rest costs reads only.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vod_operator import compare, naming, render, status
from vod_operator.kube import (
    CHILD_KINDS,
    MONITORING_KINDS,
    VIDEOPLATFORM,
    Kube,
    KubeError,
    owns_field,
)

log = logging.getLogger(__name__)

#: Field manager that keeps spec.replicas alive while ownership passes to an HPA.
HANDOVER_MANAGER = "vod-operator-hpa-handover"

ChildKey = tuple[str, str]  # (kind, name)


@dataclass
class Result:
    """What one pass did; `error` set means: retry later with backoff."""

    found: bool = True
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    error: str | None = None
    #: resourceVersion of the VideoPlatform after our status write (to ignore its echo).
    status_version: str | None = None


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    """Brings the children of one VideoPlatform in line with its spec."""

    def __init__(self, kube: Kube, now: Callable[[], str] = utc_now) -> None:
        self.kube = kube
        self.now = now

    def reconcile(self, namespace: str, name: str) -> Result:
        platform = self.kube.get(VIDEOPLATFORM, namespace, name)
        if platform is None or platform["metadata"].get("deletionTimestamp"):
            return Result(found=False)
        spec = platform["spec"]
        wants_monitoring = bool(spec["monitoring"]["enabled"])
        monitoring_api = self.kube.monitoring_available()
        live = self._live_children(platform, monitoring_api)
        names = naming.ChildNames.of(name)
        result = Result()
        if not spec.get("suspend", False):
            try:
                inputs = render.RenderInputs(
                    signing_keys=self._signing_keys(platform, live),
                    monitoring_available=monitoring_api,
                )
                desired = render.render(platform, inputs)
            except (render.RenderError, KubeError) as exc:
                result.error = str(exc)
            else:
                self._apply_all(platform, desired, live, result)
                self._prune(platform, desired, live, result)
        if not wants_monitoring:
            monitoring = status.Monitoring.DISABLED
        elif monitoring_api:
            monitoring = status.Monitoring.ENABLED
        else:
            monitoring = status.Monitoring.CRDS_MISSING
        observed = status.Observed(
            name=name,
            namespace=namespace,
            generation=int(platform["metadata"].get("generation", 1)),
            suspended=bool(spec.get("suspend", False)),
            deployment=live.get(("Deployment", names.stream)),
            monitoring=monitoring,
            previous=platform.get("status", {}),
            now=self.now(),
            apply_error=result.error,
        )
        self._write_status(platform, status.compute(observed), result)
        return result

    # -- observation ----------------------------------------------------------------------
    def _live_children(
        self, platform: Mapping[str, Any], monitoring_api: bool
    ) -> dict[ChildKey, dict[str, Any]]:
        """Children carrying our labels and owned by this very VideoPlatform (same uid)."""
        meta = platform["metadata"]
        selector = naming.instance_selector(meta["name"])
        found: dict[ChildKey, dict[str, Any]] = {}
        for kind_name, kind in CHILD_KINDS.items():
            if kind_name in MONITORING_KINDS and not monitoring_api:
                continue
            for obj in self.kube.list(kind, meta["namespace"], selector):
                if _owned_by(obj, meta["uid"]):
                    found[(kind_name, obj["metadata"]["name"])] = obj
        return found

    def _signing_keys(
        self, platform: Mapping[str, Any], live: Mapping[ChildKey, Mapping[str, Any]]
    ) -> dict[str, str]:
        """The generated signing key(s): kept from the live Secret, generated only once."""
        signed = platform["spec"]["security"]["signedUrls"]
        if not signed["enabled"] or signed.get("secretName"):
            return {}
        meta = platform["metadata"]
        secret_name = naming.ChildNames.of(meta["name"]).signing
        secret = live.get(("Secret", secret_name)) or self.kube.get(
            CHILD_KINDS["Secret"], meta["namespace"], secret_name
        )
        keys = dict((secret or {}).get("data") or {})
        if keys:
            return keys
        key_id = f"k-{secrets.token_hex(4)}"
        self.kube.event(
            platform, "Normal", "SigningKeyGenerated", f"generated URL-signing key {key_id}"
        )
        return {key_id: base64.b64encode(secrets.token_bytes(32)).decode()}

    # -- changes --------------------------------------------------------------------------
    def _apply_all(
        self,
        platform: Mapping[str, Any],
        desired: list[dict[str, Any]],
        live: dict[ChildKey, dict[str, Any]],
        result: Result,
    ) -> None:
        errors: list[str] = []
        for manifest in desired:
            key = (manifest["kind"], manifest["metadata"]["name"])
            current = live.get(key)
            label = f"{key[0]}/{key[1]}"
            if current is not None and not self._needs_apply(manifest, current):
                continue
            try:
                if current is not None and manifest["kind"] == "Deployment":
                    self._hand_over_replicas(manifest, current)
                live[key] = self.kube.apply(manifest)
            except KubeError as exc:
                namespace = platform["metadata"]["namespace"]
                if exc.namespace_terminating:
                    log.info("namespace %s is being deleted: not recreating %s", namespace, label)
                    continue
                log.warning("apply %s in %s failed: %s", label, namespace, exc)
                errors.append(f"{label}: {exc.message}")
                continue
            (result.updated if current is not None else result.created).append(label)
        if errors:
            result.error = "the API server refused " + "; ".join(errors)
        if result.created:
            self.kube.event(platform, "Normal", "Created", "created " + ", ".join(result.created))
        if result.updated:
            self.kube.event(platform, "Normal", "Updated", "updated " + ", ".join(result.updated))
        changed = result.created + result.updated
        unused = unimplemented_features(platform["spec"])
        if unused and any(label.startswith("ConfigMap/") for label in changed):
            self.kube.event(
                platform,
                "Warning",
                "FeatureNotImplemented",
                f"{', '.join(unused)}: passed to the server, but vod-stream does not use it yet",
            )

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
    ) -> None:
        wanted = {(m["kind"], m["metadata"]["name"]) for m in desired}
        for key, obj in list(live.items()):
            if key in wanted:
                continue
            meta = obj["metadata"]
            try:
                self.kube.delete(CHILD_KINDS[key[0]], meta["namespace"], key[1], meta["uid"])
            except KubeError as exc:
                result.error = (result.error or "") + f" delete {key[0]}/{key[1]}: {exc.message}"
                continue
            del live[key]
            result.pruned.append(f"{key[0]}/{key[1]}")
        if result.pruned:
            self.kube.event(platform, "Normal", "Pruned", "deleted " + ", ".join(result.pruned))

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
            result.error = result.error or f"status update failed: {exc.message}"
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
    if current.get("phase") == "Suspended" and previous.get("phase") != "Suspended":
        events.append(("Normal", "Suspended", "reconciliation paused by spec.suspend"))
    if previous.get("phase") == "Suspended" and current.get("phase") != "Suspended":
        events.append(("Normal", "Resumed", "reconciliation resumed"))
    return events


def unimplemented_features(spec: Mapping[str, Any]) -> list[str]:
    """Enabled spec features the bundled streaming server does not implement yet."""
    return [
        f"spec.{name}"
        for name in ("cache", "transcoding")
        if spec.get(name, {}).get("enabled", False)
    ]


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences", [])
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def _applied_hash(obj: Mapping[str, Any]) -> str | None:
    annotations = obj.get("metadata", {}).get("annotations") or {}
    value = annotations.get(naming.APPLIED_HASH_ANNOTATION)
    return None if value is None else str(value)


def _owns_replicas(live: Mapping[str, Any], manager: str) -> bool:
    return owns_field(live, manager, "spec", "replicas")
