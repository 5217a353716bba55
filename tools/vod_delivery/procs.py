"""Background processes the demo starts, tracked by pid files so `demo down` stops exactly them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def running(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file` if that very process (same command line) still runs."""
    if not pid_file.exists():
        return None
    pid_text, _, cmdline = pid_file.read_bytes().partition(b"\n")
    try:
        pid = int(pid_text)
    except ValueError:
        return None
    return pid if _cmdline(pid) == cmdline else None


def start(
    argv: Sequence[str], env: Mapping[str, str], log: Path, pid_file: Path, cwd: Path | None = None
) -> int:
    """Start `argv` detached (own session), output to `log`; record its pid and command line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
        )
    cmdline = b""
    for _ in range(50):  # /proc/PID/cmdline is filled once exec() has happened
        cmdline = _cmdline(proc.pid) or b""
        if cmdline.split(b"\0")[0].endswith(os.fsencode(Path(argv[0]).name)):
            break
        time.sleep(0.02)
    pid_file.write_bytes(f"{proc.pid}\n".encode() + cmdline)
    return proc.pid


def stop(pid_file: Path, timeout: float = 15.0) -> bool:
    """Stop the process recorded in `pid_file` and its process group (SIGTERM, then SIGKILL).

    `start` makes each process a session leader, so its group holds everything it spawned
    (vod-stream's workers): signalling the group leaves no orphan holding a port.
    True if the process was running.
    """
    pid = running(pid_file)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if _cmdline(pid) is None and not _group_alive(pid):
            return True
        time.sleep(0.1)
    _signal_group(pid, signal.SIGKILL)
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def free_port(preferred: int | None = None) -> int:
    """`preferred` if it is free on 127.0.0.1, else a port the kernel picks."""
    candidates = [preferred, 0] if preferred else [0]
    for port in candidates:
        with socket.socket() as sock:
            # Like the servers we start: a port whose old connections sit in TIME_WAIT is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port or 0))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port on 127.0.0.1")


def wait_http(url: str, timeout: float, alive: Path | None = None) -> None:
    """Wait until `url` answers 2xx; fail early if the process of `alive` (a pid file) died."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if alive is not None and running(alive) is None:
            raise RuntimeError(f"the process behind {url} exited ({last})")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s ({last})")
