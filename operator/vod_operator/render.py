"""Pure rendering: a VideoPlatform (as stored, defaults applied) -> the child manifests.

No I/O beyond reading the bundled templates. Everything the cluster decides (whether the
monitoring API exists, the signing key that was generated once) comes in as `RenderInputs`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import jinja2
import yaml
from kubernetes.utils import parse_quantity

from vod_operator import autoscaling, monitoring, naming

#: Template file of each child kind, in apply order (configuration before its consumers).
TEMPLATES: dict[str, str] = {
    "ConfigMap": "configmap.yaml.j2",
    "Secret": "secret.yaml.j2",
    "Deployment": "deployment.yaml.j2",
    "Service": "service.yaml.j2",
    "HorizontalPodAutoscaler": "horizontalpodautoscaler.yaml.j2",
    "ScaledObject": "scaledobject.yaml.j2",
    "PodDisruptionBudget": "poddisruptionbudget.yaml.j2",
    "Ingress": "ingress.yaml.j2",
    "ServiceMonitor": "servicemonitor.yaml.j2",
    "PrometheusRule": "prometheusrule.yaml.j2",
}

SIGNING_MOUNT = "/etc/vod/signing"
JWT_MOUNT = "/etc/vod/jwt"
CACHE_MOUNT = "/var/cache/vod"
S3_CREDENTIALS_MOUNT = "/etc/vod/s3"
ORIGIN_CA_MOUNT = "/etc/vod/origin-ca"
ORIGIN_CA_FILE = "ca.crt"
ACCESS_KEY_ID_FILE = "access-key-id"
SECRET_ACCESS_KEY_FILE = "secret-access-key"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class RenderInputs:
    """What rendering needs from the cluster besides the VideoPlatform itself."""

    #: Data of the operator-generated signing Secret: key id -> base64 HMAC key.
    signing_keys: Mapping[str, str] = field(default_factory=dict)
    #: Whether discovery shows monitoring.coreos.com/v1 (ServiceMonitor, PrometheusRule).
    monitoring_available: bool = False
    #: Base URL of the runbooks the alerts link to (an operator setting).
    runbook_base_url: str = monitoring.DEFAULT_RUNBOOK_BASE_URL
    #: What discovery found for autoscaling (KEDA, custom and external metrics APIs).
    metrics_apis: autoscaling.MetricsApis = field(default_factory=autoscaling.MetricsApis)


class RenderError(ValueError):
    """The VideoPlatform cannot be rendered (for example a missing generated key)."""


#: libyaml's loader when PyYAML has it (its wheels and the image do): profiled at 300 platforms,
#: the pure-Python loader parsing the rendered templates was a quarter of the operator's CPU.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def environment() -> jinja2.Environment:
    """The templates, compiled once: they ship in the package and never change while the
    operator runs (no per-render check of the files: `auto_reload` off)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("vod_operator", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        auto_reload=False,
    )


def manifest_of(text: str) -> Manifest:
    """A rendered template as the manifest we apply: parsed, canonical, stamped."""
    manifest: Manifest = json.loads(_manifest_json(text))
    return manifest


#: Rendered templates whose manifest is kept as JSON: a platform is rendered on every pass
#: (several while it comes up, and each child event or resync), and building objects from YAML
#: costs about ten times what parsing JSON does. 512 texts of 2-4 kB: recent platforms.
MANIFEST_CACHE_SIZE = 512


@lru_cache(maxsize=MANIFEST_CACHE_SIZE)
def _manifest_json(text: str) -> str:
    return json.dumps(stamp(canonical(yaml.load(text, Loader=_YAML_LOADER))))


def render(platform: Mapping[str, Any], inputs: RenderInputs) -> list[Manifest]:
    """Return the desired children of `platform`, canonical and in apply order."""
    meta = platform["metadata"]
    spec = platform["spec"]
    name, namespace = meta["name"], meta["namespace"]
    names = naming.ChildNames.of(name)
    signing_secret = _signing_secret_name(spec, names, inputs)
    server_env = _server_env(spec, inputs)
    scaler = autoscaling.plan(name, namespace, spec, inputs.metrics_apis)
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
        "media_volume": _media_volume(spec["storage"]),
        "origin_volumes": origin_volumes(spec["storage"]),
        "cache_volume": _cache_volume(spec["cache"]) if _cache_used(spec) else None,
        "config_hash": _config_hash(server_env, inputs.signing_keys, signing_secret),
        "endpoint_drain_seconds": endpoint_drain_seconds(spec["server"]),
        "monitoring": monitoring.context(name, namespace, spec, inputs.runbook_base_url),
        "remote_origin": origin_kind(spec["storage"]) != "file",
        "cache_used": _cache_used(spec),
        # Whether a scaler (HPA or ScaledObject) owns the Deployment's replica count.
        "autoscaling": scaler.kind is not None,
        "replicas": spec["autoscaling"]["minReplicas"]
        if spec["autoscaling"]["enabled"]
        else spec["replicas"],
        "scaler": scaler,
        "behavior": autoscaling.behavior(spec),
    }
    env = environment()
    return [
        manifest_of(env.get_template(TEMPLATES[kind]).render(context))
        for kind in desired_kinds(spec, inputs)
    ]


def creation_manifest(manifest: Manifest, spec: Mapping[str, Any]) -> Manifest:
    """What creates a child that does not exist yet: `manifest` itself, except that an
    autoscaled Deployment (rendered without spec.replicas, which the HPA owns) starts at
    autoscaling.minReplicas rather than the API's default of 1."""
    if (
        manifest["kind"] != "Deployment"
        or "replicas" in manifest["spec"]
        or not spec["autoscaling"]["enabled"]
    ):
        return manifest
    replicas = int(spec["autoscaling"]["minReplicas"])
    return {**manifest, "spec": {**manifest["spec"], "replicas": replicas}}


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
    """The child kinds this spec asks for, in apply order (at most one scaler kind)."""
    scaler = autoscaling.scaler_kind(spec, inputs.metrics_apis)
    wanted = {
        "ConfigMap": True,
        "Secret": spec["security"]["signedUrls"]["enabled"]
        and not spec["security"]["signedUrls"].get("secretName"),
        "Deployment": True,
        "Service": True,
        "HorizontalPodAutoscaler": scaler == autoscaling.HPA,
        "ScaledObject": scaler == autoscaling.SCALED_OBJECT,
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
        **origin_env(spec["storage"]),
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
    if _cache_used(spec):
        env["VOD_CACHE_DIR"] = CACHE_MOUNT
        env["VOD_CACHE_MAX_BYTES"] = quantity_bytes(spec["cache"]["size"])
        env["VOD_CACHE_SLICE_BYTES"] = quantity_bytes(spec["cache"].get("sliceSize", "1Mi"))
    return {key: str(value) for key, value in env.items()}


def _cache_used(spec: Mapping[str, Any]) -> bool:
    """The slice cache fronts remote origins only (the CRD refuses it with a local one)."""
    return bool(spec["cache"]["enabled"]) and origin_kind(spec["storage"]) != "file"


def origin_kind(storage: Mapping[str, Any]) -> str:
    """The server's VOD_ORIGIN for a spec.storage: a mounted volume is the file origin."""
    for kind in ("s3", "http"):
        if storage.get(kind):
            return kind
    return "file"


def origin_env(storage: Mapping[str, Any]) -> dict[str, Any]:
    """VOD_ORIGIN and its settings; credentials and CA bundles are only file paths here. The file
    origin is the server's default: leaving VOD_ORIGIN out keeps its pods' config hash as before."""
    kind = origin_kind(storage)
    if kind == "file":
        return {"VOD_MEDIA_ROOT": "/media"}
    origin = storage[kind]
    if kind == "http":
        env: dict[str, Any] = {"VOD_ORIGIN": "http", "VOD_HTTP_ORIGIN_URL": origin["url"]}
    else:
        env = {
            "VOD_ORIGIN": "s3",
            "VOD_S3_ENDPOINT": origin["endpoint"],
            "VOD_S3_BUCKET": origin["bucket"],
            "VOD_S3_PREFIX": origin.get("prefix", ""),
            "VOD_S3_REGION": origin.get("region", "us-east-1"),
            "VOD_S3_PATH_STYLE": "true" if origin.get("pathStyle", True) else "false",
        }
        if origin.get("credentialsSecret"):
            mount = S3_CREDENTIALS_MOUNT
            env["VOD_S3_ACCESS_KEY_ID_FILE"] = f"{mount}/{ACCESS_KEY_ID_FILE}"
            env["VOD_S3_SECRET_ACCESS_KEY_FILE"] = f"{mount}/{SECRET_ACCESS_KEY_FILE}"
    if origin.get("caConfigMap"):
        ca_var = "VOD_S3_CA_FILE" if kind == "s3" else "VOD_HTTP_ORIGIN_CA_FILE"
        env[ca_var] = f"{ORIGIN_CA_MOUNT}/{ORIGIN_CA_FILE}"
    return env


def _media_volume(storage: Mapping[str, Any]) -> dict[str, Any] | None:
    """The /media volume of a file origin (None for s3 and http)."""
    if storage.get("pvc"):
        claim: dict[str, Any] = {"claimName": storage["pvc"]["claimName"]}
        if storage["pvc"].get("readOnly"):
            claim["readOnly"] = True
        return {"name": "media", "persistentVolumeClaim": claim}
    if storage.get("emptyDir"):
        return {"name": "media", "emptyDir": {"sizeLimit": str(storage["emptyDir"]["sizeLimit"])}}
    return None


def origin_volumes(storage: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Volumes (with their mount paths) for origin credentials and CA bundles: files, so no
    secret value ever lands in the ConfigMap or the pod's environment."""
    kind = origin_kind(storage)
    origin = storage.get(kind) or {}
    volumes: list[dict[str, Any]] = []
    secret = origin.get("credentialsSecret")
    if secret:
        key_id = secret.get("accessKeyIdKey", "accessKeyId")
        secret_key = secret.get("secretAccessKeyKey", "secretAccessKey")
        items = [
            {"key": key_id, "path": ACCESS_KEY_ID_FILE},
            {"key": secret_key, "path": SECRET_ACCESS_KEY_FILE},
        ]
        volumes.append(
            {
                "mountPath": S3_CREDENTIALS_MOUNT,
                "volume": {
                    "name": "origin-credentials",
                    "secret": {"secretName": secret["name"], "items": items, "defaultMode": 288},
                },
            }
        )
    ca = origin.get("caConfigMap")
    if ca:
        items = [{"key": ca.get("key", "ca.crt"), "path": ORIGIN_CA_FILE}]
        volumes.append(
            {
                "mountPath": ORIGIN_CA_MOUNT,
                "volume": {"name": "origin-ca", "configMap": {"name": ca["name"], "items": items}},
            }
        )
    return volumes


def _cache_volume(cache_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The cache volume: a generic ephemeral volume of a StorageClass, else an emptyDir."""
    if cache_spec.get("storageClassName"):
        claim_spec = {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": cache_spec["storageClassName"],
            "resources": {"requests": {"storage": str(cache_spec["size"])}},
        }
        template = {"spec": claim_spec}
        return {"name": "cache", "ephemeral": {"volumeClaimTemplate": template}}
    empty_dir = {"sizeLimit": str(cache_spec["size"])}
    if cache_spec.get("medium"):
        empty_dir["medium"] = str(cache_spec["medium"])
    return {"name": "cache", "emptyDir": empty_dir}


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
