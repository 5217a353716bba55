"""Operator replicas behind one Lease, kept running as a Deployment's kubelet would: a replica
that exits is started again (after a short delay), and every exit is recorded as one the test
caused (`kill_leader`) or not. "No crash loop" is then: no exit the test did not cause."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.conftest import OperatorProcess, Replica

#: The elector's log lines when a replica starts or stops leading (election.py).
LEAD = re.compile(r"^\S+ (\d\d:\d\d:\d\d),\d+ \w+ vod_operator\.election: (leading|lost the lease)")

#: Seconds between a replica's exit and its next start (a kubelet waits 10 s, doubling; a test
#: restarts sooner so that a killed leader's successor always has a standby behind it).
RESTART_DELAY = 1.0


@dataclass
class Exit:
    """One exit of a replica: when (monotonic), its return code, and whether the test killed it."""

    at: float
    label: str
    returncode: int | None
    killed: bool


@dataclass
class Member:
    label: str
    replica: Replica
    starts: int = 0
    #: The test SIGKILLed the current process (its exit is expected).
    killing: bool = False
    #: When the last exit was seen; the next start waits until RESTART_DELAY after it.
    exited_at: float | None = None


@dataclass
class Replicas:
    """`count` operator processes with `env` (leader election on); logs in `log_dir`."""

    env: dict[str, str]
    log_dir: Path
    count: int = 2
    members: list[Member] = field(default_factory=list)
    exits: list[Exit] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        for index in range(self.count):
            label = chr(ord("a") + index)
            process = OperatorProcess(env=self.env, log_path=self.log_dir / f"operator-{label}.log")
            member = Member(label, Replica(process))
            self.members.append(member)
            self._start(member)
        self._thread = threading.Thread(target=self._supervise, name="replicas", daemon=True)
        self._thread.start()

    def _start(self, member: Member) -> None:
        member.starts += 1
        member.killing = False
        member.replica.process.start()  # waits for its liveness endpoint

    def _supervise(self) -> None:
        while not self._stopping.wait(0.2):
            for member in self.members:
                with self._lock:
                    self._tend(member)

    def _tend(self, member: Member) -> None:
        """Record an exit of `member`, and start it again once RESTART_DELAY has passed."""
        proc = member.replica.process
        if proc.process is not None:
            code = proc.process.poll()
            if code is None:
                return
            now = time.monotonic()
            self.exits.append(Exit(now, member.label, code, member.killing))
            proc.process = None
            member.exited_at = now
        if self._stopping.is_set():
            return
        if member.exited_at is not None and time.monotonic() < member.exited_at + RESTART_DELAY:
            return
        try:
            self._start(member)
        except AssertionError:  # exited while starting: the next round records and retries
            member.exited_at = time.monotonic()

    def leader(self) -> Member | None:
        """The member whose /metrics says it leads (None during a hand-over)."""
        for member in self.members:
            with contextlib.suppress(AssertionError):
                if member.replica.process.process is not None and member.replica.leading():
                    return member
        return None

    def kill_leader(self) -> str | None:
        """SIGKILL the leading replica (the supervisor starts it again); its label, or None
        when no replica leads at this moment."""
        with self._lock:
            member = self.leader()
            if member is None or member.replica.process.process is None:
                return None
            member.killing = True
            member.replica.process.process.kill()
            return member.label

    def unexpected_exits(self) -> list[Exit]:
        return [e for e in self.exits if not e.killed]

    def restarts(self) -> int:
        return sum(m.starts - 1 for m in self.members)

    def lead_changes(self) -> list[str]:
        """Every time a replica took or lost the lead, oldest first ("03:23:19 a lost")."""
        changes = []
        for member in self.members:
            text = member.replica.process.log_path.read_text(errors="replace")
            for line in text.splitlines():
                match = LEAD.match(line)
                if match:
                    what = "leads" if match.group(2) == "leading" else "lost the lead"
                    changes.append(f"{match.group(1)} {member.label} {what}")
        return sorted(changes)

    def summary(self) -> str:
        killed = sum(e.killed for e in self.exits)
        unexpected = ", ".join(f"{e.label} rc={e.returncode}" for e in self.unexpected_exits())
        return (
            f"{self.restarts()} restarts ({killed} after our kills, "
            f"{len(self.unexpected_exits())} other exits{': ' + unexpected if unexpected else ''})"
        )

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=90)
        for member in self.members:
            member.replica.process.stop()
