"""`make demo`: a cluster, the operator in-cluster, the examples Ready with real pods, a video
uploaded through the platform's own API and streamed back with a signed Range request.

Two clusters, one story:

- local (no Docker engine answers): `python -m localcluster up` starts the control plane and a
  real node (containerd, kubelet, kube-proxy, CoreDNS) with the project's images built offline
  and loaded into the node; the demo then deploys the operator with kustomize while it installs
  the monitoring stack beside the next phases (localcluster.monitoring: the Prometheus Operator
  and a Prometheus; in a thread, joined before the summary that prints how to reach it);
- kind (a Docker engine answers): a kind cluster with the images docker-built and kind-loaded, and
  the operator deployed with the same overlay.

From there both paths are the same: `kubectl apply -f examples/`, wait for Ready, a
`kubectl port-forward` to the showcase platform's Service, a PUT of a test video with a JWT made
from the example's key, a URL signed inside a streaming pod (`vod-stream sign`), a Range request;
then a VideoAsset made from the upload, watched until Ready (phase and progress as they change),
a player URL signed in a streaming pod for the asset's prefix, its master playlist checked, the
player played in Chromium (when installed; a screenshot lands in docs/demo-player.png), and the
player URL printed last, the port-forward kept up so a person opens it. Each phase is timed.

- local (no Docker engine answers): the demo builds what it runs and nothing else (no S3 server:
  only the tests use it): `python -m localcluster images --no-s3-server`, then `up`;
- kind: `make kind-up` when the cluster is missing, `make image kind-load`, then the operator.

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import yaml

from localcluster.handle import KubeCluster
from vod_delivery import asset, media, procs, project
from vod_delivery.examples import (
    Platform,
    example_claims,
    example_documents,
    example_platforms,
    hostpath_volume,
)
from vod_delivery.playback import check_in_browser, check_master, stream_and_show
from vod_delivery.report import Reporter

VIDEO_NAME = "demo.mp4"
#: Long enough for the player check (play 3 s, seek to the middle, play on, switch rendition).
VIDEO_SECONDS = 12
#: Where the browser check saves the player's picture (the README shows it).
SCREENSHOT = project.ROOT / "docs" / "demo-player.png"
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


def localcluster(report: Reporter, *args: str, show: Callable[[str], bool]) -> str:
    """`python -m localcluster ARGS`, its lines that `show` picks printed as they come (a cold
    image build takes minutes: the reader sees what it does); all of its output."""
    argv = [sys.executable, "-m", "localcluster", *args]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if show(line):
                report.info(line.rstrip().removeprefix("localcluster: "))
    out = "".join(lines)
    if process.returncode != 0:
        raise RuntimeError(f"localcluster {args[0]} failed:\n{out}")
    return out


def local_images(report: Reporter) -> None:
    """Build (or reuse, by content hash) the images the node runs: pause, the streaming and
    operator images; not the S3 server's, which only the tests run."""
    localcluster(report, "images", "--no-s3-server", show=lambda line: True)


def local_cluster_up(report: Reporter, paths: Paths) -> KubeCluster:
    """Start (or reuse) the local cluster and its real node, the images imported into it."""
    shown = ("loaded", "Ready after", "up in", "built", "already running")
    out = localcluster(
        report,
        "up",
        "--name",
        local_cluster_name(),
        "--no-s3-server",
        show=lambda line: any(word in line for word in shown),
    )
    match = re.search(r"KUBECONFIG=(\S+)", out)
    if match is None:
        raise RuntimeError(f"localcluster up printed no KUBECONFIG:\n{out}")
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


def exec_sign(cluster: KubeCluster, platform: Platform, *args: str) -> str:
    """`vod-stream sign ARGS` inside a streaming pod, with the key the operator mounted there."""
    out = cluster.kubectl(
        "exec", "-n", platform.namespace, f"deploy/{platform.name}-stream", "-c", "stream",
        "--", "vod-stream", "sign", *args,
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


def signer(cluster: KubeCluster, platform: Platform) -> Any:
    """Sign inside a streaming pod with its own mounted key: `kubectl exec ... vod-stream sign`."""

    def sign(path: str, ttl: str, base_url: str) -> str:
        return exec_sign(cluster, platform, path, "--ttl", ttl, "--base-url", base_url)

    return sign


@dataclass(frozen=True)
class Watch:
    """How to watch the demo's asset once the demo has ended."""

    platform: Platform
    base_url: str
    player_url: str


def upload_platform(platforms: list[Platform]) -> Platform:
    """The example platform that takes uploads and signs URLs (`showcase`)."""
    platform = next((p for p in platforms if p.uploads and p.signed_urls), None)
    if platform is None:
        raise RuntimeError("no example VideoPlatform with JWT uploads and signed URLs")
    return platform


def stream(report: Reporter, paths: Paths, cluster: KubeCluster, platform: Platform) -> str:
    """Upload a test video to the platform that takes uploads and play it back signed with a
    Range request; the port-forward's base URL."""
    with report.phase("upload"):
        step = f"kubectl port-forward svc/{platform.name}-stream (namespace {platform.namespace})"
        report.step(step)
        base_url = port_forward(paths, cluster, platform)
        report.info(f"{base_url} -> Service {platform.name}-stream:8080")
        report.step("Upload a test-pattern video through the platform's upload API")
        video = media.make_test_video(paths.root / VIDEO_NAME, seconds=VIDEO_SECONDS)
        upload(report, base_url, video, upload_token(cluster, platform))
    with report.phase("range"):
        report.step("Stream it: a URL signed in a streaming pod, then a Range request")
        ttl = str(platform.signed_url_ttl)
        stream_and_show(report, base_url, f"/{VIDEO_NAME}", signer(cluster, platform), ttl)
    return base_url


def package(report: Reporter, cluster: KubeCluster, platform: Platform) -> dict[str, Any]:
    """A VideoAsset from the uploaded video, watched until Ready."""
    report.step(f"VideoAsset {asset.NAME}: the operator's Job packages the upload into HLS")
    manifest = asset.manifest(platform.namespace, platform.name, VIDEO_NAME)
    rungs = ", ".join(r["name"] for r in manifest["spec"]["renditions"])
    report.info(cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest)).stdout.strip())
    report.info(f"source.path {VIDEO_NAME} on platform {platform.name}; renditions {rungs}")
    va = asset.wait_ready(report, cluster, platform.namespace)
    status = va["status"]
    source = status.get("media", {})
    rungs = ", ".join(
        f"{r['name']} {r.get('resolution')} {r.get('state')}" for r in status.get("renditions", [])
    )
    report.info(
        f"source {source.get('width')}x{source.get('height')}, {source.get('duration')} s; "
        f"renditions: {rungs}"
    )
    report.info(cluster.kubectl("get", "va", "-n", platform.namespace).stdout.rstrip())
    return va


def play(
    report: Reporter,
    paths: Paths,
    cluster: KubeCluster,
    platform: Platform,
    base_url: str,
    va: dict[str, Any],
    screenshot: Path | None,
) -> str:
    """Sign a player URL for the asset's prefix in a streaming pod, check the master playlist
    and, with Chromium, that it plays; the player URL."""
    prefix = asset.prefix(platform.namespace)
    ttl = str(platform.signed_url_ttl)
    report.step(f"Watch it: a player URL for {prefix} signed in a streaming pod")
    report.info(
        f"kubectl exec deploy/{platform.name}-stream -c stream -- "
        f"vod-stream sign --prefix {prefix} --player --ttl {ttl}"
    )
    player_url = exec_sign(
        cluster, platform, "--prefix", prefix, "--player", "--ttl", ttl, "--base-url", base_url
    )
    ready = [r for r in va["status"].get("renditions", []) if r.get("state") == "Ready"]
    check_master(report, player_url, len(ready))
    check_in_browser(report, player_url, paths.root, screenshot)
    return player_url


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


def monitoring_beside(report: Reporter) -> Callable[[], list[str]]:
    """Install monitoring in a thread, beside the phases that follow (it needs only the cluster,
    and nothing before the summary needs it); returns the wait for its lines (re-raising its
    error)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitoring")

    def timed() -> list[str]:
        with report.phase("monitoring (beside the next phases)"):
            return install_monitoring(report)

    future = pool.submit(timed)
    pool.shutdown(wait=False)
    return future.result


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
    report.info("kubectl get nodes -o wide; kubectl get vp,va,pods -A")
    report.info(f"kubectl -n {platform.namespace} describe vp {platform.name}")
    report.info(f"kubectl -n {platform.namespace} describe va {asset.NAME}")
    report.info(f"kubectl -n {platform.namespace} get deploy,svc,cm,secret,hpa,pdb,ingress,jobs")
    for line in monitoring_lines:
        report.info(line)
    report.info(f"logs: {paths.root}/*.log     stop everything: make demo-down")


def watch_lines(watch: Watch) -> list[str]:
    """The demo's last words: the player URL to open, and what keeps it answering."""
    return [
        "",
        f"Open the player (signed for {watch.platform.signed_url_ttl} s; the port-forward "
        f"{watch.base_url} -> svc/{watch.platform.name}-stream stays up until `make demo-down`):",
        "",
        f"    {watch.player_url}",
        "",
    ]


# --------------------------------------------------------------------------- entry points


def to_the_player(
    report: Reporter,
    paths: Paths,
    cluster: KubeCluster,
    monitoring_lines: Callable[[], list[str]],
    screenshot: Path | None,
    *,
    prebind_volumes: bool,
) -> Watch:
    """From the examples to a playing asset: the part both paths share (`monitoring_lines` waits
    for what a step run beside it prints at the end)."""
    with report.phase("examples Ready"):
        if prebind_volumes:
            report.step("Storage: the local cluster has no provisioner, so pre-bind a volume")
            provide_volumes(report, paths, cluster)
        report.step("Apply examples/ and wait until the VideoPlatforms are Ready (real pods)")
        platform = upload_platform(apply_examples(report, cluster))
    base_url = stream(report, paths, cluster, platform)
    with report.phase("asset Ready"):
        va = package(report, cluster, platform)
    with report.phase("player"):
        player_url = play(report, paths, cluster, platform, base_url, va, screenshot)
    with report.phase("monitoring (wait)"):
        lines = monitoring_lines()
    summary(report, paths, cluster, platform, lines)
    return Watch(platform, base_url, player_url)


def up_local(report: Reporter, paths: Paths, screenshot: Path | None) -> Watch:
    with report.phase("images"):
        report.step("Images: pause, vod-stream, vod-operator, built offline (cached by content)")
        local_images(report)
    with report.phase("cluster"):
        report.step("Local cluster: control plane and a real node, the images loaded")
        cluster = local_cluster_up(report, paths)
        report.info(cluster.kubectl("get", "nodes", "-o", "wide").stdout.rstrip())
    report.step(
        "Monitoring: the Prometheus Operator and a Prometheus (images composed locally), "
        "installed beside the next phases"
    )
    monitoring_lines = monitoring_beside(report)
    with report.phase("operator"):
        report.step("Deploy the operator in-cluster (CRDs, RBAC, Deployment) with kustomize")
        deploy_operator(report, cluster)
    return to_the_player(report, paths, cluster, monitoring_lines, screenshot, prebind_volumes=True)


def make(*targets: str) -> None:
    """`make TARGETS` in the repository (the kind path's cluster and images)."""
    subprocess.run(["make", "--no-print-directory", *targets], cwd=project.ROOT, check=True)


def up_kind(report: Reporter, paths: Paths, screenshot: Path | None) -> Watch:
    """The kind path: the same phases, the cluster and images made with kind and docker."""
    name = os.environ.get("KIND_CLUSTER", "vod")
    with report.phase("cluster"):
        report.step(f"kind cluster {name}")
        clusters = subprocess.run(
            ["kind", "get", "clusters"], capture_output=True, text=True, check=False
        ).stdout.split()
        if name in clusters:
            report.info(f"kind cluster {name} exists")
        else:
            make("kind-up", f"KIND_CLUSTER={name}")
        kubeconfig = subprocess.run(
            ["kind", "get", "kubeconfig", "--name", name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        paths.kubeconfig.write_text(kubeconfig)
        cluster = KubeCluster(paths.kubeconfig)
    with report.phase("images"):
        report.step("Images: docker build vod-stream and vod-operator, kind load them")
        make("image", "kind-load", f"KIND_CLUSTER={name}")
    with report.phase("operator"):
        report.step("Deploy the operator in-cluster (CRDs, RBAC, Deployment) with kustomize")
        deploy_operator(report, cluster)
    return to_the_player(report, paths, cluster, list, screenshot, prebind_volumes=False)


def up(kind: bool, root: Path = project.DEMO_DIR, screenshot: Path | None = SCREENSHOT) -> int:
    """Run the demo; 0 on success. It ends with the player URL, the port-forward left up."""
    paths = Paths(root)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.mode.write_text("kind\n" if kind else "local\n")
    report = Reporter()
    try:
        watch = (up_kind if kind else up_local)(report, paths, screenshot)
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
    report.step("Time per phase")
    report.info("\n".join(report.timings()))
    print(f"\ndemo finished in {report.elapsed():.0f}s", flush=True)
    print("\n".join(watch_lines(watch)), flush=True)
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
