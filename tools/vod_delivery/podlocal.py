"""Turn a rendered Deployment's container into a local process configuration.

Pure: the Deployment, ConfigMaps and Secrets the operator wrote go in; out comes the command,
the environment and the files a local process needs to run exactly as the pod would:

- the environment is built the way the kubelet builds it (envFrom in order, then env on top);
- every volumeMount becomes a local folder (Secret and ConfigMap volumes become files in it);
- env values that point into a mount path are rewritten to the local folder standing in for it.

Nothing here reads the API server or touches the disk: `materialize()` in the demo does that.
"""

from __future__ import annotations

import base64
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class LocalFile:
    """A file to write before the process starts (a key of a Secret or ConfigMap volume)."""

    path: Path
    data: bytes
    mode: int


@dataclass(frozen=True)
class LocalMount:
    """One volumeMount of the container and the local folder standing in for it."""

    name: str
    mount_path: str
    local: Path
    source: str  # secret/NAME, configMap/NAME, persistentVolumeClaim/NAME, emptyDir


@dataclass
class LocalPod:
    """Everything needed to start the container's process locally."""

    command: list[str]
    env: dict[str, str]
    mounts: list[LocalMount]
    files: list[LocalFile]
    rewritten: dict[str, tuple[str, str]] = field(default_factory=dict)  # VAR -> (old, new)
    notes: list[str] = field(default_factory=list)


def container_of(deployment: Obj, name: str | None = None) -> Obj:
    """The named container of a Deployment's pod template (the first one if no name)."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    if name is None:
        return dict(containers[0])
    for container in containers:
        if container["name"] == name:
            return dict(container)
    raise KeyError(f"no container {name!r} in Deployment {deployment['metadata']['name']}")


def _decoded(secret: Obj) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    data.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


def _configmap_bytes(configmap: Obj) -> dict[str, bytes]:
    data = {k: v.encode() for k, v in (configmap.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (configmap.get("binaryData") or {}).items()})
    return data


def environment(
    container: Obj, configmaps: Mapping[str, Obj], secrets: Mapping[str, Obj]
) -> tuple[dict[str, str], list[str]]:
    """The container's environment as the kubelet computes it, and notes on what was skipped."""
    env: dict[str, str] = {}
    notes: list[str] = []
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            data = configmaps[source["configMapRef"]["name"]].get("data") or {}
            env.update({prefix + k: str(v) for k, v in data.items()})
        elif "secretRef" in source:
            decoded = _decoded(secrets[source["secretRef"]["name"]])
            env.update({prefix + k: v.decode() for k, v in decoded.items()})
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        ref = var.get("valueFrom", {})
        if "configMapKeyRef" in ref:
            key = ref["configMapKeyRef"]
            env[var["name"]] = str(configmaps[key["name"]]["data"][key["key"]])
        elif "secretKeyRef" in ref:
            key = ref["secretKeyRef"]
            env[var["name"]] = _decoded(secrets[key["name"]])[key["key"]].decode()
        else:
            notes.append(f"{var['name']}: {sorted(ref)} has no local equivalent; left unset")
    return env, notes


def _volume_files(
    volume: Obj, folder: Path, configmaps: Mapping[str, Obj], secrets: Mapping[str, Obj]
) -> tuple[str, list[LocalFile]]:
    """What a volume is, and the files it projects into its folder."""
    if "secret" in volume:
        spec = volume["secret"]
        data, label = _decoded(secrets[spec["secretName"]]), f"secret/{spec['secretName']}"
    elif "configMap" in volume:
        spec = volume["configMap"]
        name = spec["name"]
        data, label = _configmap_bytes(configmaps[name]), f"configMap/{name}"
    elif "persistentVolumeClaim" in volume:
        return f"persistentVolumeClaim/{volume['persistentVolumeClaim']['claimName']}", []
    else:
        return next(iter(k for k in volume if k != "name"), "emptyDir"), []
    mode = int(spec.get("defaultMode", 0o644))
    items = spec.get("items")
    paths = {i["key"]: (i["path"], int(i.get("mode", mode))) for i in items} if items else None
    files = []
    for key, value in sorted(data.items()):
        if paths is None:
            files.append(LocalFile(folder / key, value, mode))
        elif key in paths:
            files.append(LocalFile(folder / paths[key][0], value, paths[key][1]))
    return label, files


def rewrite_path(value: str, mounts: list[LocalMount]) -> str | None:
    """`value` with its mount-path prefix replaced by the local folder; None if not inside one."""
    for mount in sorted(mounts, key=lambda m: len(m.mount_path), reverse=True):
        root = mount.mount_path.rstrip("/")
        if value == root or value.startswith(root + "/"):
            rest = posixpath.relpath(value, root)
            return str(mount.local if rest == "." else mount.local / rest)
    return None


def local_pod(
    deployment: Obj,
    configmaps: Mapping[str, Obj],
    secrets: Mapping[str, Obj],
    volumes_dir: Path,
    container_name: str | None = None,
    pvc_dirs: Mapping[str, Path] | None = None,
    program_defaults: Mapping[str, str] | None = None,
) -> LocalPod:
    """The local stand-in for one container of a rendered Deployment.

    Each volume gets `volumes_dir/<volume name>`, except PersistentVolumeClaims named in
    `pvc_dirs` (claim name -> folder), which use that folder. `program_defaults` are the values
    the program falls back to for unset variables: a default pointing into a mount is set
    explicitly to its local folder (the pod relies on it as much as on a rendered value).
    """
    container = container_of(deployment, container_name)
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    env, notes = environment(container, configmaps, secrets)
    mounts: list[LocalMount] = []
    files: list[LocalFile] = []
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        folder = volumes_dir / mount["name"]
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        if claim and pvc_dirs and claim in pvc_dirs:
            folder = pvc_dirs[claim]
        source, projected = _volume_files(volume, folder, configmaps, secrets)
        mounts.append(LocalMount(mount["name"], mount["mountPath"], folder, source))
        files += projected
    rewritten: dict[str, tuple[str, str]] = {}
    for key, value in (program_defaults or {}).items():
        if key not in env and rewrite_path(value, mounts) is not None:
            env[key] = value
    for key, value in env.items():
        new = rewrite_path(value, mounts)
        if new is not None:
            rewritten[key] = (value, new)
    env.update({key: new for key, (_, new) in rewritten.items()})
    command = [*container.get("command", []), *container.get("args", [])]
    return LocalPod(command, env, mounts, files, rewritten, notes)
