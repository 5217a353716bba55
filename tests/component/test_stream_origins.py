"""Remote origins and the slice cache: a real vod-stream (file origin) as the HTTP origin, a real
vod-stream in front of it with VOD_ORIGIN=http and a slice cache, and the fault-injecting proxy
between the two (tests/faultproxy.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from localcluster.s3server import S3Server, running_s3_server
from tests.component.conftest import JWT_SECRET, ServerProcess, make_token
from tests.faultproxy import FaultProxy

SLICE = 64 * 1024
T = TypeVar("T")


def payload(size: int, seed: int = 1) -> bytes:
    """Bytes whose every 4-byte word names its offset (a splice or shift shows)."""
    words = (((i * 4) ^ (seed << 24)).to_bytes(4, "big") for i in range(size // 4 + 1))
    return b"".join(words)[:size]


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    response = httpx.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200, (response.status_code, response.text[:2000])
    text = response.text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        key, value = line.rsplit(" ", 1)
        series = key.split("{", 1)[0]
        if series != name or any(f'{k}="{v}"' not in key for k, v in labels.items()):
            continue
        total += float(value)
    return total


class Setup:
    def __init__(
        self, origin: ServerProcess, proxy: FaultProxy, start: Callable[..., ServerProcess]
    ):
        self.origin = origin
        self.proxy = proxy
        self._start = start

    def put(self, name: str, data: bytes) -> None:
        path = self.origin.media_root / name
        temp = path.with_suffix(".part")
        temp.write_bytes(data)
        os.replace(temp, path)

    def edge(self, cache_dir: Path | None, **env: str) -> ServerProcess:
        settings = {
            "VOD_ORIGIN": "http",
            "VOD_HTTP_ORIGIN_URL": self.proxy.url,
            "VOD_CACHE_SLICE_BYTES": str(SLICE),
            "VOD_ORIGIN_TIMEOUT_SECONDS": "2",
            "VOD_ORIGIN_CONNECT_TIMEOUT_SECONDS": "1",
            **env,
        }
        if cache_dir is not None:
            settings["VOD_CACHE_DIR"] = str(cache_dir)
        return self._start(env=settings)


@pytest.fixture
def setup(start_server: Callable[..., ServerProcess], tmp_path: Path) -> Iterator[Setup]:
    origin_root = tmp_path / "origin"
    origin_root.mkdir()
    # the tests replace objects on disk and expect the origin to answer with them at once, as an
    # object store would: no open-file validity window on the origin
    origin = start_server(media_root=origin_root, env={"VOD_OPEN_FILE_CACHE_VALID_SECONDS": "0"})
    with FaultProxy(origin.port) as proxy:
        yield Setup(origin, proxy, start_server)


def get(server: ServerProcess, path: str, **headers: str) -> httpx.Response:
    return httpx.get(server.url + path, headers=headers, timeout=30)


def together(count: int, request: Callable[[], T]) -> list[T]:
    """`count` threads make `request` at the same moment (a barrier); their answers."""
    barrier = threading.Barrier(count)
    answers: list[T] = []

    def client() -> None:
        barrier.wait()
        answers.append(request())

    threads = [threading.Thread(target=client) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_ranges_and_validators_come_from_the_origin(setup: Setup, tmp_path: Path) -> None:
    data = payload(5 * SLICE + 123)
    setup.put("v.mp4", data)
    edge = setup.edge(tmp_path / "cache")
    at_origin = get(setup.origin, "/v.mp4")
    whole = get(edge, "/v.mp4")
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["etag"] == at_origin.headers["etag"]
    assert whole.headers["last-modified"] == at_origin.headers["last-modified"]
    part = get(edge, "/v.mp4", Range="bytes=70000-200000")
    assert part.status_code == 206
    assert part.content == data[70000:200001]
    assert part.headers["content-range"] == f"bytes 70000-200000/{len(data)}"
    assert get(edge, "/v.mp4", Range="bytes=-10").content == data[-10:]
    assert get(edge, "/v.mp4", **{"If-None-Match": whole.headers["etag"]}).status_code == 304
    stale = get(edge, "/v.mp4", Range="bytes=0-9", **{"If-Range": '"other"'})
    assert stale.status_code == 200
    assert stale.content == data
    fresh = get(edge, "/v.mp4", Range="bytes=0-9", **{"If-Range": whole.headers["etag"]})
    assert fresh.status_code == 206
    assert fresh.content == data[:10]
    assert get(edge, "/v.mp4", **{"If-Match": '"other"'}).status_code == 412
    unsatisfiable = get(edge, "/v.mp4", Range=f"bytes={len(data)}-")
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{len(data)}"
    multi = get(edge, "/v.mp4", Range="bytes=0-1,300000-300001")
    assert multi.status_code == 206
    assert multi.headers["content-type"].startswith("multipart/byteranges")
    assert data[300000:300002] in multi.content
    head = httpx.head(edge.url + "/v.mp4", timeout=10)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(data))


def test_origin_404_is_404(setup: Setup, tmp_path: Path) -> None:
    edge = setup.edge(tmp_path / "cache")
    response = get(edge, "/missing.mp4")
    assert response.status_code == 404
    assert response.json()["error"]["status"] == 404


def test_origin_down_is_502_fast(setup: Setup, tmp_path: Path) -> None:
    setup.put("v.mp4", payload(1000))
    edge = setup.edge(tmp_path / "cache")
    setup.proxy.refuse()
    started = time.monotonic()
    response = get(edge, "/v.mp4")
    assert response.status_code == 502
    assert response.json()["error"]["status"] == 502
    assert time.monotonic() - started < 1.5
    assert metric(edge, "vod_origin_errors_total", cause="unreachable") >= 1


def test_origin_hanging_is_504_within_the_timeout(setup: Setup, tmp_path: Path) -> None:
    setup.put("v.mp4", payload(1000))
    edge = setup.edge(tmp_path / "cache", VOD_ORIGIN_TIMEOUT_SECONDS="1")
    setup.proxy.mode = "hang"
    started = time.monotonic()
    response = get(edge, "/v.mp4")
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json()["error"]["status"] == 504
    assert 0.9 < elapsed < 3
    assert metric(edge, "vod_origin_errors_total", cause="timeout") >= 1


def test_cached_slices_are_served_while_the_origin_is_down(setup: Setup, tmp_path: Path) -> None:
    data = payload(4 * SLICE)
    setup.put("v.mp4", data)
    edge = setup.edge(tmp_path / "cache", VOD_ORIGIN_STAT_TTL_SECONDS="0.2")
    assert get(edge, "/v.mp4", Range=f"bytes=0-{2 * SLICE - 1}").status_code == 206
    setup.proxy.refuse()
    time.sleep(0.3)  # the stat is stale: the origin is asked, fails, the last answer is used
    cached = get(edge, "/v.mp4", Range="bytes=1000-90000")
    assert cached.status_code == 206
    assert cached.content == data[1000:90001]
    missing = get(edge, "/v.mp4", Range=f"bytes={3 * SLICE}-{3 * SLICE + 9}")
    assert missing.status_code == 502


def read_raw(port: int, request: bytes, timeout: float = 10) -> tuple[bytes, bytes]:
    """The response head and whatever body arrived before the server closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body


def test_object_replaced_mid_request_cuts_the_response(setup: Setup, tmp_path: Path) -> None:
    old = payload(8 * SLICE, seed=1)
    setup.put("v.mp4", old)
    edge = setup.edge(tmp_path / "cache", VOD_ORIGIN_STAT_TTL_SECONDS="60")
    assert get(edge, "/v.mp4", Range=f"bytes=0-{2 * SLICE - 1}").content == old[: 2 * SLICE]
    setup.put("v.mp4", payload(8 * SLICE, seed=2))  # same size, new ETag at the origin
    head, body = read_raw(edge.port, b"GET /v.mp4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert f"content-length: {len(old)}".encode() in head.lower()
    assert len(body) < len(old)  # cut, not completed with the new object's bytes
    assert body == old[: len(body)]  # and never spliced
    assert metric(edge, "vod_origin_errors_total", cause="changed") == 1
    # the next request sees the new object whole
    assert get(edge, "/v.mp4").content == payload(8 * SLICE, seed=2)


def slice_files(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.iterdir() if not p.name.startswith("."))


def test_corrupted_and_truncated_slices_are_fetched_again(setup: Setup, tmp_path: Path) -> None:
    data = payload(2 * SLICE)
    setup.put("v.mp4", data)
    cache_dir = tmp_path / "cache"
    edge = setup.edge(cache_dir)
    assert get(edge, "/v.mp4").content == data
    time.sleep(0.2)
    files = slice_files(cache_dir)
    assert len(files) == 2
    with open(files[0], "r+b") as f:  # same length, one byte flipped
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.truncate(files[1], SLICE // 2)
    before = metric(edge, "vod_origin_bytes_total")
    assert get(edge, "/v.mp4").content == data
    assert metric(edge, "vod_cache_corrupt_slices_total") == 2
    assert metric(edge, "vod_origin_bytes_total") - before == 2 * SLICE


def test_unwritable_cache_disk_still_serves(setup: Setup, tmp_path: Path) -> None:
    data = payload(3 * SLICE)
    setup.put("v.mp4", data)
    cache_dir = tmp_path / "cache"
    edge = setup.edge(cache_dir)
    cache_dir.rmdir()  # the cache folder is gone: every write fails
    assert get(edge, "/v.mp4").content == data
    response = get(edge, "/v.mp4", Range="bytes=10-20")
    assert response.status_code == 206
    assert response.content == data[10:21]
    assert metric(edge, "vod_cache_write_errors_total") >= 3


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 128 KiB tmpfs (root is needed to mount it; the component tier runs as root here)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_cache_disk_still_serves(setup: Setup, tiny_tmpfs: Path) -> None:
    data = payload(6 * SLICE)
    setup.put("v.mp4", data)
    filler = tiny_tmpfs / "filler"
    filler.write_bytes(b"\0" * (100 * 1024))  # leaves less than one slice free
    edge = setup.edge(tiny_tmpfs / "cache", VOD_CACHE_MAX_BYTES=str(64 * SLICE))
    for _ in range(2):
        response = get(edge, "/v.mp4")
        assert response.status_code == 200
        assert response.content == data
    part = get(edge, "/v.mp4", Range=f"bytes={SLICE}-{3 * SLICE}")
    assert part.status_code == 206
    assert part.content == data[SLICE : 3 * SLICE + 1]
    assert metric(edge, "vod_cache_write_errors_total") >= 1


def folder_bytes(folder: Path) -> int:
    total = 0
    for entry in os.scandir(folder):
        with contextlib.suppress(FileNotFoundError):  # evicted while listed
            total += entry.stat().st_size
    return total


def test_eviction_keeps_the_bound(setup: Setup, tmp_path: Path) -> None:
    data = payload(16 * SLICE)
    setup.put("v.mp4", data)
    cache_dir = tmp_path / "cache"
    bound = 4 * SLICE
    edge = setup.edge(cache_dir, VOD_CACHE_MAX_BYTES=str(bound))
    sizes: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            sizes.append(folder_bytes(cache_dir))
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(2):
            assert get(edge, "/v.mp4").content == data
    finally:
        stop.set()
        watcher.join()
    time.sleep(0.2)
    assert max(sizes) <= bound
    assert folder_bytes(cache_dir) <= bound
    assert metric(edge, "vod_cache_evictions_total") >= 12
    assert metric(edge, "vod_cache_bytes_used") <= bound


def test_restart_keeps_the_index(setup: Setup, tmp_path: Path) -> None:
    data = payload(4 * SLICE)
    setup.put("v.mp4", data)
    cache_dir = tmp_path / "cache"
    edge = setup.edge(cache_dir)
    assert get(edge, "/v.mp4").content == data
    time.sleep(0.2)
    assert edge.terminate() == 0
    (cache_dir / ".tmp-leftover").write_bytes(b"partial")
    again = setup.edge(cache_dir)
    assert get(again, "/v.mp4").content == data
    assert metric(again, "vod_origin_bytes_total") == 0
    assert metric(again, "vod_cache_requests_total", result="hit") == 1
    assert not (cache_dir / ".tmp-leftover").exists()


def test_concurrent_cold_clients_fetch_each_slice_once(setup: Setup, tmp_path: Path) -> None:
    data = payload(32 * SLICE)
    setup.put("v.mp4", data)
    edge = setup.edge(tmp_path / "cache", VOD_WORKERS="2")
    setup.proxy.mode = "delay"  # a slow origin: the clients overlap for sure
    setup.proxy.delay_chunk = 256 * 1024
    setup.proxy.delay_seconds = 0.02
    results = together(32, lambda: httpx.get(edge.url + "/v.mp4", timeout=60).content)
    assert len(results) == 32
    assert all(r == data for r in results)
    assert metric(edge, "vod_origin_bytes_total") == len(data)
    assert metric(edge, "vod_cache_collapsed_waits_total") > 0
    # what crossed the proxy: the object once, plus heads
    assert len(data) <= setup.proxy.response_bytes <= len(data) + 64 * 1024


def test_first_byte_of_a_far_cold_range_does_not_wait_for_the_slice(
    setup: Setup, tmp_path: Path
) -> None:
    slice_bytes = 1024 * 1024
    data = payload(8 * slice_bytes)
    setup.put("v.mp4", data)
    edge = setup.edge(tmp_path / "cache", VOD_CACHE_SLICE_BYTES=str(slice_bytes))
    get(edge, "/v.mp4", Range="bytes=0-0")  # the stat is made; the far slice stays cold
    setup.proxy.mode = "delay"  # 16 KiB per 50 ms: one slice takes about 3.2 s
    start = 6 * slice_bytes
    began = time.monotonic()
    with httpx.stream(
        "GET",
        edge.url + "/v.mp4",
        headers={"Range": f"bytes={start}-{start + slice_bytes - 1}"},
        timeout=30,
    ) as response:
        assert response.status_code == 206
        chunks = response.iter_raw()
        first = next(chunks)
        first_byte = time.monotonic() - began
        rest = first + b"".join(chunks)
        whole = time.monotonic() - began
    assert rest == data[start : start + slice_bytes]
    assert first_byte < 1.0
    assert whole > 2.0


# -- the S3 origin: a real SeaweedFS (the s3_server session fixture) ---------------------------


def s3_edge(
    start_server: Callable[..., ServerProcess],
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
    endpoint: str | None = None,
    credentials: bool = True,
    **env: str,
) -> ServerProcess:
    settings = {
        "VOD_ORIGIN": "s3",
        "VOD_S3_ENDPOINT": endpoint or s3_server.endpoint,
        "VOD_S3_BUCKET": bucket,
        "VOD_S3_PREFIX": "media/",
        "VOD_S3_REGION": s3_server.region,
        "VOD_CACHE_DIR": str(tmp_path / "cache"),
        "VOD_CACHE_SLICE_BYTES": str(SLICE),
        "VOD_ORIGIN_TIMEOUT_SECONDS": "2",
        **env,
    }
    if credentials:
        key_file, secret_file = s3_server.write_credentials(tmp_path / "s3-credentials")
        settings["VOD_S3_ACCESS_KEY_ID_FILE"] = str(key_file)
        settings["VOD_S3_SECRET_ACCESS_KEY_FILE"] = str(secret_file)
    return start_server(env=settings)


def s3_put(s3_server: S3Server, bucket: str, key: str, data: bytes) -> None:
    response = s3_server.request("PUT", f"/{bucket}/{key}", body=data)
    assert response.status == 200, response


def test_s3_origin_serves_ranges_with_the_objects_validators(
    start_server: Callable[..., ServerProcess], s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.make_bucket("origins-private")
    data = payload(5 * SLICE + 7)
    s3_put(s3_server, bucket, "media/a/v.mp4", data)
    edge = s3_edge(start_server, s3_server, bucket, tmp_path)
    whole = get(edge, "/a/v.mp4")
    assert whole.status_code == 200
    assert whole.content == data
    at_s3 = httpx.Headers(s3_server.request("HEAD", f"/{bucket}/media/a/v.mp4").headers)
    assert whole.headers["etag"] == at_s3["etag"]
    assert whole.headers["last-modified"] == at_s3["last-modified"]
    part = get(edge, "/a/v.mp4", Range="bytes=100000-200000")
    assert part.status_code == 206
    assert part.content == data[100000:200001]
    ranged = get(edge, "/a/v.mp4", Range="bytes=0-9", **{"If-Range": whole.headers["etag"]})
    assert ranged.status_code == 206
    assert get(edge, "/a/v.mp4", **{"If-None-Match": whole.headers["etag"]}).status_code == 304
    assert get(edge, "/a/missing.mp4").status_code == 404
    assert metric(edge, "vod_cache_requests_total", result="hit") >= 1


def test_s3_collapsed_cold_clients(
    start_server: Callable[..., ServerProcess], s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.make_bucket("origins-crowd")
    data = payload(16 * SLICE)
    s3_put(s3_server, bucket, "media/crowd.mp4", data)
    port = int(s3_server.endpoint.rsplit(":", 1)[1])
    with FaultProxy(port) as proxy:
        edge = s3_edge(
            start_server, s3_server, bucket, tmp_path, endpoint=proxy.url, VOD_WORKERS="2"
        )
        results = together(32, lambda: httpx.get(edge.url + "/crowd.mp4", timeout=60).content)
        assert len(results) == 32
        assert all(r == data for r in results)
        assert metric(edge, "vod_origin_bytes_total") == len(data)
        assert len(data) <= proxy.response_bytes <= len(data) + 64 * 1024


def test_s3_object_replaced_mid_request_is_cut(
    start_server: Callable[..., ServerProcess], s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.make_bucket("origins-replace")
    old, new = payload(8 * SLICE, seed=1), payload(8 * SLICE, seed=2)
    s3_put(s3_server, bucket, "media/v.mp4", old)
    edge = s3_edge(start_server, s3_server, bucket, tmp_path, VOD_ORIGIN_STAT_TTL_SECONDS="60")
    assert get(edge, "/v.mp4", Range=f"bytes=0-{2 * SLICE - 1}").content == old[: 2 * SLICE]
    s3_put(s3_server, bucket, "media/v.mp4", new)
    head, body = read_raw(edge.port, b"GET /v.mp4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert len(body) < len(old)
    assert body == old[: len(body)]
    assert metric(edge, "vod_origin_errors_total", cause="changed") == 1
    assert get(edge, "/v.mp4").content == new


def test_s3_anonymous_reads_of_a_public_bucket(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """No credential files: unsigned requests, as to a public bucket (its own SeaweedFS, whose
    anonymous identity may read the bucket: the session server's buckets are private)."""
    with running_s3_server(tmp_path / "seaweedfs", public_buckets=["anon"]) as s3:
        data = payload(3 * SLICE + 5)
        s3_put(s3, "anon", "media/v.mp4", data)
        edge = s3_edge(start_server, s3, "anon", tmp_path, credentials=False)
        part = get(edge, "/v.mp4", Range=f"bytes={SLICE - 3}-{2 * SLICE + 3}")
        assert part.status_code == 206
        assert part.content == data[SLICE - 3 : 2 * SLICE + 4]
        assert get(edge, "/v.mp4").content == data
        assert get(edge, "/nothing.mp4").status_code == 404


def test_a_remote_origin_needs_no_media_folder_and_refuses_writes(
    setup: Setup, tmp_path: Path
) -> None:
    """As the operator renders it: no /media volume. Media still comes from the origin; PUT
    and DELETE get 405 (an HTTP origin is read-only), and so does tus."""
    data = payload(3 * SLICE)
    setup.put("v.mp4", data)
    edge = setup.edge(
        tmp_path / "cache", VOD_MEDIA_ROOT=str(tmp_path / "absent"), VOD_JWT_SECRET=JWT_SECRET
    )
    assert get(edge, "/v.mp4", Range="bytes=10-19").content == data[10:20]
    auth = {"Authorization": f"Bearer {make_token()}"}
    put = httpx.put(edge.url + "/new.mp4", content=b"x", headers=auth, timeout=10)
    assert put.status_code == 405
    assert put.headers["allow"] == "GET, HEAD"
    assert httpx.delete(edge.url + "/v.mp4", headers=auth, timeout=10).status_code == 405
    tus_headers = {"Tus-Resumable": "1.0.0", "Upload-Length": "1", **auth}
    tus = httpx.post(edge.url + "/tus/", headers=tus_headers, timeout=10)
    assert tus.status_code == 405
    assert "read-only" in tus.json()["error"]["message"]
    assert not (tmp_path / "absent").exists()


# -- a cold object's first request: the stat from the first GET, one request per object --------


def origin_requests(proxy: FaultProxy) -> list[str]:
    """The media request lines that reached the origin (method and path; the rest is the
    client's). The listing of ``.vod-uploads`` by the tus cleanup (at start, then every
    ``VOD_TUS_CLEANUP_SECONDS``) is not a media read and is left out."""
    lines = [" ".join(line.split(" ")[:2]) for line in proxy.requests]
    return [line for line in lines if "vod-uploads" not in line]


def test_a_cold_range_makes_one_origin_request(setup: Setup, tmp_path: Path) -> None:
    data = payload(16 * SLICE + 5)
    setup.put("v.mp4", data)
    edge = setup.edge(tmp_path / "cache")
    start = 11 * SLICE + SLICE // 2  # mid-slice, far from the start
    part = get(edge, "/v.mp4", Range=f"bytes={start}-{start + 999}")
    assert part.status_code == 206
    assert part.content == data[start : start + 1000]
    assert part.headers["content-range"] == f"bytes {start}-{start + 999}/{len(data)}"
    assert part.headers["etag"] == get(setup.origin, "/v.mp4", Range="bytes=0-0").headers["etag"]
    assert origin_requests(setup.proxy) == ["GET /v.mp4"]  # no HEAD before it
    assert metric(edge, "vod_origin_requests_total") == 1
    assert metric(edge, "vod_origin_bytes_total") == SLICE  # the slice holding the range
    # the stat and the slice are both known now: the same slice costs no origin request
    again = get(edge, "/v.mp4", Range=f"bytes={start + 1000}-{start + 1999}")
    assert again.content == data[start + 1000 : start + 2000]
    assert metric(edge, "vod_origin_requests_total") == 1
    # a cold open-ended request: one GET for the stat and the first run of 8 slices, one more
    # for the rest (made conditional on the ETag the first one gave)
    other = payload(12 * SLICE, seed=3)
    setup.put("w.mp4", other)
    assert get(edge, "/w.mp4").content == other
    assert origin_requests(setup.proxy)[1:] == ["GET /w.mp4", "GET /w.mp4"]


def test_a_cold_stat_is_one_request_however_many_clients_wait(setup: Setup, tmp_path: Path) -> None:
    data = payload(4 * SLICE)
    setup.put("v.mp4", data)
    edge = setup.edge(tmp_path / "cache", VOD_WORKERS="2")
    setup.proxy.mode = "delay"  # the first answer takes 50 ms: every client arrives before it
    heads = together(16, lambda: httpx.head(edge.url + "/v.mp4", timeout=30))
    assert [h.status_code for h in heads] == [200] * 16
    assert {h.headers["content-length"] for h in heads} == {str(len(data))}
    assert origin_requests(setup.proxy) == ["HEAD /v.mp4"]  # HEADs stat by a HEAD: no bytes
    assert metric(edge, "vod_origin_requests_total") == 1

    # GETs of one cold object's slice: one GET gives every client the stat and the bytes
    setup.put("w.mp4", data)
    bodies = together(16, lambda: get(edge, "/w.mp4", Range="bytes=100-199").content)
    assert bodies == [data[100:200]] * 16
    assert origin_requests(setup.proxy)[1:] == ["GET /w.mp4"]
    assert metric(edge, "vod_origin_requests_total") == 2


def test_cold_416_404_and_preconditions_follow_the_origin(setup: Setup, tmp_path: Path) -> None:
    data = payload(3 * SLICE + 10)
    edge = setup.edge(tmp_path / "cache")
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"):
        setup.put(name, data)

    def etag(path: str) -> str:
        return get(setup.origin, path, Range="bytes=0-0").headers["etag"]

    # past the end but in the last slice: its GET (206 from the slice's start) gives the size
    past = get(edge, "/a.mp4", Range=f"bytes={len(data) + 5}-")
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{len(data)}"
    assert past.headers["etag"] == etag("/a.mp4")
    assert origin_requests(setup.proxy) == ["GET /a.mp4"]
    # past the last slice: the origin's 416, then a HEAD for the validators (a 416 has none)
    setup.put("z.mp4", data)
    beyond = get(edge, "/z.mp4", Range=f"bytes={9 * SLICE}-{9 * SLICE + 9}")
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"
    assert beyond.headers["etag"] == etag("/z.mp4")
    assert origin_requests(setup.proxy)[1:] == ["GET /z.mp4", "HEAD /z.mp4"]
    # If-Match against the origin's ETag, taken from the GET's response
    assert get(edge, "/b.mp4", Range="bytes=0-9", **{"If-Match": '"other"'}).status_code == 412
    matched = get(edge, "/c.mp4", Range="bytes=0-9", **{"If-Match": etag("/c.mp4")})
    assert matched.status_code == 206
    assert matched.content == data[:10]
    # If-Range with the origin's ETag: 206; with another one: the whole object (200)
    stale = get(edge, "/d.mp4", Range="bytes=5-9", **{"If-Range": '"other"'})
    assert stale.status_code == 200
    assert stale.content == data
    # a revalidation stats by a HEAD (it usually ends as a 304 without bytes)
    assert get(edge, "/e.mp4", **{"If-None-Match": etag("/e.mp4")}).status_code == 304
    # a suffix range needs the size first: HEAD, then the GET of its slices
    setup.put("f.mp4", data)
    assert get(edge, "/f.mp4", Range="bytes=-100").content == data[-100:]
    assert origin_requests(setup.proxy)[3:] == [
        "GET /b.mp4",
        "GET /c.mp4",
        "GET /d.mp4",  # slice 0 for the range, as the request asked,
        "GET /d.mp4",  # then the rest of the whole object If-Range chose
        "HEAD /e.mp4",
        "HEAD /f.mp4",
        "GET /f.mp4",
    ]
    # not at the origin: one GET, 404
    gone = get(edge, "/missing.mp4", Range="bytes=0-9")
    assert gone.status_code == 404
    assert origin_requests(setup.proxy)[-1] == "GET /missing.mp4"
    assert metric(edge, "vod_origin_errors_total", cause="not_found") == 1


def test_an_object_replaced_after_the_cold_get_is_cut(setup: Setup, tmp_path: Path) -> None:
    """The first run (8 slices) comes from the GET that gave the stat; the object is replaced
    while the client reads it, so the next run's GET (If-Match: the first ETag) fails: cut."""
    old, new = payload(16 * SLICE, seed=1), payload(16 * SLICE, seed=2)
    setup.put("v.mp4", old)
    edge = setup.edge(tmp_path / "cache")
    setup.proxy.mode = "delay"  # 16 KiB per 50 ms: the first run takes about 1.6 s
    received = b""
    with httpx.stream("GET", edge.url + "/v.mp4", timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(old))
        setup.put("v.mp4", new)
        setup.proxy.mode = "pass"
        with contextlib.suppress(httpx.HTTPError):
            for chunk in response.iter_raw():
                received += chunk
    assert SLICE <= len(received) < len(old)  # cut, not completed with the new bytes
    assert received == old[: len(received)]  # and never spliced
    assert metric(edge, "vod_origin_errors_total", cause="changed") == 1
    assert get(edge, "/v.mp4").content == new


def test_s3_cold_range_is_one_get(
    start_server: Callable[..., ServerProcess], s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.make_bucket("origins-cold")
    data = payload(10 * SLICE + 3)
    s3_put(s3_server, bucket, "media/v.mp4", data)
    port = int(s3_server.endpoint.rsplit(":", 1)[1])
    with FaultProxy(port) as proxy:
        edge = s3_edge(start_server, s3_server, bucket, tmp_path, endpoint=proxy.url)
        start = 7 * SLICE + 100
        part = get(edge, "/v.mp4", Range=f"bytes={start}-{start + 9}")
        assert part.status_code == 206
        assert part.content == data[start : start + 10]
        at_s3 = httpx.Headers(s3_server.request("HEAD", f"/{bucket}/media/v.mp4").headers)
        assert part.headers["etag"] == at_s3["etag"]
        assert part.headers["last-modified"] == at_s3["last-modified"]
        assert origin_requests(proxy) == [f"GET /{bucket}/media/v.mp4"]
        s3_put(s3_server, bucket, "media/w.mp4", data)
        past = get(edge, "/w.mp4", Range=f"bytes={11 * SLICE}-")
        assert past.status_code == 416
        assert past.headers["content-range"] == f"bytes */{len(data)}"
        assert origin_requests(proxy)[1:] == [
            f"GET /{bucket}/media/w.mp4",
            f"HEAD /{bucket}/media/w.mp4",
        ]
        assert get(edge, "/none.mp4", Range="bytes=0-9").status_code == 404


def test_a_stale_stat_is_revalidated_by_the_get_of_a_missing_slice(
    setup: Setup, tmp_path: Path
) -> None:
    old, new = payload(8 * SLICE, seed=1), payload(8 * SLICE, seed=2)
    setup.put("v.mp4", old)
    edge = setup.edge(tmp_path / "cache", VOD_ORIGIN_STAT_TTL_SECONDS="0.2")
    assert get(edge, "/v.mp4", Range="bytes=0-9").content == old[:10]
    time.sleep(0.3)  # stale; slice 0 is on disk: a HEAD revalidates, no bytes move
    assert get(edge, "/v.mp4", Range="bytes=10-19").content == old[10:20]
    setup.put("v.mp4", new)
    time.sleep(0.3)  # stale again; slice 5 is not here: its GET revalidates and fetches at once
    start = 5 * SLICE
    fresh = get(edge, "/v.mp4", Range=f"bytes={start}-{start + 9}")
    assert fresh.content == new[start : start + 10]
    assert fresh.headers["etag"] == get(setup.origin, "/v.mp4", Range="bytes=0-0").headers["etag"]
    assert origin_requests(setup.proxy) == ["GET /v.mp4", "HEAD /v.mp4", "GET /v.mp4"]
    assert get(edge, "/v.mp4", Range="bytes=0-9").content == new[:10]  # never the old slice
