"""Benchmark vod-stream against nginx (tuned and stock) and Go net/http on loopback with wrk.

Two comparisons, same worker/thread count for every server (--workers, default the CPUs):
  access logs off:
    nginx (tuned)     sendfile on, open_file_cache on, tcp_nopush off, access log off: the baseline
    nginx (stock)     a common stock config: sendfile on, tcp_nopush on, no open_file_cache, log
    Go net/http       http.FileServer (standard library), GOMAXPROCS = workers (built offline)
    vod-stream        the data plane, access log off
  access logs on (both JSON lines to a file, one per request):
    nginx (tuned+log) tuned nginx with `access_log ... json buffer=64k flush=1s`: the baseline
    vod-stream (log)  the data plane with its access log on (VOD_ACCESS_LOG=true, stdout to a file)
Scenarios (each run bounded in time, servers interleaved round by round, medians reported):
  64 KiB random ranges of a 1 GiB file     (requests/s, 32 connections)
  1-byte random ranges                      (requests/s)
  2 MiB random ranges (HLS-segment-sized)   (MB/s)
  one open range (bytes=0-) of the file     (MB/s, one connection)
  cold page cache: 64 KiB random ranges after the file is dropped from the page cache
Also: server CPU per request and per byte (CPU-s per GB sent, every scenario), and the peak RSS
of each server under load (for vod-stream: the data plane process and the whole server, data
plane + Python side).

Usage: python tools/bench/bench_stream.py [--seconds 5] [--rounds 3] [--workers N] [--only TEXT]
           [--logs off|on|both] [--budget SECONDS] [--candidate SO]
The 1 GiB file lives in .bench/ (git-ignored) and is created once. When the time budget runs
out, or on SIGINT/SIGTERM, the runs stop and the tables are printed with what was measured.
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
    target: float  # required ratio to tuned nginx, access logs off (0: none)
    log_target: float  # required ratio to tuned nginx, both logging (0: none)
    cold: bool = False  # the file is dropped from the page cache before each run


SCENARIOS = (
    Scenario(
        "64 KiB random ranges", "req/s", "range.lua", (str(BIG_SIZE), "65536"), 1, 32, 1.0, 1.0
    ),
    Scenario("1-byte random ranges", "req/s", "range.lua", (str(BIG_SIZE), "1"), 1, 32, 1.2, 1.0),
    Scenario(
        "2 MiB random ranges", "MB/s", "range.lua", (str(BIG_SIZE), "2097152"), 1, 8, 1.0, 0.0
    ),
    Scenario("open range of 1 GiB", "MB/s", "open.lua", (), 1, 1, 1.0, 0.0),
    Scenario(
        "64 KiB ranges, cold cache",
        "req/s",
        "range.lua",
        (str(BIG_SIZE), "65536"),
        1,
        32,
        0.0,
        0.0,
        True,
    ),
)
BASELINE = "nginx (tuned)"
LOG_BASELINE = "nginx (tuned+log)"
# the comparisons: (title, baseline, the others, which target applies)
Comparison = tuple[str, str, tuple[str, ...], str]
OFF: Comparison = (
    "access logs off",
    BASELINE,
    ("nginx (stock)", "Go net/http", "vod-stream"),
    "target",
)
ON: Comparison = (
    "access logs on (JSON, buffered)",
    LOG_BASELINE,
    ("vod-stream (log)",),
    "log_target",
)
# nginx's JSON access log with the fields of vod-stream's records
NGINX_JSON_LOG = (
    'log_format vodjson escape=json \'{"time":"$time_iso8601","method":"$request_method",'
    '"path":"$uri","status":$status,"bytes":$body_bytes_sent,'
    '"duration_ms":$request_time,"range":"$http_range","remote":"$remote_addr",'
    '"user_agent":"$http_user_agent","request_id":"$request_id"}\';'
)


class OutOfTime(Exception):
    """The time budget ran out, or the run was interrupted: report what was measured."""


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


def start_nginx(
    workers: int, tuned: bool, log: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    """nginx tuned (access log off, or `log`: a buffered JSON access log) or stock."""
    port = free_port()
    prefix = BENCH / ("nginx-stock" if not tuned else "nginx-log" if log else "nginx")
    prefix.mkdir(exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""
    if tuned:
        logging = (
            f"{NGINX_JSON_LOG}\n  access_log {prefix}/access.log vodjson buffer=64k flush=1s;"
            if log
            else "access_log off;"
        )
        http = f"""{logging} sendfile on; tcp_nopush off;
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


def candidate_package(extension: Path) -> Path:
    """A copy of the vod_stream package with another build of its data plane (`--candidate`), in
    .bench/candidate; returns the folder to put first on PYTHONPATH."""
    import vod_stream

    root = BENCH / "candidate"
    shutil.rmtree(root, ignore_errors=True)
    package = root / "vod_stream"
    shutil.copytree(Path(vod_stream.__file__).parent, package)
    (built,) = package.glob("_dataplane*.so")
    shutil.copyfile(extension, built)
    return root


def start_vod(
    workers: int, access_log: bool, candidate: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """vod-stream with its stdout (the access log, when on) appended to a file, as nginx's;
    `candidate`: a folder holding another build of the package (candidate_package)."""
    suffix = "-candidate" if candidate else ""
    log_path = BENCH / (f"vod-access{suffix}.log" if access_log else f"vod{suffix}.log")
    path = os.pathsep.join(p for p in (str(candidate or ""), os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "VOD_HOST": "127.0.0.1",
        "VOD_PORT": "0",
        "VOD_WORKERS": str(workers),
        "VOD_MEDIA_ROOT": str(MEDIA),
        "VOD_METRICS_DIR": str(BENCH / (("metrics-log" if access_log else "metrics") + suffix)),
        "VOD_ACCESS_LOG": "true" if access_log else "false",
        "VOD_SHUTDOWN_GRACE_SECONDS": "1",
    }
    log_path.write_bytes(b"")
    with open(log_path, "ab") as log:  # O_APPEND: the file can be truncated between runs
        proc = subprocess.Popen([sys.executable, "-m", "vod_stream"], env=env, stdout=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log_path.read_bytes().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("event") == "listening":
                    return proc, int(entry["port"])
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("vod-stream did not start")


def truncate_logs() -> None:
    """Empty the access logs between runs (the servers append to them), so a long benchmark
    does not fill the disk."""
    for path in (BENCH / "nginx-log" / "access.log", BENCH / "nginx-stock" / "access.log"):
        with contextlib.suppress(OSError):
            os.truncate(path, 0)
    for name in ("vod-access.log", "vod-access-candidate.log"):
        with contextlib.suppress(OSError):
            os.truncate(BENCH / name, 0)


def check_same_bytes(port: int) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/big.mp4", headers={"Range": "bytes=1000-1999"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    with open(BIG, "rb") as handle:
        handle.seek(1000)
        assert body == handle.read(1000), f"wrong bytes from port {port}"


def run_wrk(port: int, scenario: Scenario, seconds: float) -> tuple[float, int, int, float]:
    """(requests/s or MB/s, error responses, requests completed, MB/s)."""
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
    number, unit = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out).groups()  # type: ignore[union-attr]
    scale = {"B": 1e-6, "KB": 1024 / 1e6, "MB": 1024**2 / 1e6, "GB": 1024**3 / 1e6}[unit]
    megabytes = float(number) * scale
    if scenario.unit == "req/s":
        value = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    else:
        value = megabytes
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return value, errors, done, megabytes


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


def machine_busy_seconds() -> float:
    """CPU time every core spent busy so far (all but idle and iowait, from /proc/stat): the
    server, wrk, and the kernel's loopback work, wherever the kernel charged it."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


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


Cell = tuple[str, str]  # (scenario, server)


@dataclass
class Measured:
    """What the runs gave so far, per (scenario, server): one entry per round."""

    value: dict[Cell, list[float]]
    cpu: dict[Cell, list[float]]  # us per request, or CPU-s per GB (by the scenario's unit)
    cpu_per_gb: dict[Cell, list[float]]  # CPU-s per GB sent, every scenario
    # the whole machine's busy CPU (server, wrk, kernel) per request or per GB, by unit
    machine: dict[Cell, list[float]]
    errors: dict[str, int]


def median(samples: dict[Cell, list[float]], cell: Cell) -> float | None:
    values = samples.get(cell)
    return statistics.median(values) if values else None


def print_tables(measured: Measured, scenarios: list[Scenario], comparison: Comparison) -> None:
    """Throughput against the comparison's baseline, then CPU per request (or per GB), then CPU
    per byte; a cell not measured (out of time) shows as `-`."""
    title, baseline, others, target_field = comparison
    print(f"{title}: throughput (median), ratio to {baseline}")
    print(f"| scenario | {baseline} | " + " | ".join(others) + " | target |")
    print("|---" * (3 + len(others)) + "|")
    for scenario in scenarios:
        base = median(measured.value, (scenario.name, baseline))
        cells = [scenario.name, "-" if base is None else f"{base:.0f} {scenario.unit}"]
        for name in others:
            ours = median(measured.value, (scenario.name, name))
            cells.append(
                "-" if ours is None else f"{ours:.0f}" + (f" ({ours / base:.2f}x)" if base else "")
            )
        target = float(getattr(scenario, target_field))
        cells.append(f">= {target:.1f}x" if target else "-")
        print("| " + " | ".join(cells) + " |")
    for heading, samples in (
        (
            "server CPU (user+system): us per request, or CPU-s per GB for MB/s scenarios",
            measured.cpu,
        ),
        ("server CPU per byte: CPU-s per GB sent", measured.cpu_per_gb),
        (
            "whole-machine CPU (server, wrk and the kernel's loopback work, wherever the kernel "
            "charged it): us per request, or CPU-s per GB",
            measured.machine,
        ),
    ):
        print(f"{title}: {heading}")
        print(f"| scenario | {baseline} | " + " | ".join(others) + " |")
        print("|---" * (2 + len(others)) + "|")
        for scenario in scenarios:
            base = median(samples, (scenario.name, baseline))
            cells = [scenario.name, "-" if base is None else f"{base:.2f}"]
            for name in others:
                ours = median(samples, (scenario.name, name))
                cells.append(
                    "-"
                    if ours is None
                    else f"{ours:.2f}" + (f" ({ours / base:.2f}x)" if base else "")
                )
            print("| " + " | ".join(cells) + " |")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--logs",
        choices=("off", "on", "both"),
        default="both",
        help="the comparisons to run: access logs off, on (buffered JSON on both sides), or both",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=0,
        metavar="SECONDS",
        help="stop measuring after this long and print what was measured (0: no limit)",
    )
    parser.add_argument(
        "--only",
        metavar="TEXT",
        help="run only the scenarios whose name contains TEXT (e.g. 'open range')",
    )
    parser.add_argument("--no-go", action="store_true", help="leave Go net/http out")
    parser.add_argument(
        "--candidate",
        type=Path,
        metavar="SO",
        help="another build of the data plane (a _dataplane .so, e.g. streaming/dataplane/target/"
        "release/lib_dataplane.so built with --features extension-module), run beside the "
        "installed one in both comparisons: measures a change against the build before it",
    )
    args = parser.parse_args()
    scenarios = [s for s in SCENARIOS if args.only is None or args.only in s.name]
    if not scenarios:
        print(f"bench: no scenario matches {args.only!r}", file=sys.stderr)
        return 2
    for tool in ("wrk",) if args.no_go or args.logs == "on" else ("wrk", "go"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is missing", file=sys.stderr)
            return 1
    comparisons = [
        c for c, wanted in ((OFF, ("off", "both")), (ON, ("on", "both"))) if args.logs in wanted
    ]
    if args.no_go:
        comparisons = [
            (t, b, tuple(o for o in others if o != "Go net/http"), f)
            for t, b, others, f in comparisons
        ]

    def interrupted(signum: int, _frame: object) -> None:
        raise OutOfTime(signal.Signals(signum).name)

    if args.candidate is not None:
        comparisons = [
            (t, b, (*others, f"{others[-1]} candidate"), f) for t, b, others, f in comparisons
        ]
        candidate = candidate_package(args.candidate)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    deadline = time.monotonic() + args.budget if args.budget > 0 else None
    ensure_file()
    starters = {
        BASELINE: lambda: start_nginx(args.workers, tuned=True),
        "nginx (stock)": lambda: start_nginx(args.workers, tuned=False),
        "Go net/http": lambda: start_go(args.workers),
        "vod-stream": lambda: start_vod(args.workers, access_log=False),
        LOG_BASELINE: lambda: start_nginx(args.workers, tuned=True, log=True),
        "vod-stream (log)": lambda: start_vod(args.workers, access_log=True),
        "vod-stream candidate": lambda: start_vod(args.workers, False, candidate),
        "vod-stream (log) candidate": lambda: start_vod(args.workers, True, candidate),
    }
    wanted = [name for _, base, others, _ in comparisons for name in (base, *others)]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    servers: dict[str, int] = {}
    measured = Measured({}, {}, {}, {}, dict.fromkeys(wanted, 0))
    peak_rss: dict[str, int] = {}
    stopped_early = ""
    try:
        for name in wanted:
            procs[name], servers[name] = starters[name]()
        pids = {name: server_pids(name, proc.pid) for name, proc in procs.items()}
        rss_groups = dict(pids)
        for name in (n for n in procs if n.startswith("vod-stream")):
            if name in procs:
                rss_groups[f"{name} data plane"] = worker_pids(procs[name].pid)
        peak_rss = dict.fromkeys(rss_groups, 0)
        for port in servers.values():
            check_same_bytes(port)
        for scenario in scenarios:
            if not scenario.cold:
                for port in servers.values():  # warm-up, not recorded
                    if deadline is not None and time.monotonic() + 1 > deadline:
                        raise OutOfTime(f"the {args.budget:g} s budget")
                    run_wrk(port, scenario, 1)
            for _ in range(args.rounds):
                for name, port in servers.items():
                    if deadline is not None and time.monotonic() + args.seconds > deadline:
                        raise OutOfTime(f"the {args.budget:g} s budget")
                    drop_cache() if scenario.cold else warm_cache()
                    truncate_logs()
                    before = cpu_seconds(pids[name])
                    machine_before = machine_busy_seconds()
                    with RssSampler(rss_groups) as sampler:
                        value, failed, done, megabytes = run_wrk(port, scenario, args.seconds)
                    for group, kib in sampler.peak.items():
                        peak_rss[group] = max(peak_rss[group], kib)
                    used = cpu_seconds(pids[name]) - before
                    machine_used = machine_busy_seconds() - machine_before
                    per_gb = used / max(megabytes * args.seconds / 1000, 1e-9)
                    per = used / max(done, 1) * 1e6 if scenario.unit == "req/s" else per_gb
                    machine_per = (
                        machine_used / max(done, 1) * 1e6
                        if scenario.unit == "req/s"
                        else machine_used / max(megabytes * args.seconds / 1000, 1e-9)
                    )
                    cell = (scenario.name, name)
                    measured.value.setdefault(cell, []).append(value)
                    measured.cpu.setdefault(cell, []).append(per)
                    measured.cpu_per_gb.setdefault(cell, []).append(per_gb)
                    measured.machine.setdefault(cell, []).append(machine_per)
                    measured.errors[name] += failed
                    label = "us CPU/request" if scenario.unit == "req/s" else "CPU-s/GB"
                    print(
                        f"  {scenario.name:26} {name:18} {value:10.1f} {scenario.unit:5} "
                        f"{per:8.2f} {label} {per_gb:8.2f} CPU-s/GB  machine {machine_per:8.2f}",
                        flush=True,
                    )
    except OutOfTime as why:
        stopped_early = str(why)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as why:
        # e.g. wrk killed with the rest of the process group by `timeout`
        stopped_early = f"a run failed: {why}"
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for proc in procs.values():
            stop(proc)
    print()
    if stopped_early:
        print(f"STOPPED EARLY ({stopped_early}): partial results, cells not measured show '-'")
    print(
        f"workers={args.workers}  rounds={args.rounds} x {args.seconds:g}s  cores={os.cpu_count()}"
    )
    print()
    for comparison in comparisons:
        print_tables(measured, scenarios, comparison)
    print(
        "Peak RSS under load (MiB): "
        + ", ".join(f"{n} {k / 1024:.1f}" for n, k in peak_rss.items())
    )
    print(f"error responses: {measured.errors}")
    return 3 if stopped_early else 0


if __name__ == "__main__":
    sys.exit(main())
