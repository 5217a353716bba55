"""Leader election on a Lease: who may write, and the loop that keeps the claim.

`LeaderElector` tries to acquire the Lease every retry period; once it holds it, it renews it
every retry period and opens the `WriteGate` until the renew deadline after each successful
renew (counted from when that renew was sent). If it cannot renew before the deadline, the gate
has already shut (it checks the clock on every write), so there are never two writers; the
elector reports the loss (the operator's queues stand by, their watches stay warm) and goes back
to acquiring, as a standby. Unlike controller-runtime's managers the process does not exit: an
API server or etcd that answers nothing for longer than the renew deadline costs every replica
its lead, not a restart (and no crash loop while it stays away).
`release()` (on SIGTERM) shuts the gate, waits for writes under way, and gives the Lease up so
that the standby takes over within a retry period. The decisions are in `lease` (pure).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from vod_operator import lease
from vod_operator.kube import KubeError, NotLeader
from vod_operator.lease import ElectionConfig, LeaseRecord, Observation

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def own_identity(environ: dict[str, str] | None = None) -> str:
    """This process in the election: the pod's name (or the host's) and a fresh uuid, as
    controller-runtime does, so two processes on one host never share an identity."""
    env = os.environ if environ is None else environ
    return f"{env.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4()}"


class WriteGate:
    """Lets the operator's writes through only while this process leads (`Kube` asks it)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._until: float | None = None
        self._in_flight = 0
        self._changed = threading.Condition()

    def open_until(self, until: float) -> None:
        """Writes may start until `until` (monotonic seconds)."""
        with self._changed:
            self._until = until

    def close(self) -> None:
        with self._changed:
            self._until = None

    def is_open(self) -> bool:
        with self._changed:
            return self._until is not None and self._clock() < self._until

    @contextmanager
    def writing(self) -> Iterator[None]:
        """One write: refused (`NotLeader`) unless the gate is open; counted while it runs."""
        with self._changed:
            if self._until is None or self._clock() >= self._until:
                raise NotLeader()
            self._in_flight += 1
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until no write is under way (True) or `timeout` passed (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight == 0, timeout)


class LeaseApi(Protocol):
    """The Lease calls the elector makes (`Kube` implements them, outside the gate)."""

    def get_lease(self, namespace: str, name: str, timeout: float) -> dict[str, Any] | None: ...

    def create_lease(
        self, namespace: str, body: dict[str, Any], timeout: float
    ) -> dict[str, Any]: ...

    def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any], timeout: float
    ) -> dict[str, Any]: ...


class LeaderElector:
    """Acquires, renews and releases one Lease for this process."""

    def __init__(
        self,
        api: LeaseApi,
        config: ElectionConfig,
        gate: WriteGate,
        *,
        on_started: Callable[[], None],
        on_lost: Callable[[], None],
        on_status: Callable[[bool], None] = lambda leading: None,
        clock: Clock = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.config = config
        self.gate = gate
        self._on_started = on_started
        self._on_lost = on_lost
        self._on_status = on_status
        self._clock = clock
        self._wall = wall
        self._observation: Observation | None = None
        self._last_renewed: float | None = None
        self.leading = False
        #: Seconds one Lease request may take (a renew is tried again every retry period).
        self.request_timeout = max(1.0, config.renew_deadline / 3)

    # -- one try (in a worker thread) --------------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        """Acquire or renew the Lease once; whether this process holds it now."""
        sent = self._clock()
        config, timeout = self.config, self.request_timeout
        current = self.api.get_lease(config.namespace, config.name, timeout)
        if current is None:
            record = lease.claim(None, config, self._wall())
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": config.name, "namespace": config.namespace},
                "spec": record.spec(),
            }
            self.api.create_lease(config.namespace, body, timeout)
        else:
            seen = LeaseRecord.from_lease(current)
            self._observation = lease.observe(self._observation, seen, self._clock())
            if lease.held_by_other(self._observation, config.identity, self._clock()):
                return False
            record = lease.claim(seen, config, self._wall())
            # resourceVersion rides along: a concurrent writer makes this a 409, not a steal.
            body = {**current, "spec": {**current.get("spec", {}), **record.spec()}}
            self.api.replace_lease(config.namespace, config.name, body, timeout)
        self._observation = lease.observe(self._observation, record, self._clock())
        self._last_renewed = sent
        self.gate.open_until(sent + config.renew_deadline)
        return True

    def _try(self) -> bool:
        try:
            return self.try_acquire_or_renew()
        except (KubeError, OSError, ValueError) as exc:
            log.warning("lease %s/%s: %s", self.config.namespace, self.config.name, exc)
        except Exception as exc:  # urllib3's errors and the like: one failed try, never a crash
            log.warning("lease %s/%s: %r", self.config.namespace, self.config.name, exc)
        return False

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Lead whenever this process holds the Lease, until cancelled: acquire (a standby
        meanwhile), renew until the claim is lost, report the loss (`on_lost`), acquire again."""
        while True:
            await self._acquire()
            await self._renew_until_lost()
            self._on_lost()

    async def _acquire(self) -> None:
        self._on_status(False)
        log.info("waiting to lead (lease %s/%s, identity %s)", *self._names())
        while True:
            if await asyncio.to_thread(self._try):
                break
            await asyncio.sleep(self.config.retry_period)
        self.leading = True
        self._on_status(True)
        log.info("leading (lease %s/%s, identity %s)", *self._names())
        self._on_started()

    async def _renew_until_lost(self) -> None:
        config = self.config
        while True:
            await asyncio.sleep(config.retry_period)
            if await asyncio.to_thread(self._try):
                continue
            if not lease.may_write(self._last_renewed, config, self._clock()):
                self.leading = False
                self.gate.close()
                self._on_status(False)
                log.error(
                    "lost the lease %s/%s: not renewed within %.0f s; standing by",
                    config.namespace,
                    config.name,
                    config.renew_deadline,
                )
                return

    def _names(self) -> tuple[str, str, str]:
        return self.config.namespace, self.config.name, self.config.identity

    def release(self, drain_timeout: float = 5.0) -> bool:
        """Stop writing and give the Lease up (blocking; call after cancelling `run`).

        Writes under way finish first (up to `drain_timeout`); the Lease is given up only if
        this process still holds it. Whether it was given up.
        """
        self.gate.close()
        was_leading, self.leading = self.leading, False
        self._on_status(False)
        if not was_leading:
            return False
        if not self.gate.drain(drain_timeout):
            log.warning("writes still under way after %.0f s; not releasing", drain_timeout)
            return False  # the standby takes over when the claim lapses instead
        config = self.config
        try:
            current = self.api.get_lease(config.namespace, config.name, self.request_timeout)
            if current is None:
                return False
            seen = LeaseRecord.from_lease(current)
            if seen.holder != config.identity:
                return False
            record = lease.release(seen, self._wall())
            body = {**current, "spec": {**current.get("spec", {}), **record.spec()}}
            self.api.replace_lease(config.namespace, config.name, body, self.request_timeout)
        except Exception as exc:
            log.warning("could not release the lease %s/%s: %r", config.namespace, config.name, exc)
            return False
        log.info("released the lease %s/%s", config.namespace, config.name)
        return True
