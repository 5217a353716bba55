"""`make demo`: a cluster, the operator in-cluster, the examples Ready with real pods, a video
uploaded through the platform's own API and streamed back with a signed Range request.

Two clusters, one story:

- local (no Docker engine answers): `python -m localcluster up` starts the control plane and a
  real node (containerd, kubelet, kube-proxy, CoreDNS) with the project's images built offline
  and loaded into the node; the demo then installs the monitoring stack (localcluster.monitoring:
  the Prometheus Operator and a Prometheus) and deploys the operator with kustomize;
- kind (a Docker engine answers): the Makefile has created the cluster, built and loaded the images
  and deployed the operator.

From there both paths are the same: `kubectl apply -f examples/`, wait for Ready, a
`kubectl port-forward` to the showcase platform's Service, a PUT of a test video with a JWT made
from the example's key, a URL signed inside a streaming pod (`vod-stream sign`), a Range request.

State lives in `.demo/` (git-ignored); `make demo-down` stops what was started and removes it.
"""

from __future__ import annotations

import base64
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
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
from vod_delivery.report import Reporter

VIDEO_NAME = "demo.mp4"
WAIT_TIMEOUT = "300s"
OPERATOR_NAMESPACE = "vod-operator-system"
#: The overlay for clusters whose nodes already hold the images (kind-load, the local node).
PRELOADED_OVERLAY = project.MANIFESTS_DIR / "overlays" / "kind"
#: The streaming pods run as this user; a hostPath origin must be writable by it.
STREAM_UID = 10001
#: The demo's own local cluster (tests and `make cluster-up` use other names);
#: VOD_DEMO_CLUSTER overrides it.
LOCAL_CLUSTER_NAME = "vod-demo"


def local_cluster_name() -> str:
    """Name of the local cluster the demo starts and stops."""
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

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def pid(self, name: str) -> Path:
        return self.root / f"{name}.pid"


# --------------------------------------------------------------------------- cluster steps


def local_cluster_up(report: Reporter, paths: Paths) -> KubeCluster:
    """Start (or reuse) the local cluster, real node and images included."""
    out = subprocess.run(
        [sys.executable, "-m", "localcluster", "up", "--name", local_cluster_name()],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if out.returncode != 0:
        raise RuntimeError(f"localcluster up failed:\n{out.stdout}\n{out.stderr}")
    for line in out.stderr.splitlines():
        if "loaded" in line or "Ready after" in line or "up in" in line or "built" in line:
            report.info(line.removeprefix("localcluster: "))
    match = re.search(r"KUBECONFIG=(\S+)", out.stdout + out.stderr)
    if match is None:
        raise RuntimeError(f"localcluster up printed no KUBECONFIG:\n{out.stdout}")
    source = Path(match.group(1).strip("'\""))
    shutil.copyfile(source, paths.kubeconfig)
    report.info(f"kubeconfig {source} (copied to {paths.kubeconfig})")
    return KubeCluster(paths.kubeconfig)


def local_cluster_down() -> None:
    """Stop the local cluster (and put the host back as it was)."""
    subprocess.run(
        [sys.executable, "-m", "localcluster", "down", "--name", local_cluster_name()],
        check=False,
        timeout=300,
    )


def deploy_operator(report: Reporter, cluster: KubeCluster) -> None:
    """`kubectl apply --server-side -k` the overlay for preloaded images, then wait for it."""
    report.info(f"kubectl apply --server-side -k {PRELOADED_OVERLAY.relative_to(project.ROOT)}")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(PRELOADED_OVERLAY))
    cluster.kubectl(
        "-n",
        OPERATOR_NAMESPACE,
        "rollout",
        "status",
        "deployment/vod-operator",
        f"--timeout={WAIT_TIMEOUT}",
        timeout=400,
    )
    report.info(cluster.kubectl("-n", OPERATOR_NAMESPACE, "get", "deploy,pods").stdout.rstrip())


def provide_volumes(report: Reporter, paths: Paths, cluster: KubeCluster) -> None:
    """The local cluster has no storage provisioner: pre-bind a hostPath PersistentVolume (a
    folder the streaming pods' user owns) to each claim of the examples."""
    paths.media.mkdir(parents=True, exist_ok=True)
    os.chown(paths.media, STREAM_UID, STREAM_UID)
    for namespace, claim in example_claims(list(example_documents())):
        pv = hostpath_volume(namespace, claim, paths.media)
        cluster.kubectl("apply", "-f", "-", input=json.dumps(pv))
        report.info(
            f"PersistentVolume {pv['metadata']['name']} (hostPath {paths.media})"
            f" -> PersistentVolumeClaim {namespace}/{claim}"
        )


def apply_examples(report: Reporter, cluster: KubeCluster) -> list[Platform]:
    """kubectl apply -f examples/ and wait until every VideoPlatform in them is Ready."""
    report.info(cluster.kubectl("apply", "-f", str(project.EXAMPLES_DIR)).stdout.strip())
    platforms = example_platforms(list(example_documents()))
    for platform in platforms:
        ref = f"vp/{platform.name}"
        report.info(f"kubectl wait --for=condition=Ready {ref} -n {platform.namespace}")
        cluster.kubectl(
            "wait",
            "--for=condition=Ready",
            ref,
            "-n",
            platform.namespace,
            f"--timeout={WAIT_TIMEOUT}",
            timeout=400,
        )
    report.info(cluster.kubectl("get", "vp", "-A").stdout.rstrip())
    pods = cluster.kubectl("get", "pods", "-A", "-o", "wide", "-l", "app.kubernetes.io/part-of")
    report.info(pods.stdout.rstrip())
    return platforms


# --------------------------------------------------------------------------- playback steps


def port_forward(paths: Paths, cluster: KubeCluster, platform: Platform) -> str:
    """`kubectl port-forward svc/<platform>-stream` on a free local port; its base URL."""
    port = procs.free_port(8080)
    procs.stop(paths.pid("port-forward"))
    argv = ["kubectl", "port-forward", "-n", platform.namespace, f"svc/{platform.name}-stream",
            f"{port}:8080"]  # fmt: skip
    procs.start(argv, cluster.env, paths.log("port-forward"), paths.pid("port-forward"))
    base_url = f"http://127.0.0.1:{port}"
    procs.wait_http(f"{base_url}/healthz", 60, alive=paths.pid("port-forward"))
    return base_url


def upload_token(cluster: KubeCluster, platform: Platform) -> str:
    """A short-lived upload JWT made from the platform's JWT settings and the example's key
    (`spec.security.jwt`: the Secret, issuer and audience the streaming server checks)."""
    vp = json.loads(
        cluster.kubectl("get", "vp", platform.name, "-n", platform.namespace, "-o", "json").stdout
    )
    settings = vp["spec"]["security"]["jwt"]
    if settings.get("keyType", "SharedSecret") != "SharedSecret":
        raise RuntimeError("the demo signs upload tokens with a shared secret (keyType)")
    secret = json.loads(
        cluster.kubectl(
            "get", "secret", settings["secretName"], "-n", platform.namespace, "-o", "json"
        ).stdout
    )
    key = base64.b64decode(secret["data"][settings.get("secretKey", "key")])
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "vod-demo", "iat": now, "exp": now + 600}
    for claim in ("issuer", "audience"):
        if settings.get(claim):
            claims[claim[:3]] = settings[claim]
    return jwt.encode(claims, key, algorithm="HS256")


def upload(report: Reporter, base_url: str, video: Path, token: str) -> None:
    """PUT the video through the platform's upload API."""
    request = urllib.request.Request(
        f"{base_url}/{VIDEO_NAME}",
        data=video.read_bytes(),
        method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "video/mp4"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"upload answered {exc.code}: {exc.read()[:300]!r}") from None
    report.info(f"PUT /{VIDEO_NAME} ({video.stat().st_size} bytes, Bearer JWT HS256) -> {status}")


def signer(cluster: KubeCluster, platform: Platform) -> Any:
    """Sign inside a streaming pod with its own mounted key: `kubectl exec ... vod-stream sign`."""

    def sign(path: str, ttl: str, base_url: str) -> str:
        out = cluster.kubectl(
            "exec", "-n", platform.namespace, f"deploy/{platform.name}-stream", "-c", "stream",
            "--", "vod-stream", "sign", path, "--ttl", ttl, "--base-url", base_url,
        )  # fmt: skip
        return out.stdout.strip().splitlines()[-1]

    return sign


def stream(
    report: Reporter,
    paths: Paths,
    cluster: KubeCluster,
    platforms: list[Platform],
    monitoring_lines: list[str],
) -> None:
    """Upload a test video to the platform that takes uploads and play it back signed."""
    platform = next((p for p in platforms if p.uploads and p.signed_urls), None)
    if platform is None:
        raise RuntimeError("no example VideoPlatform with JWT uploads and signed URLs")
    report.step(f"kubectl port-forward svc/{platform.name}-stream (namespace {platform.namespace})")
    base_url = port_forward(paths, cluster, platform)
    report.info(f"{base_url} -> Service {platform.name}-stream:8080")
    report.step("Upload a test-pattern video through the platform's upload API")
    video = media.make_test_video(paths.root / VIDEO_NAME)
    upload(report, base_url, video, upload_token(cluster, platform))
    report.step("Stream it: a URL signed in a streaming pod, then a Range request")
    ttl = str(platform.signed_url_ttl)
    stream_and_show(report, base_url, f"/{VIDEO_NAME}", signer(cluster, platform), ttl)
    summary(report, paths, cluster, platform, monitoring_lines)


def install_monitoring(report: Reporter) -> list[str]:
    """The Prometheus Operator and a Prometheus in the local cluster; the lines to look at it.

    Through the cluster's own handle (its state folder holds the real node's containerd, where
    the stack's images are imported), not the demo's copy of the kubeconfig."""
    from localcluster import cluster, monitoring
    from localcluster.paths import clusters_dir

    up = cluster.running(clusters_dir() / local_cluster_name())
    if up is None:
        raise RuntimeError(f"the local cluster {local_cluster_name()!r} stopped")
    installed = monitoring.install(KubeCluster(kubeconfig=up.kubeconfig, server=up.server))
    report.info(f"Prometheus ready in {installed.seconds:.0f} s at {installed.prometheus.url}")
    return [installed.port_forward, installed.try_query]


def summary(
    report: Reporter,
    paths: Paths,
    cluster: KubeCluster,
    platform: Platform,
    monitoring_lines: list[str],
) -> None:
    """What is running now and how to look at it."""
    report.step("Done. Look around:")
    report.info(f"export KUBECONFIG={cluster.kubeconfig}")
    report.info("kubectl get nodes -o wide; kubectl get vp,pods -A")
    report.info(f"kubectl -n {platform.namespace} describe vp {platform.name}")
    report.info(f"kubectl -n {platform.namespace} get deploy,svc,cm,secret,hpa,pdb,ingress")
    for line in monitoring_lines:
        report.info(line)
    report.info(f"logs: {paths.root}/*.log     stop everything: make demo-down")


# --------------------------------------------------------------------------- entry points


def up_local(report: Reporter, paths: Paths) -> None:
    report.step("Local cluster: control plane and a real node, images built offline and loaded")
    cluster = local_cluster_up(report, paths)
    report.info(cluster.kubectl("get", "nodes", "-o", "wide").stdout.rstrip())
    report.step("Monitoring: the Prometheus Operator and a Prometheus (images composed locally)")
    monitoring_lines = install_monitoring(report)
    report.step("Deploy the operator in-cluster (CRDs, RBAC, Deployment) with kustomize")
    deploy_operator(report, cluster)
    report.step("Storage: the local cluster has no provisioner, so pre-bind a PersistentVolume")
    provide_volumes(report, paths, cluster)
    report.step("Apply examples/ and wait until the VideoPlatforms are Ready (real pods)")
    platforms = apply_examples(report, cluster)
    stream(report, paths, cluster, platforms, monitoring_lines)


def up_kind(report: Reporter, paths: Paths) -> None:
    """The kind path (the Makefile has run kind-up, image, kind-load and deploy)."""
    name = os.environ.get("KIND_CLUSTER", "vod")
    report.step(f"kind cluster {name}: kubeconfig, operator deployed in-cluster")
    kubeconfig = subprocess.run(
        ["kind", "get", "kubeconfig", "--name", name], capture_output=True, text=True, check=True
    ).stdout
    paths.kubeconfig.write_text(kubeconfig)
    cluster = KubeCluster(paths.kubeconfig)
    report.info(cluster.kubectl("-n", OPERATOR_NAMESPACE, "get", "deploy,pods").stdout.rstrip())
    report.step("Apply examples/ and wait until the VideoPlatforms are Ready")
    platforms = apply_examples(report, cluster)
    stream(report, paths, cluster, platforms, [])


def up(kind: bool, root: Path = project.DEMO_DIR) -> int:
    """Run the demo; 0 on success."""
    paths = Paths(root)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.mode.write_text("kind\n" if kind else "local\n")
    report = Reporter()
    started = time.monotonic()
    try:
        (up_kind if kind else up_local)(report, paths)
    except (
        OSError,
        http.client.HTTPException,
        RuntimeError,
        subprocess.CalledProcessError,
        yaml.YAMLError,
    ) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        log = paths.log("port-forward")
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-15:]
            print(f"--- last lines of {log}:\n" + "\n".join(tail), file=sys.stderr)
        return 1
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s", flush=True)
    return 0


def down(root: Path = project.DEMO_DIR) -> int:
    """Stop the port-forward and the cluster; remove the state folder."""
    paths = Paths(root)
    mode = paths.mode.read_text().strip() if paths.mode.exists() else "local"
    if procs.stop(paths.pid("port-forward")):
        print("stopped port-forward")
    if mode == "kind":
        cluster = os.environ.get("KIND_CLUSTER", "vod")
        subprocess.run(["kind", "delete", "cluster", "--name", cluster], check=False)
    else:
        local_cluster_down()
    if paths.root.exists():
        shutil.rmtree(paths.root)
        print(f"removed {paths.root}")
    return 0
