"""A private Docker engine that exists only while images are built.

`private_engine()` starts Debian's dockerd on a socket in the cache folder (never the default
`/var/run/docker.sock`: `make demo` takes its kind path when a Docker engine answers there),
with its data root in the cache (so layer and build caches make warm rebuilds fast), no bridge,
no iptables rules, no IP forwarding and its own cgroup parent, so it changes no host network
state; builds then use `--network host`. On the way out it stops dockerd (and the containerd
dockerd started), unmounts what it left mounted under the folder, removes its cgroups and the
host files dockerd and its containerd create on their own when they were not there before
(`/etc/docker/key.json`, `/run/docker/plugins`, `/opt/containerd/{bin,lib}`; recorded before
dockerd starts, so a killed run is cleaned up by the next one). SIGTERM/SIGHUP during a build
also end in that clean-up.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from localcluster.processes import alive, spawn, stop_all
from localcluster.requirements import which

DEFAULT_SOCKET = Path("/var/run/docker.sock")
#: Containers dockerd runs (the builder's RUN steps) go below this cgroup in every hierarchy.
CGROUP_PARENT = "localcluster-images"
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: What dockerd 20.10 (and the containerd it starts) create outside the data and exec roots
#: whatever the flags say, deepest first: removed afterwards when they did not exist before.
HOST_LEFTOVERS = (
    Path("/etc/docker/key.json"),
    Path("/run/docker/plugins"),
    Path("/run/docker"),
    Path("/opt/containerd/bin"),
    Path("/opt/containerd/lib"),
    Path("/opt/containerd"),
)
START_TIMEOUT = 60.0
#: The longest path a unix socket may have (sun_path, including the final NUL).
MAX_SOCKET_PATH = 107


class EngineError(RuntimeError):
    pass


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def engine_answers(sock: Path, timeout: float = 2.0) -> bool:
    """True when a Docker engine answers `GET /_ping` on the unix socket `sock`."""
    connection = _UnixHTTPConnection(sock, timeout)
    try:
        connection.request("GET", "/_ping")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def default_socket_answers() -> bool:
    """Whether a Docker engine answers on the default socket (it must not be ours)."""
    return engine_answers(DEFAULT_SOCKET)


def docker_client() -> str:
    """The docker client of Debian's docker.io (the engine's own version), else one on PATH."""
    for candidate in ("/usr/bin/docker", which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise EngineError("no docker client: apt-get install docker.io")


@dataclass(frozen=True)
class Engine:
    """A running private dockerd: `docker(...)` runs the client against it."""

    folder: Path

    @property
    def socket(self) -> Path:
        return self.folder / "docker.sock"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DOCKER_HOST": f"unix://{self.socket}",
                "DOCKER_BUILDKIT": "0",  # the legacy builder: no Docker Hub look-up for `# syntax`
                "DOCKER_CONFIG": str(self.folder / "client"),  # no user credential helpers
            }
        )
        env.pop("DOCKER_CONTEXT", None)
        env.pop("DOCKER_TLS_VERIFY", None)
        return env

    def docker(self, *args: str, log: Path | None = None) -> str:
        """Run `docker args...` against this engine; stdout, or raise with the output's tail.

        With `log`, the output goes to that file (appended) instead (long builds)."""
        argv = [docker_client(), *args]
        if log is None:
            proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise EngineError(f"docker {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
            return proc.stdout
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            out.write(f"$ docker {' '.join(args)}\n")
            out.flush()
            code = subprocess.run(
                argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, check=False
            ).returncode
        if code != 0:
            raise EngineError(f"docker {' '.join(args)} failed (exit {code}):\n{tail(log)}")
        return ""

    def image_id(self, ref: str) -> str | None:
        """The id (config digest) of `ref` in this engine, None when it has no such image."""
        proc = subprocess.run(
            [docker_client(), "image", "inspect", "--format", "{{.Id}}", ref],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.stdout.strip() if proc.returncode == 0 else None


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def dockerd_argv(folder: Path) -> list[str]:
    """dockerd confined to `folder`, changing no host network state."""
    return [
        which("dockerd") or "dockerd",
        f"--host=unix://{folder / 'docker.sock'}",
        f"--data-root={folder / 'root'}",
        f"--exec-root={folder / 'exec'}",
        f"--pidfile={folder / 'docker.pid'}",
        f"--config-file={folder / 'daemon.json'}",  # not the machine's /etc/docker/daemon.json
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
        "--ip-forward=false",
        f"--cgroup-parent=/{CGROUP_PARENT}",
        "--log-level=warn",
    ]


def own_processes(marker: str) -> list[int]:
    """Processes (e.g. the containerd dockerd started in a session of its own) whose command
    line names our folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


def _terminate(pids: list[int], grace: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _unmount_below(folder: Path) -> list[str]:
    """Lazily unmount every mount point at or below `folder` (deepest first)."""
    prefix = str(folder.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    return points


def cgroup_dirs() -> list[Path]:
    """Our cgroup parent in each mounted hierarchy (v1 controllers, or the v2 root)."""
    if not CGROUP_ROOT.is_dir():
        return []
    hierarchies = [CGROUP_ROOT] if (CGROUP_ROOT / "cgroup.controllers").exists() else []
    hierarchies += [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()]
    return [h / CGROUP_PARENT for h in hierarchies if (h / CGROUP_PARENT).is_dir()]


def remove_cgroups() -> list[Path]:
    """rmdir our cgroup parent and everything below it (emptied cgroups only); returns what is
    left (cgroups that still hold processes)."""
    left: list[Path] = []
    for top in cgroup_dirs():
        for directory in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                directory.rmdir()
        try:
            top.rmdir()
        except OSError:
            left.append(top)
    return left


def _absent(paths: tuple[Path, ...]) -> list[Path]:
    return [path for path in paths if not path.exists()]


def _remove_created(paths: list[Path]) -> None:
    for path in paths:  # files first, then the (then empty) directories; never anything else
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()


def _leftovers_record(folder: Path) -> Path:
    return folder / "host-leftovers.json"


def stop_engine(folder: Path) -> None:
    """Stop a private dockerd of `folder` (also one a killed build left running) and undo what
    it did to the host: its containerd, mounts, cgroups and the host files it created."""
    stop_all(folder, ["dockerd"], marker=str(folder), grace=30)
    _terminate(own_processes(str(folder / "exec")), grace=10)
    _unmount_below(folder)
    remove_cgroups()
    record = _leftovers_record(folder)
    if record.is_file():
        _remove_created([Path(p) for p in json.loads(record.read_text())])
        record.unlink()


@contextlib.contextmanager
def _signals_as_exit() -> Iterator[None]:
    """SIGTERM/SIGHUP end the block through SystemExit, so the engine is stopped and cleaned
    up (the default action would leave it to PR_SET_PDEATHSIG, which only kills dockerd)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def private_engine(folder: Path) -> Iterator[Engine]:
    """Run a private dockerd confined to `folder` for the duration of the `with` block."""
    folder.mkdir(parents=True, exist_ok=True)
    engine = Engine(folder)
    if len(str(folder / "exec" / "containerd" / "containerd.sock.ttrpc")) > MAX_SOCKET_PATH:
        raise EngineError(f"{folder} is too long a path for dockerd's sockets; set XDG_CACHE_HOME")
    stop_engine(folder)  # a previous run's engine, if one survived
    engine.socket.unlink(missing_ok=True)
    (folder / "dockerd.log").unlink(missing_ok=True)
    (folder / "daemon.json").write_text("{}\n")
    (folder / "client").mkdir(exist_ok=True)
    (folder / "client" / "config.json").write_text(json.dumps({"auths": {}}) + "\n")
    # Written before dockerd starts, so a run killed mid-way is cleaned up by the next one.
    created = [str(path) for path in _absent(HOST_LEFTOVERS)]
    _leftovers_record(folder).write_text(json.dumps(created) + "\n")
    with _signals_as_exit():
        proc = spawn("dockerd", dockerd_argv(folder), folder, folder, die_with_parent=True)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not engine_answers(engine.socket, timeout=1.0):
                if proc.poll() is not None:
                    raise EngineError(
                        f"dockerd exited ({proc.returncode}):\n{tail(folder / 'dockerd.log')}"
                    )
                if time.monotonic() > deadline:
                    raise EngineError(
                        f"dockerd did not answer within {START_TIMEOUT:.0f} s:\n"
                        f"{tail(folder / 'dockerd.log')}"
                    )
                time.sleep(0.1)
            yield engine
        finally:
            stop_engine(folder)
