"""Benchmark the slice cache: vod-stream (S3 origin + slice cache) against vod-stream's file origin
and against nginx (`proxy_cache` + `slice 1m` + `proxy_cache_lock on`) in front of the same
SeaweedFS (an anonymous-read bucket), on loopback, every figure from the same run.

Rows:
  hit path: 64 KiB and 2 MiB random ranges of a warm object, vod-stream's cache vs its file
      origin (target >= 0.95x) and vs nginx's warm cache (wrk, bounded by --seconds);
  cold: time to first byte of a far-offset range (mid-slice) of a cold object, the median over
      --cold-objects objects (each cache reads its own: a read warms the S3 server); one client
      reading a cold object whole (MB/s); 32 clients starting together on one cold object:
      origin bytes per object byte (counted by a pass-through proxy in front of SeaweedFS;
      target <= 1.0 + one slice);
  RSS: peak of vod-stream's processes (Python side + data plane) and of nginx's workers.

Usage: python tools/bench/bench_cache.py [--seconds 4] [--rounds 3] [--object-mib 128]
       [--cold-objects 5]
Needs `weed` (make cluster-build), nginx and wrk (Debian packages). Files live in .bench/cache/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tools"), str(Path(__file__).parent)]

from bench_stream import (  # noqa: E402
    RssSampler,
    free_port,
    run_wrk,
    stop,
    wait_port,
    worker_pids,
)
from bench_stream import Scenario as WrkScenario  # noqa: E402

from localcluster.s3server import running_s3_server  # noqa: E402
from tests.faultproxy import FaultProxy  # noqa: E402

WORK = REPO / ".bench" / "cache"
BUCKET = "bench"
SLICE = 1024 * 1024
RANGE_LUA = """
local size, length, path
function init(args)
  size = tonumber(args[1]); length = tonumber(args[2]); path = args[3]
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end
function request()
  local first = math.random(0, size - length)
  return wrk.format("GET", path, {["Range"] = "bytes=" .. first .. "-" .. (first + length - 1)})
end
"""


def start_vod(env: dict[str, str], media: Path) -> tuple[subprocess.Popen[bytes], int]:
    """vod-stream with `env` on top of loopback defaults; (process, port)."""
    port = free_port()
    full = {
        **os.environ,
        "VOD_HOST": "127.0.0.1",
        "VOD_PORT": str(port),
        "VOD_WORKERS": "2",
        "VOD_MEDIA_ROOT": str(media),
        "VOD_METRICS_DIR": str(WORK / f"metrics-{port}"),
        "VOD_ACCESS_LOG": "false",
        "VOD_SHUTDOWN_GRACE_SECONDS": "1",
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "vod_stream"],
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return proc, port


def start_nginx(origin_port: int, cache: Path) -> tuple[subprocess.Popen[bytes], int]:
    """nginx as the issue's anchor: slice 1m, proxy_cache, proxy_cache_lock on."""
    port = free_port()
    prefix = WORK / "nginx"
    shutil.rmtree(cache, ignore_errors=True)
    prefix.mkdir(parents=True, exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = f"""
{user}
worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off; sendfile on; tcp_nopush off;
  keepalive_requests 1000000;
  client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
  proxy_cache_path {cache} levels=1:2 keys_zone=slices:10m max_size=4g inactive=1h
                   use_temp_path=off;
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{
      slice 1m;
      proxy_cache slices;
      proxy_cache_key $uri$slice_range;
      proxy_set_header Range $slice_range;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache_valid 200 206 1h;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 60s;
      proxy_pass http://127.0.0.1:{origin_port}/{BUCKET}/;
    }}
  }}
}}
"""
    (prefix / "nginx.conf").write_text(conf)
    proc = subprocess.Popen(
        [
            shutil.which("nginx") or "/usr/sbin/nginx",
            "-p",
            str(prefix),
            "-c",
            str(prefix / "nginx.conf"),
            "-e",
            "stderr",
        ],
        stdout=subprocess.DEVNULL,
    )
    wait_port(port)
    return proc, port


def ttfb(port: int, path: str, start: int, length: int) -> tuple[float, float]:
    """(seconds to the first body byte, seconds to the last) of one range request."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: bench\r\n"
        f"Range: bytes={start}-{start + length - 1}\r\nConnection: close\r\n\r\n"
    )
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request.encode())
        received = b""
        first = 0.0
        while True:
            chunk = sock.recv(262144)
            if not chunk:
                break
            received += chunk
            if (
                not first
                and b"\r\n\r\n" in received
                and received.index(b"\r\n\r\n") + 4 < len(received)
            ):
                first = time.monotonic() - began
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206"), head[:200]
    assert len(body) == length, (len(body), length)
    return first, time.monotonic() - began


def read_whole(port: int, path: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=120) as response:
        total = 0
        while chunk := response.read(1 << 20):
            total += len(chunk)
        return total


def crowd(port: int, path: str, clients: int) -> int:
    """`clients` readers of the whole object, started together; bytes they received."""
    barrier = threading.Barrier(clients)
    got: list[int] = []

    def one() -> None:
        barrier.wait()
        got.append(read_whole(port, path))

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return sum(got)


def wrk(port: int, path: str, size: int, length: int, seconds: float) -> float:
    unit = "req/s" if length <= 65536 else "MB/s"
    scenario = WrkScenario("", unit, "range.lua", (str(size), str(length), path), 1, 16, 0.0)
    value, errors, _ = run_wrk(port, scenario, seconds)
    assert errors == 0, f"{errors} errors from port {port}"
    return value


def upload(s3: object, key: str, data_path: Path) -> None:
    data = data_path.read_bytes()
    response = s3.request("PUT", f"/{BUCKET}/{key}", body=data)  # type: ignore[attr-defined]
    assert response.status == 200, response


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--object-mib", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cold-objects", type=int, default=5, help="cold far-offset samples (median)"
    )
    args = parser.parse_args()
    size = args.object_mib * 1024 * 1024
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK.parent / "range.lua").write_text(RANGE_LUA)
    media = WORK / "media"
    media.mkdir(exist_ok=True)
    objects = {
        "warm.mp4": size,
        "whole-vod.mp4": size // 4,
        "whole-nginx.mp4": size // 4,
    }
    # one object per server and sample: one cache reading it must not warm S3 for the other
    far_size = 32 * SLICE
    objects |= {
        f"far-{s}-{i}.mp4": far_size for s in ("vod", "nginx") for i in range(args.cold_objects)
    }
    objects |= {"crowd-vod.mp4": 32 * SLICE, "crowd-nginx.mp4": 32 * SLICE, "warmup.mp4": SLICE}
    for name, length in objects.items():
        path = media / name
        if not path.exists() or path.stat().st_size != length:
            path.write_bytes(os.urandom(length))
    rows: list[tuple[str, str, str, str]] = []
    processes: list[subprocess.Popen[bytes]] = []
    shutil.rmtree(WORK / "seaweedfs", ignore_errors=True)  # a fresh server each run
    with running_s3_server(WORK / "seaweedfs", public_buckets=[BUCKET]) as s3:
        for name in objects:
            upload(s3, name, media / name)
        s3_port = int(s3.endpoint.rsplit(":", 1)[1])
        with FaultProxy(s3_port) as vod_origin, FaultProxy(s3_port) as nginx_origin:
            cache_dir = WORK / "vod-slices"
            shutil.rmtree(cache_dir, ignore_errors=True)
            file_vod, file_port = start_vod({}, media)
            cache_vod, cache_port = start_vod(
                {
                    "VOD_ORIGIN": "s3",
                    "VOD_S3_ENDPOINT": vod_origin.url,
                    "VOD_S3_BUCKET": BUCKET,
                    "VOD_CACHE_DIR": str(cache_dir),
                    "VOD_CACHE_MAX_BYTES": str(4 * size),
                    "VOD_CACHE_SLICE_BYTES": str(SLICE),
                },
                media,
            )
            nginx, nginx_port = start_nginx(nginx_origin.port, WORK / "nginx-slices")
            processes += [file_vod, cache_vod, nginx]
            groups = {
                "vod-stream (Python + data plane)": [cache_vod.pid, *worker_pids(cache_vod.pid)],
                "vod-stream data plane": worker_pids(cache_vod.pid),
                "nginx workers": worker_pids(nginx.pid),
            }
            with RssSampler(groups) as rss:
                # connections made (a cold object, not a cold process): one small read each
                ttfb(cache_port, "/warmup.mp4", 0, 1)
                ttfb(nginx_port, "/warmup.mp4", 0, 1)
                # cold: a far offset of a cold object
                far = far_size - 3 * SLICE - SLICE // 2  # mid-slice, as a seek lands
                samples: dict[str, list[tuple[float, float]]] = {"vod": [], "nginx": []}
                for i in range(args.cold_objects):  # interleaved, each object cold
                    samples["vod"].append(ttfb(cache_port, f"/far-vod-{i}.mp4", far, SLICE))
                    samples["nginx"].append(ttfb(nginx_port, f"/far-nginx-{i}.mp4", far, SLICE))
                vod_first, vod_last = (
                    statistics.median(s[k] for s in samples["vod"]) for k in (0, 1)
                )
                ngx_first, ngx_last = (
                    statistics.median(s[k] for s in samples["nginx"]) for k in (0, 1)
                )
                rows.append(
                    (
                        f"cold far-offset range, first byte (ms, median of {args.cold_objects})",
                        f"{vod_first * 1e3:.1f}",
                        f"{ngx_first * 1e3:.1f}",
                        f"{vod_first / ngx_first:.2f}x time",
                    )
                )
                rows.append(
                    (
                        "cold far-offset 1 MiB range, last byte (ms)",
                        f"{vod_last * 1e3:.1f}",
                        f"{ngx_last * 1e3:.1f}",
                        f"{vod_last / ngx_last:.2f}x time",
                    )
                )
                began = time.monotonic()
                read_whole(cache_port, "/whole-vod.mp4")
                vod_mbs = size / 4 / (time.monotonic() - began) / 1e6
                began = time.monotonic()
                read_whole(nginx_port, "/whole-nginx.mp4")
                ngx_mbs = size / 4 / (time.monotonic() - began) / 1e6
                rows.append(
                    (
                        "cold object read whole (MB/s)",
                        f"{vod_mbs:.0f}",
                        f"{ngx_mbs:.0f}",
                        f"{vod_mbs / ngx_mbs:.2f}x",
                    )
                )
                for label, port, proxy, path in (
                    ("vod", cache_port, vod_origin, "/crowd-vod.mp4"),
                    ("nginx", nginx_port, nginx_origin, "/crowd-nginx.mp4"),
                ):
                    before = proxy.response_bytes
                    got = crowd(port, path, 32)
                    assert got == 32 * 32 * SLICE, (label, got)
                    objects[label] = proxy.response_bytes - before
                vod_ratio = objects["vod"] / (32 * SLICE)
                ngx_ratio = objects["nginx"] / (32 * SLICE)
                rows.append(
                    (
                        "32 cold clients: origin bytes / object bytes",
                        f"{vod_ratio:.3f}",
                        f"{ngx_ratio:.3f}",
                        f"target <= {1 + 1 / 32:.3f}",
                    )
                )
                # warm: read the object once through each cache, then random ranges
                read_whole(cache_port, "/warm.mp4")
                read_whole(nginx_port, "/warm.mp4")
                time.sleep(0.5)
                for length, label in (
                    (65536, "64 KiB random ranges (req/s)"),
                    (2 * 1024 * 1024, "2 MiB random ranges (MB/s)"),
                ):
                    runs: dict[str, list[float]] = {"file": [], "cache": [], "nginx": []}
                    for _ in range(args.rounds):  # interleaved rounds, medians
                        for name, port in (
                            ("file", file_port),
                            ("cache", cache_port),
                            ("nginx", nginx_port),
                        ):
                            runs[name].append(wrk(port, "/warm.mp4", size, length, args.seconds))
                    file_value, cache_value, nginx_value = (
                        statistics.median(runs[n]) for n in ("file", "cache", "nginx")
                    )
                    rows.append(
                        (
                            f"warm {label}: vod cache | file origin",
                            f"{cache_value:.0f}",
                            f"{file_value:.0f}",
                            f"{cache_value / file_value:.2f}x (target >= 0.95x)",
                        )
                    )
                    rows.append(
                        (
                            f"warm {label}: vod cache | nginx cache",
                            f"{cache_value:.0f}",
                            f"{nginx_value:.0f}",
                            f"{cache_value / nginx_value:.2f}x",
                        )
                    )
            for name, kib in rss.peak.items():
                rows.append((f"peak RSS {name} (MiB)", f"{kib / 1024:.1f}", "", ""))
            for proc in processes:
                stop(proc)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'vod-stream':>12}  {'other':>12}  ratio")
    for name, a, b, ratio in rows:
        print(f"{name:<{width}}  {a:>12}  {b:>12}  {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
