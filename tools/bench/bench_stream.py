"""Benchmark vod-stream against nginx (sendfile on, same worker count) on loopback with wrk.

Scenarios (each run bounded in time, servers interleaved round by round, median reported):
  range64k  random 64 KiB ranges of a 1 GiB file        (requests/s)
  range1b   random 1-byte ranges of the same file        (requests/s)
  open      one open range (bytes=0-) of the 1 GiB file  (MB/s, one connection)

Usage: python tools/bench/bench_stream.py [--seconds 5] [--rounds 3] [--workers N]
The 1 GiB file lives in .bench/ (git-ignored) and is created once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
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
    target: float  # required ratio to nginx


SCENARIOS = (
    Scenario("64 KiB random ranges", "req/s", "range.lua", (str(BIG_SIZE), "65536"), 1, 32, 0.6),
    Scenario("1-byte random ranges", "req/s", "range.lua", (str(BIG_SIZE), "1"), 1, 32, 0.0),
    Scenario("open range of 1 GiB", "MB/s", "open.lua", (), 1, 1, 0.95),
)


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


def start_nginx(workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    prefix = BENCH / "nginx"
    prefix.mkdir(exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = f"""
{user}
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush off;
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


def start_vod(
    workers: int, access_log: bool, fast_path: bool = True
) -> tuple[subprocess.Popen[bytes], int]:
    env = {
        **os.environ,
        "VOD_HOST": "127.0.0.1",
        "VOD_PORT": "0",
        "VOD_WORKERS": str(workers),
        "VOD_MEDIA_ROOT": str(MEDIA),
        "VOD_METRICS_DIR": str(BENCH / "metrics"),
        "VOD_ACCESS_LOG": "true" if access_log else "false",
        "VOD_FAST_PATH": "true" if fast_path else "false",
        "VOD_SHUTDOWN_GRACE_SECONDS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "vod_stream"], env=env, stdout=subprocess.PIPE, text=False
    )
    assert proc.stdout is not None
    for line in proc.stdout:
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


def worker_pids(parent: int) -> list[int]:
    """The serving processes under ``parent`` (nginx workers, vod-stream workers)."""
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
        "--aiohttp-path",
        action="store_true",
        help="also measure vod-stream with VOD_FAST_PATH=false (every request through aiohttp)",
    )
    parser.add_argument(
        "--only",
        metavar="TEXT",
        help="run only the scenarios whose name contains TEXT (e.g. 'open range')",
    )
    args = parser.parse_args()
    scenarios = [s for s in SCENARIOS if args.only is None or args.only in s.name]
    if not scenarios:
        print(f"bench: no scenario matches {args.only!r}", file=sys.stderr)
        return 2
    for tool in ("wrk",):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is missing (make bench-stream installs it)", file=sys.stderr)
            return 1
    ensure_file()
    nginx, nginx_port = start_nginx(args.workers)
    vod, vod_port = start_vod(args.workers, args.access_log)
    servers = {"nginx": nginx_port, "vod-stream": vod_port}
    procs = {"nginx": nginx, "vod-stream": vod}
    if args.aiohttp_path:
        procs["aiohttp path"], servers["aiohttp path"] = start_vod(
            args.workers, args.access_log, fast_path=False
        )
    pids = {name: worker_pids(proc.pid) for name, proc in procs.items()}
    results: dict[tuple[str, str], list[float]] = {}
    cpu_per_request: dict[tuple[str, str], list[float]] = {}
    errors: dict[str, int] = dict.fromkeys(servers, 0)
    try:
        for port in servers.values():
            check_same_bytes(port)
        for scenario in scenarios:
            for port in servers.values():  # warm-up, not recorded
                run_wrk(port, scenario, 1)
            for _ in range(args.rounds):
                for name, port in servers.items():
                    warm_cache()
                    before = cpu_seconds(pids[name])
                    value, failed, done = run_wrk(port, scenario, args.seconds)
                    used = (cpu_seconds(pids[name]) - before) / max(done, 1) * 1e6
                    results.setdefault((scenario.name, name), []).append(value)
                    cpu_per_request.setdefault((scenario.name, name), []).append(used)
                    errors[name] += failed
                    print(
                        f"  {scenario.name:24} {name:12} {value:10.1f} {scenario.unit:5} "
                        f"{used:10.1f} us server CPU/request",
                        flush=True,
                    )
    finally:
        for proc in procs.values():
            stop(proc)
    print()
    print(
        f"workers={args.workers}  rounds={args.rounds} x {args.seconds:g}s  "
        f"access log={'on' if args.access_log else 'off'} (nginx: off)  cores={os.cpu_count()}"
    )
    others = [name for name in servers if name != "nginx"]
    print("| scenario | nginx | " + " | ".join(f"{n} | ratio" for n in others) + " | target |")
    print("|---" * (3 + 2 * len(others)) + "|")
    for scenario in scenarios:
        unit = scenario.unit
        base = statistics.median(results[(scenario.name, "nginx")])
        cells = [scenario.name, f"{base:.0f} {unit}"]
        for name in others:
            ours = statistics.median(results[(scenario.name, name)])
            cells += [f"{ours:.0f} {unit}", f"{ours / base:.2f}"]
        cells.append(f">= {scenario.target:.2f}" if scenario.target else "-")
        print("| " + " | ".join(cells) + " |")
    print()
    print("Server CPU time per request (user+system of the worker processes; robust to load):")
    print("| scenario | nginx | " + " | ".join(others) + " |")
    print("|---" * (2 + len(others)) + "|")
    for scenario in scenarios:
        cells = [scenario.name] + [
            f"{statistics.median(cpu_per_request[(scenario.name, n)]):.1f} us"
            for n in ["nginx", *others]
        ]
        print("| " + " | ".join(cells) + " |")
    print(f"error responses: {errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
