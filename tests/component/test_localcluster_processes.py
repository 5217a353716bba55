"""localcluster's process levers on a real process: a component started again with its first
command line (extra arguments for one start only), paused and resumed, killed."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from localcluster import processes

pytestmark = pytest.mark.component

ARGV = ["sh", "-c", "sleep 60", "sleeper"]


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def becomes(check: Callable[[], bool], timeout: float = 5) -> bool:
    """Whether `check` holds within `timeout` (a signal is delivered asynchronously)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_component_restarts_as_it_was_started_and_pauses(tmp_path: Path) -> None:
    logs, pids, marker = tmp_path / "logs", tmp_path / "pids", str(tmp_path)
    first = processes.spawn("sleeper", ARGV, logs, pids, die_with_parent=True)
    try:
        assert processes.signal_component(pids, "sleeper", marker, signal.SIGSTOP) == first.pid
        assert becomes(lambda: state(first.pid) == "T")
        processes.signal_component(pids, "sleeper", marker, signal.SIGCONT)
        assert becomes(lambda: state(first.pid) != "T")

        processes.kill(pids, "sleeper", marker)
        assert not processes.alive(first.pid)
        with pytest.raises(ProcessLookupError):
            processes.signal_component(pids, "sleeper", marker, signal.SIGCONT)

        second = processes.respawn("sleeper", logs, pids, extra_args=("--once",))
        assert cmdline(second.pid) == [*ARGV, "--once"]
        processes.kill(pids, "sleeper", marker)
        third = processes.respawn("sleeper", logs, pids)
        assert cmdline(third.pid) == ARGV  # the extra argument was for one start only
        assert processes.owned_pid(pids / "sleeper.pid", marker) == third.pid
    finally:
        processes.stop_all(pids, ["sleeper"], marker, grace=2)
