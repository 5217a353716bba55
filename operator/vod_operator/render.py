"""Pure rendering: a VideoPlatform (as stored, defaults applied) -> the child manifests.

No I/O beyond reading the bundled templates. Everything the cluster decides (whether the
monitoring API exists, the signing key that was generated once) comes in as `RenderInputs`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jinja2
import yaml
from kubernetes.utils import parse_quantity

from vod_operator import naming

#: Template file of each child kind, in apply order (configuration before its consumers).
TEMPLATES: dict[str, str] = {
    "ConfigMap": "configmap.yaml.j2",
    "Secret": "secret.yaml.j2",
    "Deployment": "deployment.yaml.j2",
    "Service": "service.yaml.j2",
    "HorizontalPodAutoscaler": "horizontalpodautoscaler.yaml.j2",
    "PodDisruptionBudget": "poddisruptionbudget.yaml.j2",
    "Ingress": "ingress.yaml.j2",
    "ServiceMonitor": "servicemonitor.yaml.j2",
    "PrometheusRule": "prometheusrule.yaml.j2",
}

SIGNING_MOUNT = "/etc/vod/signing"
JWT_MOUNT = "/etc/vod/jwt"
CACHE_MOUNT = "/var/cache/vod"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class RenderInputs:
    """What rendering needs from the cluster besides the VideoPlatform itself."""

    #: Data of the operator-generated signing Secret: key id -> base64 HMAC key.
    signing_keys: Mapping[str, str] = field(default_factory=dict)
    #: Whether discovery shows monitoring.coreos.com/v1 (ServiceMonitor, PrometheusRule).
    monitoring_available: bool = False


class RenderError(ValueError):
    """The VideoPlatform cannot be rendered (for example a missing generated key)."""


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("vod_operator", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


def render(platform: Mapping[str, Any], inputs: RenderInputs) -> list[Manifest]:
    """Return the desired children of `platform`, canonical and in apply order."""
    meta = platform["metadata"]
    spec = platform["spec"]
    name, namespace = meta["name"], meta["namespace"]
    names = naming.ChildNames.of(name)
    signing_secret = _signing_secret_name(spec, names, inputs)
    server_env = _server_env(spec, inputs)
    context = {
        "name": name,
        "namespace": namespace,
        "spec": spec,
        "names": names,
        "image": spec.get("image") or naming.DEFAULT_IMAGE,
        "labels": lambda component: naming.child_labels(name, component),
        "selector_labels": naming.selector_labels(name),
        "owner_references": [owner_reference(platform)],
        "server_env": server_env,
        "signing_keys": dict(sorted(inputs.signing_keys.items())),
        "signing_secret": signing_secret,
        "jwt": spec["security"].get("jwt"),
        "resources": spec["resources"],
        "media_read_only": bool(spec["storage"].get("pvc", {}).get("readOnly", False)),
        "cache_volume": _cache_volume(spec["cache"]),
        "config_hash": _config_hash(server_env, inputs.signing_keys, signing_secret),
        "endpoint_drain_seconds": endpoint_drain_seconds(spec["server"]),
    }
    env = environment()
    return [
        stamp(canonical(yaml.safe_load(env.get_template(TEMPLATES[kind]).render(context))))
        for kind in desired_kinds(spec, inputs)
    ]


#: How long a terminating streaming pod keeps serving before SIGTERM, while kube-proxies and
#: ingress controllers drop it from the Service's endpoints (without it, connections routed to the
#: pod in that window are refused during rolling updates).
ENDPOINT_DRAIN_SECONDS = 5


def endpoint_drain_seconds(server: Mapping[str, Any]) -> int:
    """The preStop sleep: ENDPOINT_DRAIN_SECONDS, shortened so that it plus the server's own
    drain (shutdownGraceSeconds) still ends inside terminationGracePeriodSeconds (0: none)."""
    room = int(server["terminationGracePeriodSeconds"]) - int(server["shutdownGraceSeconds"]) - 1
    return max(0, min(ENDPOINT_DRAIN_SECONDS, room))


def desired_kinds(spec: Mapping[str, Any], inputs: RenderInputs) -> list[str]:
    """The child kinds this spec asks for, in apply order."""
    wanted = {
        "ConfigMap": True,
        "Secret": spec["security"]["signedUrls"]["enabled"]
        and not spec["security"]["signedUrls"].get("secretName"),
        "Deployment": True,
        "Service": True,
        "HorizontalPodAutoscaler": spec["autoscaling"]["enabled"],
        "PodDisruptionBudget": spec["podDisruptionBudget"]["enabled"],
        "Ingress": spec["ingress"]["enabled"],
        "ServiceMonitor": spec["monitoring"]["enabled"] and inputs.monitoring_available,
        "PrometheusRule": spec["monitoring"]["enabled"] and inputs.monitoring_available,
    }
    return [kind for kind in TEMPLATES if wanted[kind]]


def owner_reference(owner: Mapping[str, Any], kind: str = naming.KIND) -> dict[str, Any]:
    """The controller ownerReference every child of a VideoPlatform (or, with `kind`, of a
    VideoAsset) carries: deletion cascades through it."""
    return {
        "apiVersion": naming.API_VERSION,
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def canonical(value: Any) -> Any:
    """Drop nulls and empty lists recursively (they would make every apply a write)."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items() if v is not None and v != []}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def applied_hash(manifest: Mapping[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, without the applied-hash annotation itself."""
    meta = dict(manifest["metadata"])
    annotations = {
        k: v for k, v in meta.get("annotations", {}).items() if k != naming.APPLIED_HASH_ANNOTATION
    }
    meta.pop("annotations", None)
    if annotations:
        meta["annotations"] = annotations
    payload = json.dumps({**manifest, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def stamp(manifest: Mapping[str, Any]) -> Manifest:
    """A copy of `manifest` with the applied-hash annotation set (the reconciler compares it)."""
    meta = manifest["metadata"]
    annotations = {
        **meta.get("annotations", {}),
        naming.APPLIED_HASH_ANNOTATION: applied_hash(manifest),
    }
    return {**manifest, "metadata": {**meta, "annotations": annotations}}


def _signing_secret_name(
    spec: Mapping[str, Any], names: naming.ChildNames, inputs: RenderInputs
) -> str | None:
    signed = spec["security"]["signedUrls"]
    if not signed["enabled"]:
        return None
    if signed.get("secretName"):
        return str(signed["secretName"])
    if not inputs.signing_keys:
        raise RenderError("signed URLs are enabled but no signing key was generated yet")
    return names.signing


def _active_key_id(spec: Mapping[str, Any], inputs: RenderInputs) -> str:
    signed = spec["security"]["signedUrls"]
    if signed.get("secretName"):
        return str(signed["activeKeyId"])
    return sorted(inputs.signing_keys)[0]


def _server_env(spec: Mapping[str, Any], inputs: RenderInputs) -> dict[str, str]:
    """The VOD_* variables of the streaming server, all as strings, in a stable order."""
    server = spec["server"]
    security = spec["security"]
    signed = security["signedUrls"]
    env: dict[str, Any] = {
        "VOD_HOST": "0.0.0.0",
        "VOD_PORT": naming.PORT,
        "VOD_WORKERS": server["workers"],
        "VOD_MEDIA_ROOT": "/media",
        "VOD_MAX_UPLOAD_BYTES": server["maxUploadBytes"],
        "VOD_MAX_RANGES": server["maxRanges"],
        "VOD_MAX_CONNECTIONS": server["maxConnections"],
        "VOD_HEADER_TIMEOUT_SECONDS": server["headerTimeoutSeconds"],
        "VOD_BODY_TIMEOUT_SECONDS": server["bodyTimeoutSeconds"],
        "VOD_IDLE_TIMEOUT_SECONDS": server["idleTimeoutSeconds"],
        "VOD_SHUTDOWN_GRACE_SECONDS": server["shutdownGraceSeconds"],
        "VOD_LOG_LEVEL": server["logLevel"],
        "VOD_SIGNED_URLS": "true" if signed["enabled"] else "false",
    }
    if signed["enabled"]:
        env["VOD_SIGNING_KEYS_DIR"] = SIGNING_MOUNT
        env["VOD_SIGNING_ACTIVE_KEY_ID"] = _active_key_id(spec, inputs)
        env["VOD_SIGNED_URL_TTL_SECONDS"] = signed["ttlSeconds"]
    jwt = security.get("jwt")
    if jwt:
        file_var = (
            "VOD_JWT_SECRET_FILE" if jwt["keyType"] == "SharedSecret" else "VOD_JWT_PUBLIC_KEY_FILE"
        )
        env[file_var] = f"{JWT_MOUNT}/{jwt['secretKey']}"
        if jwt.get("issuer"):
            env["VOD_JWT_ISSUER"] = jwt["issuer"]
        if jwt.get("audience"):
            env["VOD_JWT_AUDIENCE"] = jwt["audience"]
    origins = security.get("cors", {}).get("allowedOrigins")
    if origins:
        env["VOD_CORS_ALLOWED_ORIGINS"] = ",".join(origins)
    if spec["cache"]["enabled"]:
        env["VOD_CACHE_DIR"] = CACHE_MOUNT
        env["VOD_CACHE_MAX_BYTES"] = quantity_bytes(spec["cache"]["size"])
    return {key: str(value) for key, value in env.items()}


def _cache_volume(cache_spec: Mapping[str, Any]) -> dict[str, str]:
    volume = {"sizeLimit": str(cache_spec["size"])}
    if cache_spec.get("medium"):
        volume["medium"] = str(cache_spec["medium"])
    return volume


def _config_hash(
    server_env: Mapping[str, str], signing_keys: Mapping[str, str], signing_secret: str | None
) -> str:
    """Checksum of everything the pods read at start: a change rolls the Deployment."""
    payload = json.dumps(
        {"env": server_env, "signingKeys": signing_keys, "signingSecret": signing_secret},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def quantity_bytes(quantity: str | int) -> int:
    """Whole bytes of a Kubernetes memory/storage quantity such as 20Gi or 500M."""
    return int(parse_quantity(quantity))
