"""Start and stop the control plane's processes: own process groups, pid files, TERM then KILL.

Each start also records its command line (`<name>.launch.json` beside the pid file), so that a
component can be started again exactly as it was (`respawn`: the chaos tests restart the API
server), and a running one can be signalled by name (`signal_component`: SIGSTOP/SIGCONT).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
#: Popen objects started by this Python process, so stopping them also reaps them.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the parent dies (Linux), even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    name: str, argv: list[str], log_dir: Path, pid_dir: Path, *, die_with_parent: bool
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session (its own process group), log to log_dir/name.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    pid_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    _children[proc.pid] = proc
    (pid_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
    launch = {"argv": argv, "die_with_parent": die_with_parent}
    (pid_dir / f"{name}.launch.json").write_text(json.dumps(launch))
    return proc


def respawn(
    name: str, log_dir: Path, pid_dir: Path, extra_args: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """Start `name` again with the command line it was first started with, plus `extra_args`
    for this start only (a later flag overrides an earlier one of the same name; the next
    respawn goes back to the first command line). The caller stops the old process first.

    With die_with_parent, the kernel kills it when the *calling thread* ends (PR_SET_PDEATHSIG):
    call from a thread that lives as long as the cluster (the main thread)."""
    recorded = pid_dir / f"{name}.launch.json"
    launch = json.loads(recorded.read_text())
    argv = [*launch["argv"], *extra_args]
    proc = spawn(name, argv, log_dir, pid_dir, die_with_parent=bool(launch["die_with_parent"]))
    recorded.write_text(json.dumps(launch))
    return proc


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def owned_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in `pid_file` if that process still runs and its command line mentions `marker`

    (the cluster's folder), so a recycled pid is never signalled."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    child = _children.get(pid)
    if child is not None:  # started by this process: authoritative (cmdline may still be empty)
        return pid if child.poll() is None else None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if marker in cmdline and alive(pid) else None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def signal_component(pid_dir: Path, name: str, marker: str, sig: signal.Signals) -> int:
    """Send `sig` to the running component's process group; its pid. ProcessLookupError when
    it does not run."""
    pid = owned_pid(pid_dir / f"{name}.pid", marker)
    if pid is None:
        raise ProcessLookupError(f"{name} is not running")
    os.killpg(pid, sig)
    return pid


def kill(pid_dir: Path, name: str, marker: str, timeout: float = 10) -> None:
    """SIGKILL the component's process group and wait until it is gone (reaped when ours)."""
    pid = signal_component(pid_dir, name, marker, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while alive(pid):
        proc = _children.get(pid)
        if proc is not None:
            proc.poll()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} (pid {pid}) still runs {timeout:.0f} s after SIGKILL")
        time.sleep(0.05)
    _reap(pid)


def _reap(pid: int) -> None:
    proc = _children.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)


def stop_all(pid_dir: Path, names: list[str], marker: str, grace: float = 15) -> list[str]:
    """SIGTERM every named process group, wait up to `grace` s, SIGKILL the rest.

    Returns the names that had to be killed. Pid files are removed."""
    pids = {name: owned_pid(pid_dir / f"{name}.pid", marker) for name in names}
    running = {name: pid for name, pid in pids.items() if pid is not None}
    for pid in running.values():
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(pid) for pid in running.values()):
        for pid in running.values():
            proc = _children.get(pid)
            if proc is not None:
                proc.poll()
        time.sleep(0.1)
    killed = [name for name, pid in running.items() if alive(pid)]
    for name in killed:
        _signal_group(running[name], signal.SIGKILL)
    for pid in running.values():
        _reap(pid)
        # Anything else left in the group (children of the component) goes too.
        _signal_group(pid, signal.SIGKILL)
    for name in names:
        (pid_dir / f"{name}.pid").unlink(missing_ok=True)
    return killed
