"""An S3-backed VideoPlatform on the local cluster's real node: SeaweedFS runs in-cluster from
`manifests/dev/seaweedfs` (its image built offline by `make images-local`), the platform reads it
through the slice cache of each pod, and uploads through the platform land in the bucket.

Requests go from the host straight to ClusterIPs and pod IPs (the node's routes make them
reachable), so these scenarios need this project's local cluster (`local_control_plane`).
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import obstore
import pytest
from obstore.store import S3Store

from tests.cluster.conftest import Namespace, OperatorProcess
from tests.cluster.podclient import pattern, run_client_pod
from tests.cluster.test_operator import platform, wait_ready
from tests.cluster.test_real_pods import all_pods_ready, stream_pods
from vod_operator.naming import DEFAULT_IMAGE

pytestmark = [pytest.mark.cluster, pytest.mark.local_control_plane, pytest.mark.real_node]

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "media"
PREFIX = "library/"
CLIP = "clips/pattern.bin"
CLIP_SIZE = 6 * 1024 * 1024 + 12345  # not a whole number of 1 MiB slices
JWT_KEY = "an-s3-scenario-hmac-key-of-32-bytes!"
ACCESS_KEY = "vod-dev-access-key"  # manifests/dev/seaweedfs/secret.yaml
SECRET_KEY = "vod-dev-secret-key-change-me"


@pytest.fixture
def seaweedfs(namespace: Namespace) -> Iterator[str]:
    """SeaweedFS in the namespace, as a user applies it; yields its S3 endpoint (ClusterIP)."""
    namespace.kubectl("apply", "-k", str(ROOT / "manifests" / "dev" / "seaweedfs"))
    namespace.kubectl("rollout", "status", "deploy/seaweedfs", "--timeout=180s", timeout=200)
    ip = namespace.get("service", "seaweedfs")["spec"]["clusterIP"]
    yield f"http://{ip}:8333"
    namespace.kubectl("delete", "vp", "--all", "--wait=true", "--timeout=60s", check=False)


def bucket(endpoint: str) -> S3Store:
    return S3Store(
        BUCKET,
        config={
            "endpoint": endpoint,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            "region": "us-east-1",
            "virtual_hosted_style_request": False,
        },
        client_options={"allow_http": True},
    )


def s3_platform(name: str, replicas: int = 2, extra: str = "", signed: bool = False) -> str:
    signed_urls = "\n      signedUrls: {enabled: true}" if signed else ""
    spec = (
        f"""
    replicas: {replicas}
    cache: {{enabled: true, size: 256Mi, sliceSize: 1Mi}}
    security:
      jwt: {{secretName: {name}-jwt, secretKey: key, keyType: SharedSecret}}{signed_urls}
    """
        + extra
    )
    origin = (
        "    s3:\n"
        "      endpoint: http://seaweedfs:8333\n"
        f"      bucket: {BUCKET}\n"
        f"      prefix: {PREFIX}\n"
        "      credentialsSecret: {name: seaweedfs-s3, accessKeyIdKey: access_key_id,"
        " secretAccessKeyKey: secret_access_key}\n"
    )
    return platform(name, spec).replace("    emptyDir: {}\n", origin)


def get(host: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(host, 8080, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def cache_counters(pod_ip: str) -> dict[str, float]:
    """The pod's `vod_cache_*` and `vod_origin_*` samples, by series."""
    _, _, body = get(pod_ip, "/metrics")
    samples: dict[str, float] = {}
    for line in body.decode().splitlines():
        match = re.match(r"^(vod_(?:cache|origin)_[a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def test_an_s3_backed_platform_serves_ranges_through_its_slice_cache(
    operator: OperatorProcess, namespace: Namespace, seaweedfs: str
) -> None:
    clip = pattern(CLIP_SIZE)
    obstore.put(bucket(seaweedfs), PREFIX + CLIP, clip)
    namespace.kubectl("create", "secret", "generic", "lib-jwt", f"--from-literal=key={JWT_KEY}")
    namespace.apply(s3_platform("lib"))
    wait_ready(namespace, "lib", timeout=180)
    all_pods_ready(namespace, "lib")
    config = namespace.get("configmap", "lib-stream-config")["data"]
    assert config["VOD_ORIGIN"] == "s3"
    assert ACCESS_KEY not in json.dumps(config)  # credentials are files, not ConfigMap values
    service = namespace.get("service", "lib-stream")["spec"]["clusterIP"]

    # a far-offset Range through the Service: the bytes of the object in the bucket
    status, headers, body = get(service, f"/{CLIP}", {"Range": "bytes=5000000-5065535"})
    print(f"S3 origin via Service: {status}, Content-Range: {headers.get('Content-Range')}")
    assert status == 206
    assert headers["Content-Range"] == f"bytes 5000000-5065535/{CLIP_SIZE}"
    assert body == clip[5000000:5065536]
    assert headers.get("ETag")
    assert get(service, "/clips/absent.bin")[0] == 404

    # an in-cluster client pod checks every byte of random ranges through the Service DNS name
    settings = {
        "host": f"lib-stream.{namespace.name}.svc.cluster.local", "port": 8080,
        "path": f"/{CLIP}", "size": CLIP_SIZE, "span": 64 * 1024, "seconds": 5, "threads": 2,
    }  # fmt: skip
    result = run_client_pod(namespace, "reader", DEFAULT_IMAGE, settings)
    assert result["failed"] == 0, result["errors"]
    assert result["ok"] >= 10

    # every pod now serves the object from its cache: a repeated range is a hit on each pod
    for pod in stream_pods(namespace, "lib"):
        ip = pod["status"]["podIP"]
        before = cache_counters(ip)
        status, _, body = get(ip, f"/{CLIP}", {"Range": "bytes=5000000-5065535"})
        assert status == 206
        assert body == clip[5000000:5065536]
        after = cache_counters(ip)
        hits = 'vod_cache_requests_total{result="hit"}'
        print(f"pod {ip}: cache {after}")
        assert after[hits] == before.get(hits, 0) + 1
        # no origin bytes: at most a HEAD revalidates a stat older than VOD_ORIGIN_STAT_TTL_SECONDS
        assert after["vod_origin_bytes_total"] == before["vod_origin_bytes_total"]
        assert after["vod_cache_bytes_used"] > 0


def test_uploads_through_an_s3_backed_platform_land_in_the_bucket(
    operator: OperatorProcess, namespace: Namespace, seaweedfs: str
) -> None:
    namespace.kubectl("create", "secret", "generic", "up-jwt", f"--from-literal=key={JWT_KEY}")
    namespace.apply(s3_platform("up"))
    wait_ready(namespace, "up", timeout=180)
    service = namespace.get("service", "up-stream")["spec"]["clusterIP"]
    token = jwt.encode({"sub": "s3-test", "exp": int(time.time()) + 300}, JWT_KEY, "HS256")
    body = pattern(12 * 1024 * 1024)  # above the multipart threshold
    conn = http.client.HTTPConnection(service, 8080, timeout=60)
    conn.request("PUT", "/uploads/big.bin", body=body, headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    print(f"PUT through the platform: {response.status} {answer}")
    assert response.status == 201
    # 201 comes after the multipart upload completed: the object is whole in the bucket now
    stored = bytes(obstore.get(bucket(seaweedfs), PREFIX + "uploads/big.bin").bytes())
    assert stored == body
    status, _, tail = get(service, "/uploads/big.bin", {"Range": "bytes=-4096"})
    assert status == 206
    assert tail == body[-4096:]


#: A small, quick ladder for packaging on the real node (as tests/cluster/test_assets.py uses).
TRANSCODING = """
    transcoding:
      preset: ultrafast
      segmentSeconds: 2
      renditions:
        - {name: 360p, height: 360, videoBitrate: 800k, audioBitrate: 96k}
        - {name: 240p, height: 240, videoBitrate: 400k, audioBitrate: 64k}
      resources:
        requests: {cpu: 100m, memory: 256Mi}
        limits: {memory: 1Gi}
      scratchSize: 1Gi
      backoffLimit: 1
      activeDeadlineSeconds: 600
"""


def test_a_videoasset_on_an_s3_platform_is_packaged_into_the_bucket_and_served(
    operator: OperatorProcess, namespace: Namespace, seaweedfs: str, tmp_path: Path
) -> None:
    import m3u8

    from tests.cluster.conftest import eventually
    from tests.cluster.test_assets import asset, make_video, wait_phase

    ns = namespace
    make_video(tmp_path / "pattern.mp4")
    store = bucket(seaweedfs)
    obstore.put(store, PREFIX + "uploads/pattern.mp4", (tmp_path / "pattern.mp4").read_bytes())
    ns.kubectl("create", "secret", "generic", "vs-jwt", f"--from-literal=key={JWT_KEY}")
    ns.apply(s3_platform("vs", replicas=1, extra=TRANSCODING))
    wait_ready(ns, "vs", timeout=180)
    ns.apply(asset("intro", "source: {path: uploads/pattern.mp4}", platform="vs"))
    st = wait_phase(ns, "intro", "Ready", timeout=400)["status"]
    # The pod's result line can make the asset Ready a moment before the Job counts its success.
    eventually(lambda: ns.get("job", st["job"])["status"].get("succeeded") == 1, timeout=60)
    job = ns.get("job", st["job"])
    assert "persistentVolumeClaim" not in json.dumps(job["spec"]["template"]["spec"]["volumes"])
    assert st["playback"]["master"] == f"/assets/{ns.name}/intro/master.m3u8"

    asset_prefix = f"{PREFIX}assets/{ns.name}/intro/"
    keys = [m["path"] for batch in obstore.list(store, prefix=asset_prefix) for m in batch]
    print(f"objects the Job published: {len(keys)}")
    assert asset_prefix + "master.m3u8" in keys

    # the platform serves the master from the bucket through its cache, and what it lists
    service = ns.get("service", "vs-stream")["spec"]["clusterIP"]
    status, headers, body = get(service, st["playback"]["master"])
    print(f"master via the Service: {status} {headers.get('Content-Type')}")
    assert status == 200
    master = m3u8.M3U8(body.decode(), strict=True)
    assert [v.stream_info.resolution for v in master.playlists] == [(640, 360), (426, 240)]
    base = st["playback"]["master"].rsplit("/", 1)[0]
    variant = m3u8.M3U8(get(service, f"{base}/{master.playlists[0].uri}")[2].decode())
    folder = f"{base}/{master.playlists[0].uri.rsplit('/', 1)[0]}"
    status, _, segment = get(service, f"{folder}/{variant.segments[0].uri}")
    assert (status, len(segment) > 0) == (200, True)

    # deleting the asset runs the clean-up Job: no object of it is left in the bucket
    ns.kubectl("delete", "va", "intro", "--wait=true", "--timeout=180s", timeout=200)
    left = [m["path"] for batch in obstore.list(store, prefix=asset_prefix) for m in batch]
    assert left == []
    eventually(lambda: "OutputsRemoved" in ns.kubectl("get", "events").stdout, timeout=30)


def test_a_videoasset_uploaded_with_tus_on_an_s3_platform_becomes_ready(
    operator: OperatorProcess, namespace: Namespace, seaweedfs: str, tmp_path: Path
) -> None:
    """spec.source.upload on an S3 platform: tuspy uploads through status.upload (the Service
    spreads its PATCHes over both replicas), the object appears in the bucket, the asset is
    Uploaded, packaged from the bucket and Ready; only the completed upload's marker is left."""
    from urllib.parse import urlsplit

    from tusclient.client import TusClient

    from tests.cluster.test_assets import asset, condition, make_video, wait_phase
    from vod_stream.tuss3 import PART_BYTES

    ns = namespace
    ns.kubectl("create", "secret", "generic", "tu-jwt", f"--from-literal=key={JWT_KEY}")
    ns.apply(s3_platform("tu", replicas=2, extra=TRANSCODING, signed=True))
    wait_ready(ns, "tu", timeout=180)
    ns.apply(asset("lecture", "source: {upload: {path: uploads/lecture.mp4}}", platform="tu"))
    waiting = wait_phase(ns, "lecture", "Uploading")
    assert condition(waiting, "Uploaded")["reason"] == "AwaitingUpload"
    url = urlsplit(waiting["status"]["upload"]["url"])
    service = ns.get("service", "tu-stream")["spec"]["clusterIP"]
    video = tmp_path / "lecture.mp4"
    make_video(video, seconds=30)
    size = video.stat().st_size
    assert size > PART_BYTES  # whole 5 MiB parts of a multipart upload, then the tail
    uploader = TusClient(f"http://{service}:8080{url.path}?{url.query}").uploader(
        str(video), chunk_size=512 * 1024, upload_checksum=True
    )
    uploader.upload(stop_at=size // 2)  # half, then the rest (resumed)
    assert 0 < uploader.offset < size
    uploader.upload()
    store = bucket(seaweedfs)
    stored = bytes(obstore.get(store, PREFIX + "uploads/lecture.mp4").bytes())
    print(f"\ntus upload through the S3 platform: {len(stored)} bytes in the bucket")
    assert stored == video.read_bytes()
    ready = wait_phase(ns, "lecture", "Ready", timeout=400)
    assert condition(ready, "Uploaded")["status"] == "True"
    state = PREFIX + ".vod-uploads/"
    left = [m["path"] for batch in obstore.list(store, prefix=state) for m in batch]
    assert len(left) == 1
    assert left[0].endswith("/info.json")  # the completed marker, until it expires
