"""Benchmark vod-stream against nginx (tuned and stock) and Go net/http on loopback with wrk.

Servers, same worker/thread count each (--workers, default the CPUs):
  nginx (tuned)  sendfile on, open_file_cache on, tcp_nopush off, access log off: the baseline
  nginx (stock)  a common stock config: sendfile on, tcp_nopush on, no open_file_cache, access log
  Go net/http    http.FileServer from the standard library, GOMAXPROCS = workers (built offline)
  vod-stream     the data plane (access log off, as tuned nginx)
Scenarios (each run bounded in time, servers interleaved round by round, medians reported):
  64 KiB random ranges of a 1 GiB file     (requests/s, 32 connections)
  1-byte random ranges                      (requests/s)
  2 MiB random ranges (HLS-segment-sized)   (MB/s)
  one open range (bytes=0-) of the file     (MB/s, one connection)
  cold page cache: 64 KiB random ranges after the file is dropped from the page cache
Also: server CPU per request / per byte, and the peak RSS of each server under load (for
vod-stream: the data plane process and the whole server, data plane + Python side).

Usage: python tools/bench/bench_stream.py [--seconds 5] [--rounds 3] [--workers N] [--only TEXT]
The 1 GiB file lives in .bench/ (git-ignored) and is created once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / ".bench"
MEDIA = BENCH / "media"
BIG = MEDIA / "big.mp4"
BIG_SIZE = 1024 * 1024 * 1024

RANGE_LUA = """
local size, length
function init(args)
  size = tonumber(args[1]); length = tonumber(args[2])
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end
function request()
  local first = math.random(0, size - length)
  return wrk.format("GET", "/big.mp4",
    {["Range"] = "bytes=" .. first .. "-" .. (first + length - 1)})
end
"""
OPEN_LUA = """
function request()
  return wrk.format("GET", "/big.mp4", {["Range"] = "bytes=0-"})
end
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    unit: str
    script: str
    args: tuple[str, ...]
    threads: int
    connections: int
    target: float  # required ratio to tuned nginx
    cold: bool = False  # the file is dropped from the page cache before each run


SCENARIOS = (
    Scenario("64 KiB random ranges", "req/s", "range.lua", (str(BIG_SIZE), "65536"), 1, 32, 1.0),
    Scenario("1-byte random ranges", "req/s", "range.lua", (str(BIG_SIZE), "1"), 1, 32, 1.2),
    Scenario("2 MiB random ranges", "MB/s", "range.lua", (str(BIG_SIZE), "2097152"), 1, 8, 1.0),
    Scenario("open range of 1 GiB", "MB/s", "open.lua", (), 1, 1, 1.0),
    Scenario(
        "64 KiB ranges, cold cache",
        "req/s",
        "range.lua",
        (str(BIG_SIZE), "65536"),
        1,
        32,
        0.0,
        True,
    ),
)
BASELINE = "nginx (tuned)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_file() -> None:
    """The 1 GiB file (made once) and the wrk scripts (written every run, so they match this
    version of the script even when the file was made by an earlier one)."""
    MEDIA.mkdir(parents=True, exist_ok=True)
    (BENCH / "range.lua").write_text(RANGE_LUA)
    (BENCH / "open.lua").write_text(OPEN_LUA)
    if BIG.exists() and BIG.stat().st_size == BIG_SIZE:
        return
    print(f"creating {BIG} (1 GiB of random bytes)", flush=True)
    block = os.urandom(16 * 1024 * 1024)
    with open(BIG, "wb") as handle:
        for _ in range(BIG_SIZE // len(block)):
            handle.write(block)


def drop_cache() -> None:
    """Evict the file from the page cache (no privileges needed: advice on our own file)."""
    fd = os.open(BIG, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm_cache() -> None:
    """Read the file so both servers serve it from the page cache (it can be evicted between
    runs on a busy machine, and a cold 1-byte sendfile costs a disk read)."""
    with open(BIG, "rb") as handle:
        while handle.read(64 * 1024 * 1024):
            pass


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_nginx(workers: int, tuned: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    prefix = BENCH / ("nginx" if tuned else "nginx-stock")
    prefix.mkdir(exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""
    if tuned:
        http = """access_log off; sendfile on; tcp_nopush off;
  open_file_cache max=1000 inactive=60s; open_file_cache_valid 30s;"""
    else:  # Debian's default http block
        http = f"access_log {prefix}/access.log; sendfile on; tcp_nopush on;"
    conf = f"""
{user}
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  {http}
  keepalive_requests 1000000;
  client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
  types {{ video/mp4 mp4; }}
  server {{
    listen 127.0.0.1:{port} reuseport;
    root {MEDIA};
  }}
}}
"""
    (prefix / "nginx.conf").write_text(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"],
        stdout=subprocess.DEVNULL,
    )
    wait_port(port)
    return proc, port


def start_go(workers: int) -> tuple[subprocess.Popen[bytes], int]:
    """Build (offline, standard library only) and start the Go file server."""
    binary = BENCH / "goserver"
    source = Path(__file__).resolve().parent / "goserver"
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOPROXY": "off", "GOFLAGS": "-mod=mod"}
    subprocess.run(
        ["go", "build", "-o", str(binary), "."], cwd=source, env=env, check=True, timeout=600
    )
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "-addr", f"127.0.0.1:{port}", "-root", str(MEDIA)],
        env={**os.environ, "GOMAXPROCS": str(workers)},
        stdout=subprocess.DEVNULL,
    )
    wait_port(port)
    return proc, port


def start_vod(workers: int, access_log: bool) -> tuple[subprocess.Popen[bytes], int]:
    env = {
        **os.environ,
        "VOD_HOST": "127.0.0.1",
        "VOD_PORT": "0",
        "VOD_WORKERS": str(workers),
        "VOD_MEDIA_ROOT": str(MEDIA),
        "VOD_METRICS_DIR": str(BENCH / "metrics"),
        "VOD_ACCESS_LOG": "true" if access_log else "false",
        "VOD_SHUTDOWN_GRACE_SECONDS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "vod_stream"], env=env, stdout=subprocess.PIPE, text=False
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == "listening":
                port = int(entry["port"])
                break
    else:
        raise RuntimeError("vod-stream did not start")
    # keep draining its stdout so access logs never block it
    subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)  # ends with it
    proc.stdout.close()
    return proc, port


def check_same_bytes(port: int) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/big.mp4", headers={"Range": "bytes=1000-1999"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    with open(BIG, "rb") as handle:
        handle.seek(1000)
        assert body == handle.read(1000), f"wrong bytes from port {port}"


def run_wrk(port: int, scenario: Scenario, seconds: float) -> tuple[float, int, int]:
    """(requests/s or MB/s, error responses, requests completed)."""
    command = [
        "wrk",
        f"-t{scenario.threads}",
        f"-c{scenario.connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / scenario.script),
        f"http://127.0.0.1:{port}",
    ]
    if scenario.args:
        command += ["--", *scenario.args]
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: (.*)", out):
        errors += sum(int(n) for n in re.findall(r"\d+", match.group(1)))
    if scenario.unit == "req/s":
        value = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    else:
        number, unit = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out).groups()  # type: ignore[union-attr]
        scale = {"B": 1e-6, "KB": 1024 / 1e6, "MB": 1024**2 / 1e6, "GB": 1024**3 / 1e6}[unit]
        value = float(number) * scale
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return value, errors, done


def server_pids(name: str, root: int) -> list[int]:
    """The processes doing a server's work: nginx's workers (the master idles); Go's one
    process; vod-stream's main process (the Python side) and its data plane."""
    children = worker_pids(root)
    if name.startswith("nginx"):
        return children
    return [root, *children]


def worker_pids(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (nginx workers, vod-stream's data plane)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"resource_tracker" not in cmdline:
            found.append(int(entry))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(ln.split()[1]) for ln in status if ln.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


class RssSampler:
    """The peak of the summed RSS of some processes while a run goes on (sampled every 0.1 s)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.peak = dict.fromkeys(groups, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            for name, pids in self.groups.items():
                self.peak[name] = max(self.peak[name], sum(rss_kib(p) for p in pids))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--access-log", action="store_true", help="keep vod-stream's JSON access log on"
    )
    parser.add_argument(
        "--only",
        metavar="TEXT",
        help="run only the scenarios whose name contains TEXT (e.g. 'open range')",
    )
    parser.add_argument("--no-go", action="store_true", help="leave Go net/http out")
    args = parser.parse_args()
    scenarios = [s for s in SCENARIOS if args.only is None or args.only in s.name]
    if not scenarios:
        print(f"bench: no scenario matches {args.only!r}", file=sys.stderr)
        return 2
    for tool in ("wrk",) if args.no_go else ("wrk", "go"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is missing", file=sys.stderr)
            return 1
    ensure_file()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    servers: dict[str, int] = {}
    procs[BASELINE], servers[BASELINE] = start_nginx(args.workers, tuned=True)
    procs["nginx (stock)"], servers["nginx (stock)"] = start_nginx(args.workers, tuned=False)
    if not args.no_go:
        procs["Go net/http"], servers["Go net/http"] = start_go(args.workers)
    procs["vod-stream"], servers["vod-stream"] = start_vod(args.workers, args.access_log)
    pids = {name: server_pids(name, proc.pid) for name, proc in procs.items()}
    dataplane = worker_pids(procs["vod-stream"].pid)
    rss_groups = {**pids, "vod-stream data plane": dataplane}
    peak_rss: dict[str, int] = dict.fromkeys(rss_groups, 0)
    results: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}  # us per request, or CPU-s per GB
    errors: dict[str, int] = dict.fromkeys(servers, 0)
    try:
        for port in servers.values():
            check_same_bytes(port)
        for scenario in scenarios:
            if not scenario.cold:
                for port in servers.values():  # warm-up, not recorded
                    run_wrk(port, scenario, 1)
            for _ in range(args.rounds):
                for name, port in servers.items():
                    drop_cache() if scenario.cold else warm_cache()
                    before = cpu_seconds(pids[name])
                    with RssSampler(rss_groups) as sampler:
                        value, failed, done = run_wrk(port, scenario, args.seconds)
                    for group, kib in sampler.peak.items():
                        peak_rss[group] = max(peak_rss[group], kib)
                    used = cpu_seconds(pids[name]) - before
                    if scenario.unit == "req/s":
                        per = used / max(done, 1) * 1e6  # us per request
                    else:
                        per = used / max(value * args.seconds / 1000, 1e-9)  # CPU-s per GB
                    results.setdefault((scenario.name, name), []).append(value)
                    cpu.setdefault((scenario.name, name), []).append(per)
                    errors[name] += failed
                    label = "us CPU/request" if scenario.unit == "req/s" else "CPU-s/GB"
                    print(
                        f"  {scenario.name:26} {name:14} {value:10.1f} {scenario.unit:5} "
                        f"{per:8.2f} {label}",
                        flush=True,
                    )
    finally:
        for proc in procs.values():
            stop(proc)
    print()
    print(
        f"workers={args.workers}  rounds={args.rounds} x {args.seconds:g}s  "
        f"vod-stream access log={'on' if args.access_log else 'off'}  cores={os.cpu_count()}"
    )
    others = [name for name in servers if name != BASELINE]
    print(f"| scenario | {BASELINE} | " + " | ".join(others) + " | target (vod-stream) |")
    print("|---" * (3 + len(others)) + "|")
    for scenario in scenarios:
        unit = scenario.unit
        base = statistics.median(results[(scenario.name, BASELINE)])
        cells = [scenario.name, f"{base:.0f} {unit}"]
        for name in others:
            ours = statistics.median(results[(scenario.name, name)])
            cells.append(f"{ours:.0f} ({ours / base:.2f}x)")
        cells.append(f">= {scenario.target:.1f}x" if scenario.target else "-")
        print("| " + " | ".join(cells) + " |")
    print()
    print("Server CPU (user+system of the serving processes): us per request, or CPU-s per GB")
    print(f"| scenario | {BASELINE} | " + " | ".join(others) + " |")
    print("|---" * (2 + len(others)) + "|")
    for scenario in scenarios:
        base = statistics.median(cpu[(scenario.name, BASELINE)])
        cells = [scenario.name, f"{base:.2f}"]
        for name in others:
            ours = statistics.median(cpu[(scenario.name, name)])
            cells.append(f"{ours:.2f} ({ours / base:.2f}x)")
        print("| " + " | ".join(cells) + " |")
    print()
    print(
        "Peak RSS under load (MiB): "
        + ", ".join(f"{n} {k / 1024:.1f}" for n, k in peak_rss.items())
    )
    print(f"error responses: {errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
