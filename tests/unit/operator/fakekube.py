"""An in-memory stand-in for `vod_operator.kube.Kube`, enough for Reconciler unit tests.

Server-side apply is modelled the way it matters here: each field manager's last applied
configuration is kept, and an object is the merge of those configurations (later managers win).
So a field no manager sends any more disappears, as on a real API server; and `managedFields`
lists what each manager holds, so `owns_field` works. Every write is recorded in `writes`.
Failures are injected per verb and kind (`fail`) or for discovery (`discovery_error`).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from vod_operator import naming
from vod_operator.autoscaling import MetricsApis
from vod_operator.kube import APPLIED_KINDS, VIDEOASSET, VIDEOPLATFORM, Kind, KubeError

Key = tuple[str, str, str]  # (plural, namespace, name)
KIND_OF_PLURAL = {
    **{kind.plural: name for name, kind in APPLIED_KINDS.items()},
    VIDEOPLATFORM.plural: naming.KIND,
    VIDEOASSET.plural: naming.ASSET_KIND,
    "pods": "Pod",
}


def _merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _fields(value: Any) -> dict[str, Any]:
    """fieldsV1 of a configuration (lists count as one leaf: enough for these tests)."""
    if not isinstance(value, Mapping):
        return {}
    return {f"f:{key}": _fields(sub) for key, sub in value.items()}


class FakeKube:
    def __init__(self, *, monitoring: bool = False, apis: MetricsApis | None = None) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.configs: dict[Key, dict[str, dict[str, Any]]] = {}  # manager -> applied config
        self.monitoring = monitoring
        #: What metrics_apis() answers (KEDA, custom and external metrics).
        self.apis = apis or MetricsApis()
        self.discovery_error: KubeError | None = None
        #: Raised by metrics_apis() when set.
        self.metrics_discovery_error: KubeError | None = None
        #: (verb, kind) -> error raised by that call, e.g. ("apply", "Deployment").
        self.fail: dict[tuple[str, str], KubeError] = {}
        self.writes: list[tuple[str, str]] = []  # (verb, "Kind/name")
        self.attempts: list[str] = []  # "Kind/name" of every apply request, refused or not
        self.events: list[tuple[str, str, str]] = []  # (type, reason, message)
        self.logs: dict[tuple[str, str], str] = {}  # (namespace, pod) -> its log
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)

    # -- test set-up ------------------------------------------------------------------------
    def add_platform(self, platform: Mapping[str, Any]) -> None:
        meta = platform["metadata"]
        body = copy.deepcopy(dict(platform))
        body["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[(VIDEOPLATFORM.plural, meta["namespace"], meta["name"])] = body

    def add(self, kind: Kind, obj: Mapping[str, Any]) -> None:
        """Store any object as is (VideoAssets, Pods, Jobs as another controller left them)."""
        meta = obj["metadata"]
        body = copy.deepcopy(dict(obj))
        body["metadata"]["resourceVersion"] = str(next(self._versions))
        body["metadata"].setdefault("uid", f"uid-{next(self._uids)}")
        self.objects[(kind.plural, meta["namespace"], meta["name"])] = body

    def asset(self, namespace: str, name: str) -> dict[str, Any]:
        return self.objects[(VIDEOASSET.plural, namespace, name)]

    def platform(self, namespace: str, name: str) -> dict[str, Any]:
        return self.objects[(VIDEOPLATFORM.plural, namespace, name)]

    def child(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return self.objects[(APPLIED_KINDS[kind].plural, namespace, name)]

    def has(self, kind: str, namespace: str, name: str) -> bool:
        return (APPLIED_KINDS[kind].plural, namespace, name) in self.objects

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]

    # -- the KubeApi protocol ---------------------------------------------------------------
    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        self._maybe_fail("get", kind)
        found = self.objects.get((kind.plural, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list(self, kind: Kind, namespace: str, selector: str) -> list[dict[str, Any]]:
        self._maybe_fail("list", kind)
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        return [
            copy.deepcopy(obj)
            for (plural, ns, _), obj in sorted(self.objects.items())
            if plural == kind.plural
            and ns == namespace
            and wanted.items() <= obj["metadata"].get("labels", {}).items()
        ]

    def monitoring_available(self) -> bool:
        if self.discovery_error is not None:
            raise self.discovery_error
        return self.monitoring

    def metrics_apis(self) -> MetricsApis:
        if self.metrics_discovery_error is not None:
            raise self.metrics_discovery_error
        return self.apis

    def apply(
        self, manifest: Mapping[str, Any], *, manager: str = naming.FIELD_MANAGER
    ) -> dict[str, Any]:
        kind = APPLIED_KINDS[manifest["kind"]]
        meta = manifest["metadata"]
        self.attempts.append(f"{manifest['kind']}/{meta['name']}")
        self._maybe_fail("apply", kind)
        key = (kind.plural, meta["namespace"], meta["name"])
        configs = self.configs.setdefault(key, {})
        configs.pop(manager, None)  # the latest applier wins conflicts (force)
        configs[manager] = copy.deepcopy(dict(manifest))
        previous = self.objects.get(key)
        obj: dict[str, Any] = {}
        for config in configs.values():
            obj = _merge(obj, config)
        obj["metadata"]["uid"] = (
            previous["metadata"]["uid"] if previous else f"uid-{next(self._uids)}"
        )
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        obj["metadata"]["managedFields"] = [
            {"manager": name, "operation": "Apply", "fieldsV1": _fields(config)}
            for name, config in configs.items()
        ]
        if previous is not None and "status" in previous:
            obj["status"] = previous["status"]
        self.objects[key] = obj
        self.writes.append(("apply", f"{manifest['kind']}/{meta['name']}"))
        return copy.deepcopy(obj)

    def apply_status(
        self, namespace: str, name: str, status: Mapping[str, Any], *, kind: Kind = VIDEOPLATFORM
    ) -> dict[str, Any]:
        self._maybe_fail("apply_status", kind)
        obj = self.objects[(kind.plural, namespace, name)]
        # Server-side apply by the one status manager: what is not sent any more goes.
        obj["status"] = copy.deepcopy(dict(status))
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        self.writes.append(("status", f"{KIND_OF_PLURAL[kind.plural]}/{name}"))
        return copy.deepcopy(obj)

    def set_finalizers(
        self, kind: Kind, namespace: str, name: str, finalizers: Sequence[str], version: str
    ) -> dict[str, Any]:
        self._maybe_fail("set_finalizers", kind)
        key = (kind.plural, namespace, name)
        obj = self.objects[key]
        if obj["metadata"]["resourceVersion"] != version:
            raise KubeError(409, "Conflict", "the object has been modified")
        obj["metadata"]["finalizers"] = list(finalizers)
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        self.writes.append(("finalizers", f"{KIND_OF_PLURAL[kind.plural]}/{name}"))
        if obj["metadata"].get("deletionTimestamp") and not finalizers:
            del self.objects[key]  # the API server completes the deletion
        return copy.deepcopy(obj)

    def pod_log(self, namespace: str, pod: str, tail_lines: int) -> str:
        lines = self.logs.get((namespace, pod), "").splitlines()
        return "\n".join(lines[-tail_lines:]) + "\n"

    def delete(self, kind: Kind, namespace: str, name: str, uid: str) -> None:
        self._maybe_fail("delete", kind)
        key = (kind.plural, namespace, name)
        if key in self.objects and self.objects[key]["metadata"]["uid"] == uid:
            del self.objects[key]
            self.configs.pop(key, None)
            self.writes.append(("delete", f"{KIND_OF_PLURAL[kind.plural]}/{name}"))

    def event(self, platform: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))

    def _maybe_fail(self, verb: str, kind: Kind) -> None:
        name = KIND_OF_PLURAL.get(kind.plural, kind.plural)
        error = self.fail.get((verb, name))
        if error is not None:
            raise error
