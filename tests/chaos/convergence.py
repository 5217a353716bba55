"""The exact final state the chaos scenarios demand, read from the API server.

For every VideoPlatform of a namespace (none being deleted):
- its spec is what the test last asked for (`expected`: name -> the spec fields it set), and
  the namespace holds exactly the platforms the test expects;
- its children, owned by its uid, are exactly those the operator renders for that spec now
  (`render.render`, the pure function: by kind and name, and the rendering's applied-hash on
  each), with no duplicate: its Deployment rolled out (observedGeneration current, one
  ReplicaSet with pods, exactly spec.replicas pods, all updated and ready);
- its status is current: observedGeneration == metadata.generation, Ready True (and the Ready
  condition's own observedGeneration current too);
and no object carrying the operator's label in the namespace lacks a live owner (garbage
collection has had its time: the caller polls until the verdict is clean).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config

from vod_operator import naming, render
from vod_operator.kube import CHILD_KINDS, KEDA_KINDS, MONITORING_KINDS, POD, VIDEOPLATFORM, Kind
from vod_operator.kube import Kube as OperatorKube
from vod_operator.status import condition

REPLICASETS = Kind("apps", "v1", "replicasets")
OURS = f"{naming.MANAGED_BY}={naming.FIELD_MANAGER}"


@dataclass(frozen=True)
class Verdict:
    platforms: int
    children: int
    problems: list[str]

    @property
    def exact(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = f"{self.platforms} platforms, {self.children} children"
        if self.exact:
            return f"{head}: exact"
        more = f" (+{len(self.problems) - 10} more)" if len(self.problems) > 10 else ""
        return f"{head}: {len(self.problems)} problems: " + "; ".join(self.problems[:10]) + more


def kube_for(kubeconfig: Path) -> OperatorKube:
    """The operator's own API wrapper, as the cluster's admin (reads only, here)."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return OperatorKube(client.ApiClient(configuration))


def inspect(
    kube: OperatorKube, namespace: str, expected: Mapping[str, Mapping[str, Any]]
) -> Verdict:
    """The namespace against the exact final state; `expected`: platform name -> spec fields."""
    problems: list[str] = []
    platforms = kube.list(VIDEOPLATFORM, namespace, "")
    live = {p["metadata"]["name"]: p for p in platforms}
    deleting = sorted(n for n, p in live.items() if p["metadata"].get("deletionTimestamp"))
    if deleting:
        problems.append(f"still being deleted: {', '.join(deleting)}")
    if set(live) != set(expected):
        missing, extra = sorted(set(expected) - set(live)), sorted(set(live) - set(expected))
        problems.append(f"platforms missing {missing}, unexpected {extra}")
    inputs_base = render.RenderInputs(
        monitoring_available=kube.monitoring_available(), metrics_apis=kube.metrics_apis()
    )
    children = _children(kube, namespace, inputs_base)
    owners = {
        p["metadata"]["uid"]: p for p in platforms if not p["metadata"].get("deletionTimestamp")
    }
    by_owner: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for (kind, name), obj in children.items():
        uid = _controller_uid(obj)
        if uid is None or uid not in owners:
            problems.append(f"orphan {kind}/{name} (owner uid {uid})")
            continue
        by_owner.setdefault(uid, {})[(kind, name)] = obj
    replicasets = kube.list(REPLICASETS, namespace, "")
    pods = [p for p in kube.list(POD, namespace, "") if not p["metadata"].get("deletionTimestamp")]
    for uid, platform in owners.items():
        name = platform["metadata"]["name"]
        problems += _spec_problems(name, platform["spec"], expected.get(name, {}))
        problems += _status_problems(name, platform)
        owned = by_owner.get(uid, {})
        problems += _children_problems(name, platform, owned, inputs_base)
        deployment = owned.get(("Deployment", naming.ChildNames.of(name).stream))
        if deployment is not None:
            problems += _rollout_problems(name, deployment, replicasets, pods)
    return Verdict(len(platforms), len(children), problems)


def _children(
    kube: OperatorKube, namespace: str, inputs: render.RenderInputs
) -> dict[tuple[str, str], dict[str, Any]]:
    """Every object of a child kind carrying the operator's label, by (kind, name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for kind_name, kind in CHILD_KINDS.items():
        if kind_name in MONITORING_KINDS and not inputs.monitoring_available:
            continue
        if kind_name in KEDA_KINDS and not inputs.metrics_apis.keda:
            continue
        for obj in kube.list(kind, namespace, OURS):
            found[(kind_name, obj["metadata"]["name"])] = obj
    return found


def _controller_uid(obj: Mapping[str, Any]) -> str | None:
    refs = obj["metadata"].get("ownerReferences") or []
    uids = [r["uid"] for r in refs if r.get("controller") and r.get("kind") == naming.KIND]
    return uids[0] if len(uids) == 1 else None


def _spec_problems(name: str, spec: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    return [
        f"{name}: spec.{field} is {_at(spec, field)!r}, the test set {value!r}"
        for field, value in _flatten(wanted).items()
        if _at(spec, field) != value
    ]


def _status_problems(name: str, platform: Mapping[str, Any]) -> list[str]:
    generation = platform["metadata"].get("generation")
    status = platform.get("status") or {}
    problems = []
    if status.get("observedGeneration") != generation:
        problems.append(
            f"{name}: status.observedGeneration {status.get('observedGeneration')} != "
            f"generation {generation}"
        )
    ready = condition(status, "Ready") or {}
    if ready.get("status") != "True" or ready.get("observedGeneration") != generation:
        problems.append(
            f"{name}: Ready {ready.get('status')} ({ready.get('reason')}, observedGeneration "
            f"{ready.get('observedGeneration')})"
        )
    return problems


def _children_problems(
    name: str,
    platform: Mapping[str, Any],
    owned: Mapping[tuple[str, str], Mapping[str, Any]],
    inputs: render.RenderInputs,
) -> list[str]:
    """The owned children against the rendering of the platform's current spec."""
    secret = owned.get(("Secret", naming.ChildNames.of(name).signing))
    keys = dict((secret or {}).get("data") or {})
    signed = platform["spec"]["security"]["signedUrls"]
    if signed["enabled"] and not signed.get("secretName") and not keys:
        return [f"{name}: no signing Secret with a key"]
    inputs = render.RenderInputs(
        signing_keys=keys,
        monitoring_available=inputs.monitoring_available,
        metrics_apis=inputs.metrics_apis,
    )
    desired = {(m["kind"], m["metadata"]["name"]): m for m in render.render(platform, inputs)}
    problems = []
    if set(owned) != set(desired):
        missing = sorted(f"{k}/{n}" for k, n in set(desired) - set(owned))
        extra = sorted(f"{k}/{n}" for k, n in set(owned) - set(desired))
        problems.append(f"{name}: children missing {missing}, not wanted {extra}")
    for key in set(owned) & set(desired):
        have, want = _applied(owned[key]), _applied(desired[key])
        if have != want:
            problems.append(f"{name}: {key[0]}/{key[1]} applied {have}, the spec renders {want}")
    return problems


def _rollout_problems(
    name: str,
    deployment: Mapping[str, Any],
    replicasets: list[dict[str, Any]],
    pods: list[dict[str, Any]],
) -> list[str]:
    """The Deployment settled with exactly its replicas: no second live ReplicaSet, no extra
    pod."""
    uid = deployment["metadata"]["uid"]
    replicas = int(deployment["spec"].get("replicas", 1))
    status = deployment.get("status") or {}
    problems = []
    if status.get("observedGeneration") != deployment["metadata"].get("generation"):
        problems.append(f"{name}: Deployment not observed at its generation yet")
    counts = (status.get("replicas"), status.get("updatedReplicas"), status.get("readyReplicas"))
    if counts != (replicas, replicas, replicas):
        problems.append(f"{name}: Deployment replicas/updated/ready {counts}, wants {replicas}")
    owned_sets = [r for r in replicasets if _owned_by(r, uid)]
    scaled = [r for r in owned_sets if int(r["spec"].get("replicas", 0)) > 0]
    if len(scaled) != 1:
        problems.append(f"{name}: {len(scaled)} ReplicaSets with pods (want 1)")
    set_uids = {r["metadata"]["uid"] for r in owned_sets}
    running = Counter(_owner_uid(p) for p in pods if _owner_uid(p) in set_uids)
    if sum(running.values()) != replicas:
        problems.append(f"{name}: {sum(running.values())} pods, wants {replicas}")
    return problems


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])


def _owner_uid(obj: Mapping[str, Any]) -> str | None:
    refs = obj["metadata"].get("ownerReferences") or []
    return str(refs[0]["uid"]) if refs else None


def _applied(obj: Mapping[str, Any]) -> str | None:
    annotations = obj["metadata"].get("annotations") or {}
    value = annotations.get(naming.APPLIED_HASH_ANNOTATION)
    return None if value is None else str(value)


def _flatten(fields: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in fields.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _at(spec: Mapping[str, Any], path: str) -> Any:
    value: Any = spec
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value
