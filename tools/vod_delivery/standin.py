"""A local process standing in for a rendered pod: read what the operator wrote from the API
server, write its Secret/ConfigMap files, and build the process's command and environment."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from localcluster.handle import KubeCluster
from vod_delivery.podlocal import LocalPod
from vod_delivery.report import Reporter


def host_adapted(pod: LocalPod, port: int) -> dict[str, tuple[str, str]]:
    """Network settings that must change on this host: bind 127.0.0.1, a free port."""
    changes: dict[str, tuple[str, str]] = {}
    if pod.env.get("VOD_HOST", "127.0.0.1") != "127.0.0.1":
        changes["VOD_HOST"] = (pod.env["VOD_HOST"], "127.0.0.1")
    if pod.env.get("VOD_PORT") != str(port):
        changes["VOD_PORT"] = (pod.env.get("VOD_PORT", "(unset)"), str(port))
    return changes


def materialize(pod: LocalPod) -> None:
    """Create every mount's folder and write the Secret/ConfigMap files into them."""
    for mount in pod.mounts:
        mount.local.mkdir(parents=True, exist_ok=True)
    for file in pod.files:
        file.path.parent.mkdir(parents=True, exist_ok=True)
        file.path.unlink(missing_ok=True)
        file.path.write_bytes(file.data)
        file.path.chmod(file.mode & 0o777 | 0o400)


def get_json(cluster: KubeCluster, *args: str) -> dict[str, Any]:
    """`kubectl get ARGS -o json`, parsed."""
    value: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
    return value


def rendered_objects(
    cluster: KubeCluster, namespace: str, deployment_name: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The Deployment and every ConfigMap/Secret it references, as stored in the API server."""
    deployment = get_json(cluster, "deployment", deployment_name, "-n", namespace)
    spec = deployment["spec"]["template"]["spec"]
    cms: set[str] = set()
    secrets: set[str] = set()
    for container in spec["containers"]:
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                cms.add(source["configMapRef"]["name"])
            if "secretRef" in source:
                secrets.add(source["secretRef"]["name"])
        for var in container.get("env", []):
            ref = var.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                cms.add(ref["configMapKeyRef"]["name"])
            if "secretKeyRef" in ref:
                secrets.add(ref["secretKeyRef"]["name"])
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            cms.add(volume["configMap"]["name"])
        if "secret" in volume:
            secrets.add(volume["secret"]["secretName"])
    configmaps = {n: get_json(cluster, "configmap", n, "-n", namespace) for n in sorted(cms)}
    secret_objs = {n: get_json(cluster, "secret", n, "-n", namespace) for n in sorted(secrets)}
    return deployment, configmaps, secret_objs


def describe_pod(report: Reporter, pod: LocalPod) -> None:
    """Print the command, the environment and the mount mapping of the local stand-in."""
    report.info(f"command: {' '.join(pod.command)}")
    report.info("environment (ConfigMap envFrom + container env):")
    for key in sorted(pod.env):
        value = pod.env[key]
        note = f"   (rendered {pod.rewritten[key][0]})" if key in pod.rewritten else ""
        report.info(f"  {key}={value}{note}")
    report.info("volume mounts -> local folders:")
    for mount in pod.mounts:
        report.info(f"  {mount.mount_path:<18} {mount.source:<34} -> {mount.local}")
    for file in pod.files:
        secret = any(
            file.path.parent == m.local and m.source.startswith("secret/") for m in pod.mounts
        )
        shown = f"{len(file.data)} bytes" if secret else file.data.decode(errors="replace")[:60]
        report.info(f"  wrote {file.path} ({shown}, mode {oct(file.mode & 0o777)})")
    for note in pod.notes:
        report.info(f"  note: {note}")


def process_env(pod: LocalPod, tmp_dir: Path | None) -> dict[str, str]:
    """The server's environment: the pod's, plus what a process needs to find Python."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL") if k in os.environ}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if tmp_dir is not None:
        env["TMPDIR"] = str(tmp_dir)
    env.update(pod.env)
    return env


def resolve_command(command: list[str]) -> list[str]:
    """The container's command with its program found in this virtualenv (or on PATH)."""
    if not command:
        raise RuntimeError("the container has no command: cannot run its image's entrypoint here")
    local = Path(sys.executable).parent / command[0]
    program = str(local) if local.exists() else shutil.which(command[0])
    if program is None:
        raise RuntimeError(f"{command[0]} is not installed here")
    return [program, *command[1:]]
