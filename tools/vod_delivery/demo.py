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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from localcluster.handle import KubeCluster
from vod_delivery import media, procs, project
from vod_delivery.examples import (
    Platform,
    example_claims,
    example_documents,
    example_platforms,
    hostpath_volume,
)
from vod_delivery.playback import stream_and_show
from vod_delivery.podlocal import LocalPod, local_pod
from vod_delivery.report import Reporter
from vod_delivery.standin import (
    describe_pod,
    get_json,
    host_adapted,
    materialize,
    process_env,
    rendered_objects,
    resolve_command,
)
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
    report.info(f"python {' '.join(argv[1:])}  (KUBECONFIG={cluster.kubeconfig})")
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
    ready = [
        p
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    ]
    if not ready:
        raise RuntimeError(f"no ready pod of {platform.name}")
    pod_name = ready[0]["metadata"]["name"]
    video = media.make_test_video(paths.root / VIDEO_NAME)
    copy = "import shutil,sys; shutil.copyfileobj(sys.stdin.buffer, open(sys.argv[1], 'wb'))"
    with video.open("rb") as data:
        subprocess.run(
            ["kubectl", "exec", "-i", "-n", platform.namespace, pod_name, "-c", STREAM_CONTAINER,
             "--", "python", "-c", copy, f"/media/{VIDEO_NAME}"],
            stdin=data, env=cluster.env, check=True, timeout=120,
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
