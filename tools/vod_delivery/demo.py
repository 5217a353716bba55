"""`make demo`: a cluster, the operator, the examples Ready, a video streamed with a Range request.

Two paths, one story:

- local control plane (no Docker): the operator runs as a local process; pods are simulated by
  kwok, so the streaming server is started locally with exactly the configuration the operator
  rendered (its ConfigMap, the Deployment's command/env and mounts, the signing Secret);
- kind (a Docker engine answers): the Makefile has created the cluster, built and loaded the images
  and deployed the operator; the video is copied into a real streaming pod and fetched through
  `kubectl port-forward`.

State lives in `.demo/` (git-ignored); `make demo-down` stops what was started and removes it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from localcluster.handle import KubeCluster
from vod_delivery import media, procs, project
from vod_delivery.podlocal import LocalPod, local_pod
from vod_stream.config import PREFIX, SPECS

VIDEO_NAME = "demo.mp4"
STREAM_CONTAINER = "stream"
WAIT_TIMEOUT = "240s"
#: The demo's own local control plane (tests and `make cluster-up` use other names);
#: VOD_DEMO_CLUSTER overrides it.
LOCAL_CLUSTER_NAME = "vod-demo"


def local_cluster_name() -> str:
    """Name of the local control plane the demo starts and stops."""
    return os.environ.get("VOD_DEMO_CLUSTER", LOCAL_CLUSTER_NAME)


@dataclass(frozen=True)
class Paths:
    """Everything the demo keeps, under one folder."""

    root: Path

    @property
    def mode(self) -> Path:
        return self.root / "mode"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def media(self) -> Path:
        return self.root / "media"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def pid(self, name: str) -> Path:
        return self.root / f"{name}.pid"


class Reporter:
    """Numbered steps and indented details on stdout, so a reader can follow what happened."""

    def __init__(self) -> None:
        self.number = 0

    def step(self, text: str) -> None:
        self.number += 1
        print(f"\n==> {self.number}. {text}", flush=True)

    def info(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            print(f"    {line}", flush=True)


@dataclass(frozen=True)
class Platform:
    """A VideoPlatform from examples/."""

    namespace: str
    name: str
    signed_urls: bool


def example_documents(examples: Path = project.EXAMPLES_DIR) -> Iterator[dict[str, Any]]:
    """Every object in examples/*.yaml."""
    for path in sorted(examples.glob("*.y*ml")):
        yield from (d for d in yaml.safe_load_all(path.read_text()) if d)


def example_platforms(docs: list[dict[str, Any]]) -> list[Platform]:
    """The VideoPlatforms among the examples, the ones with signed URLs first."""
    found = [
        Platform(
            d["metadata"].get("namespace", "default"),
            d["metadata"]["name"],
            bool(d.get("spec", {}).get("security", {}).get("signedUrls", {}).get("enabled")),
        )
        for d in docs
        if d.get("kind") == "VideoPlatform"
    ]
    return sorted(found, key=lambda p: (not p.signed_urls, p.namespace, p.name))


def example_claims(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(namespace, name) of the PersistentVolumeClaims among the examples."""
    return [
        (d["metadata"].get("namespace", "default"), d["metadata"]["name"])
        for d in docs
        if d.get("kind") == "PersistentVolumeClaim"
    ]


def hostpath_volume(namespace: str, claim: str, path: Path) -> dict[str, Any]:
    """A PersistentVolume pre-bound to one claim, backed by a local folder.

    The local control plane has no storage provisioner; the folder is the same one the locally
    started streaming server uses for the claim, so the cluster and the process agree.
    """
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"vod-demo-{namespace}-{claim}",
            "labels": {"app.kubernetes.io/part-of": "vod-operator-demo"},
        },
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "claimRef": {"namespace": namespace, "name": claim},
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
        },
    }


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


def sign(env: Mapping[str, str], path: str, ttl: str, base_url: str) -> str:
    """A signed URL from `vod-stream sign` with the server's own (rendered) settings."""
    program = resolve_command(["vod-stream"])[0]
    out = subprocess.run(
        [program, "sign", path, "--ttl", ttl, "--base-url", base_url],
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip().splitlines()[-1]


def fetch(url: str, range_header: str | None) -> tuple[int, dict[str, str], int]:
    """GET `url` (optionally with a Range header): status, headers and body length."""
    request = urllib.request.Request(url, headers={"Range": range_header} if range_header else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers.items()), len(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), len(exc.read())


def stream_and_show(
    report: Reporter, base_url: str, media_path: str, env: Mapping[str, str]
) -> None:
    """Print a signed URL, a Range request's status and Content-Range, and an unsigned request."""
    signed = env.get("VOD_SIGNED_URLS", "false").lower() == "true"
    plain_url = f"{base_url}{media_path}"
    if signed:
        ttl = env.get("VOD_SIGNED_URL_TTL_SECONDS", "3600")
        url = sign(env, media_path, ttl, base_url)
        report.info(f"signed URL (vod-stream sign, ttl {ttl}s): {url}")
    else:
        url = plain_url
        report.info(f"signed URLs are off for this platform: {url}")
    status, headers, length = fetch(url, "bytes=0-1023")
    report.info(
        f"GET Range: bytes=0-1023 -> {status}, Content-Range: {headers.get('Content-Range')}, "
        f"Content-Length: {headers.get('Content-Length')}, "
        f"Content-Type: {headers.get('Content-Type')}"
    )
    if status != 206 or length != 1024:
        raise RuntimeError(f"expected 206 with 1024 bytes, got {status} with {length}")
    if signed:
        status, _, _ = fetch(plain_url, "bytes=0-1023")
        report.info(f"GET without a signature -> {status} (signed URLs are on)")
        if status != 403:
            raise RuntimeError(f"an unsigned request was answered {status}, expected 403")
    report.info(f"try it: curl -r 0-1023 -o /dev/null -sw '%{{http_code}}\\n' '{url}'")


# --------------------------------------------------------------------------- cluster steps


def local_cluster_up(report: Reporter, paths: Paths) -> KubeCluster:
    """Start (or reuse) the local control plane with `python -m localcluster up`."""
    out = subprocess.run(
        [sys.executable, "-m", "localcluster", "up", "--name", local_cluster_name()],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"localcluster up failed:\n{out.stdout}\n{out.stderr}")
    match = re.search(r"KUBECONFIG=(\S+)", out.stdout + out.stderr)
    if match is None:
        raise RuntimeError(f"localcluster up printed no KUBECONFIG:\n{out.stdout}")
    source = Path(match.group(1).strip("'\""))
    shutil.copyfile(source, paths.kubeconfig)
    report.info(f"local control plane up; kubeconfig {source} (copied to {paths.kubeconfig})")
    return KubeCluster(paths.kubeconfig)


def local_cluster_down() -> None:
    """Stop the local control plane."""
    subprocess.run(
        [sys.executable, "-m", "localcluster", "down", "--name", local_cluster_name()],
        check=False,
        timeout=300,
    )


def install_crds(report: Reporter, cluster: KubeCluster) -> None:
    """Apply crds/ (the same files the chart and kustomize install) and wait until Established."""
    for crd in project.crd_files():
        report.info(cluster.kubectl("apply", "--server-side", "-f", str(crd)).stdout.strip())
        name = yaml.safe_load(crd.read_text())["metadata"]["name"]
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    report.info("CRDs Established")


def start_operator(report: Reporter, paths: Paths, cluster: KubeCluster) -> None:
    """Run `python -m vod_operator` in the background against the cluster."""
    procs.stop(paths.pid("operator"))
    port = procs.free_port(8081)
    liveness = f"http://127.0.0.1:{port}/healthz"
    argv = [sys.executable, "-m", "vod_operator", "--liveness", liveness]
    procs.start(argv, cluster.env, paths.log("operator"), paths.pid("operator"))
    procs.wait_http(liveness, 90, alive=paths.pid("operator"))
    report.info(f"{' '.join(argv[1:])}  (KUBECONFIG={cluster.kubeconfig})")
    report.info(f"liveness {liveness} answers; log {paths.log('operator')}")


def apply_examples(report: Reporter, cluster: KubeCluster, docs: list[dict[str, Any]]) -> None:
    """kubectl apply -f examples/ and wait until every VideoPlatform in them is Ready."""
    report.info(cluster.kubectl("apply", "-f", str(project.EXAMPLES_DIR)).stdout.strip())
    for platform in example_platforms(docs):
        ref = f"vp/{platform.name}"
        report.info(f"kubectl wait --for=condition=Ready {ref} -n {platform.namespace}")
        cluster.kubectl(
            "wait",
            "--for=condition=Ready",
            ref,
            "-n",
            platform.namespace,
            f"--timeout={WAIT_TIMEOUT}",
        )
    report.info(cluster.kubectl("get", "vp", "-A").stdout.rstrip())


def local_stand_in(
    report: Reporter, paths: Paths, cluster: KubeCluster, platform: Platform
) -> tuple[LocalPod, dict[str, str]]:
    """Read what the operator rendered and prepare the local folders and environment from it."""
    deployment_name = f"{platform.name}-stream"
    deployment, configmaps, secrets = rendered_objects(cluster, platform.namespace, deployment_name)
    report.info(
        f"read Deployment {deployment_name}, ConfigMap(s) {', '.join(configmaps) or '-'}, "
        f"Secret(s) {', '.join(secrets) or '-'} from the API server"
    )
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in deployment["spec"]["template"]["spec"].get("volumes", [])
        if "persistentVolumeClaim" in v
    ]
    pod = local_pod(
        deployment,
        configmaps,
        secrets,
        paths.volumes / platform.name,
        container_name=STREAM_CONTAINER,
        pvc_dirs=dict.fromkeys(claims, paths.media),
        program_defaults={f"{PREFIX}{spec.name}": spec.default for spec in SPECS},
    )
    materialize(pod)
    describe_pod(report, pod)
    tmp = next((m.local for m in pod.mounts if m.mount_path.rstrip("/") == "/tmp"), None)
    return pod, process_env(pod, tmp)


def start_stream_server(report: Reporter, paths: Paths, pod: LocalPod, env: dict[str, str]) -> str:
    """Start the container's command locally (bound to 127.0.0.1); return its base URL."""
    procs.stop(paths.pid("stream"))
    port = procs.free_port(int(pod.env.get("VOD_PORT", "8080")))
    for key, (old, new) in host_adapted(pod, port).items():
        env[key] = new
        report.info(f"host adaptation: {key} {old} -> {new} (only 127.0.0.1 here)")
    argv = resolve_command(pod.command)
    procs.start(argv, env, paths.log("stream"), paths.pid("stream"))
    base_url = f"http://127.0.0.1:{port}"
    procs.wait_http(f"{base_url}/healthz", 60, alive=paths.pid("stream"))
    report.info(f"{' '.join(pod.command)} listening on {base_url}; log {paths.log('stream')}")
    return base_url


def up_local(report: Reporter, paths: Paths) -> None:
    """The local control plane path."""
    docs = list(example_documents())
    platform = example_platforms(docs)[0]
    report.step("Local control plane (kube-apiserver, etcd, controller-manager, scheduler, kwok)")
    cluster = local_cluster_up(report, paths)
    report.step("Install the CRD from crds/")
    install_crds(report, cluster)
    report.step("Run the operator as a local process (python -m vod_operator)")
    start_operator(report, paths, cluster)
    report.step(
        "Storage: the local control plane has no provisioner, so pre-bind a PersistentVolume"
    )
    paths.media.mkdir(parents=True, exist_ok=True)
    for namespace, claim in example_claims(docs):
        pv = hostpath_volume(namespace, claim, paths.media)
        cluster.kubectl("apply", "-f", "-", input=json.dumps(pv))
        report.info(
            f"PersistentVolume {pv['metadata']['name']} (hostPath {paths.media})"
            f" -> PersistentVolumeClaim {namespace}/{claim}"
        )
    report.step("Apply examples/ and wait until the VideoPlatforms are Ready")
    apply_examples(report, cluster, docs)
    report.step(f"Read what the operator rendered for {platform.namespace}/{platform.name}")
    pod, env = local_stand_in(report, paths, cluster, platform)
    report.step("Generate a test-pattern video with ffmpeg into the origin folder")
    media_root = Path(pod.env.get("VOD_MEDIA_ROOT", str(paths.media)))
    video = media.make_test_video(media_root / VIDEO_NAME)
    report.info(f"{video} ({video.stat().st_size} bytes, H.264/AAC MP4, faststart)")
    report.step("Start the streaming server locally with that configuration")
    base_url = start_stream_server(report, paths, pod, env)
    report.step("Stream the video")
    stream_and_show(report, base_url, f"/{VIDEO_NAME}", env)
    summary(report, paths, cluster, platform)


def up_kind(report: Reporter, paths: Paths) -> None:
    """The kind path (the Makefile has run kind-up, image, kind-load and deploy)."""
    name = os.environ.get("KIND_CLUSTER", "vod")
    docs = list(example_documents())
    platform = example_platforms(docs)[0]
    report.step(f"kind cluster {name}: kubeconfig, operator deployed in-cluster")
    kubeconfig = subprocess.run(
        ["kind", "get", "kubeconfig", "--name", name], capture_output=True, text=True, check=True
    ).stdout
    paths.kubeconfig.write_text(kubeconfig)
    cluster = KubeCluster(paths.kubeconfig)
    report.info(cluster.kubectl("-n", "vod-operator-system", "get", "deploy,pods").stdout.rstrip())
    report.step("Apply examples/ and wait until the VideoPlatforms are Ready")
    apply_examples(report, cluster, docs)
    report.step(f"Copy a test-pattern video into a {platform.name} streaming pod")
    pods = get_json(
        cluster,
        "pods",
        "-n",
        platform.namespace,
        "-l",
        f"app.kubernetes.io/instance={platform.name}",
    )["items"]
    ready = [p for p in pods if p["status"].get("phase") == "Running"]
    if not ready:
        raise RuntimeError(f"no running pod of {platform.name}")
    pod_name = ready[0]["metadata"]["name"]
    video = media.make_test_video(paths.root / VIDEO_NAME)
    copy = "import shutil,sys; shutil.copyfileobj(sys.stdin.buffer, open(sys.argv[1], 'wb'))"
    subprocess.run(
        ["kubectl", "exec", "-i", "-n", platform.namespace, pod_name, "-c", STREAM_CONTAINER, "--",
         "python", "-c", copy, f"/media/{VIDEO_NAME}"],
        stdin=video.open("rb"), env=cluster.env, check=True, timeout=120,
    )  # fmt: skip
    report.info(f"{video} -> {pod_name}:/media/{VIDEO_NAME}")
    report.step(f"kubectl port-forward to {pod_name}")
    port = procs.free_port(8080)
    procs.stop(paths.pid("port-forward"))
    procs.start(
        ["kubectl", "port-forward", "-n", platform.namespace, f"pod/{pod_name}", f"{port}:8080"],
        cluster.env,
        paths.log("port-forward"),
        paths.pid("port-forward"),
    )
    base_url = f"http://127.0.0.1:{port}"
    procs.wait_http(f"{base_url}/healthz", 60, alive=paths.pid("port-forward"))
    report.step("Stream the video (signing with the key the operator generated)")
    pod, env = local_stand_in(report, paths, cluster, platform)
    del pod
    stream_and_show(report, base_url, f"/{VIDEO_NAME}", env)
    summary(report, paths, cluster, platform)


def summary(report: Reporter, paths: Paths, cluster: KubeCluster, platform: Platform) -> None:
    """What is running now and how to look at it."""
    report.step("Done. Look around:")
    report.info(f"export KUBECONFIG={cluster.kubeconfig}")
    report.info("kubectl get vp -A")
    report.info(f"kubectl -n {platform.namespace} describe vp {platform.name}")
    report.info(f"kubectl -n {platform.namespace} get deploy,svc,cm,secret,hpa,pdb,ingress")
    report.info(f"logs: {paths.root}/*.log     stop everything: make demo-down")


def up(kind: bool, root: Path = project.DEMO_DIR) -> int:
    """Run the demo; 0 on success."""
    paths = Paths(root)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.mode.write_text("kind\n" if kind else "local\n")
    report = Reporter()
    started = time.monotonic()
    try:
        (up_kind if kind else up_local)(report, paths)
    except (OSError, http.client.HTTPException, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        for name in ("operator", "stream", "port-forward"):
            log = paths.log(name)
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"--- last lines of {log}:\n" + "\n".join(tail), file=sys.stderr)
        return 1
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s", flush=True)
    return 0


def down(root: Path = project.DEMO_DIR) -> int:
    """Stop the stream server, port-forward, operator and cluster; remove the state folder."""
    paths = Paths(root)
    mode = paths.mode.read_text().strip() if paths.mode.exists() else "local"
    for name in ("stream", "port-forward", "operator"):
        if procs.stop(paths.pid(name)):
            print(f"stopped {name}")
    if mode == "kind":
        cluster = os.environ.get("KIND_CLUSTER", "vod")
        subprocess.run(["kind", "delete", "cluster", "--name", cluster], check=False)
    else:
        local_cluster_down()
    if paths.root.exists():
        shutil.rmtree(paths.root)
        print(f"removed {paths.root}")
    return 0
