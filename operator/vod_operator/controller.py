"""The work queue between kopf's watch events and the synchronous reconciler.

Every trigger (a VideoPlatform event, an event on a labelled child, a resync tick) enqueues
the platform's key (the VideoAsset controller is a second instance, keyed by assets). A pass may
ask for another one after some seconds (`Result.requeue_after`: a packaging Job is running).
Each key is reconciled by at most one worker at a time; triggers that
arrive meanwhile coalesce into one more pass. A failed pass is retried with exponential
backoff (1 s doubling up to `max_backoff`), never in a tight loop; a pass whose only errors
were 422 Invalid refusals is not retried (the same spec would be refused again; a spec change
or a child event brings the next pass).

While this replica does not lead (`leading=False`, leader election), triggers are only
remembered: the keys stay known, no pass runs; `lead()` then reconciles every known key at once
(the watches were warm all along). `stand_by()` goes back to that when the lead is lost: passes
under way end (the write gate refuses their writes), no new one starts.

A watch that resumes after a gap lists everything again (kopf, on 410 Gone), which reports the
objects that exist, never those deleted meanwhile: every `lister_seconds` the controller lists
the names of each namespace it knows keys in (`lister`), and a known key no longer listed gets a
pass, which finds the object gone and forgets it (its metrics go), instead of lingering until the
resync.

What happens in the queue is told to a `QueueObserver` (metrics.QueueMetrics in the operator):
the queue itself knows nothing of Prometheus.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from vod_operator.reconcile import Result

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
ReconcileFn = Callable[[str, str], Result]
#: How a pass ended: clean, failed (crashed or `Result.error`), or asking to come back later.
Outcome = Literal["success", "error", "requeue_after"]


class QueueObserver(Protocol):
    """What a Controller tells about its queue; every call comes from the event loop."""

    def added(self) -> None:
        """A trigger that brings one more pass (triggers coalesced into a pending one do not)."""

    def retried(self) -> None:
        """A failed pass is retried after a backoff."""

    def waiting(self, key: Key) -> None:
        """A pass of `key` waits for a worker."""

    def started(self, key: Key, queued_seconds: float) -> None:
        """It got one, `queued_seconds` after the trigger that asked for it."""

    def finished(self, key: Key, seconds: float, outcome: Outcome) -> None:
        """The pass of `key` ended after `seconds`."""


class Unobserved:
    """A QueueObserver that ignores everything (unit tests, tools)."""

    def added(self) -> None:
        pass

    def retried(self) -> None:
        pass

    def waiting(self, key: Key) -> None:
        pass

    def started(self, key: Key, queued_seconds: float) -> None:
        pass

    def finished(self, key: Key, seconds: float, outcome: Outcome) -> None:
        pass


@dataclass
class _KeyState:
    running: bool = False
    dirty: bool = False
    failures: int = 0
    retry: asyncio.TimerHandle | None = None
    status_version: str | None = None
    #: The platform was deleted while a pass ran: drop this state when the pass ends.
    forgotten: bool = False
    #: When the trigger behind the pending pass came (time.monotonic()).
    added_at: float = 0.0


@dataclass
class Controller:
    """Coalescing, rate-limited reconcile queue (one pass per key at a time)."""

    reconcile: ReconcileFn
    workers: int = 4
    max_backoff: float = 300.0
    resync_seconds: float = 600.0
    #: What discovery shows (the monitoring API, KEDA, the metrics APIs): a change in its
    #: answer reconciles every platform.
    monitoring_probe: Callable[[], object] | None = None
    monitoring_probe_seconds: float = 60.0
    #: The names that exist in a namespace now (a list call); None: no check for vanished keys.
    lister: Callable[[str], Collection[str]] | None = None
    lister_seconds: float = 60.0
    observer: QueueObserver = field(default_factory=Unobserved)
    #: Whether passes run; a standby (False) only remembers the keys until `lead()`.
    leading: bool = True
    _states: dict[Key, _KeyState] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self) -> None:
        self._slots = asyncio.Semaphore(self.workers)
        self._spawn(self._resync_loop())
        if self.monitoring_probe is not None:
            self._spawn(self._monitoring_loop(self.monitoring_probe))
        if self.lister is not None:
            self._spawn(self._vanished_loop(self.lister))

    async def stop(self) -> None:
        for state in self._states.values():
            if state.retry is not None:
                state.retry.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def enqueue(self, key: Key) -> None:
        """Ask for one more reconcile of `key` (coalesced with any pending one)."""
        state = self._states.setdefault(key, _KeyState())
        state.forgotten = False  # e.g. deleted and created again with the same name
        if not self.leading:
            return
        if state.running:
            if not state.dirty:
                state.dirty = True
                self._added(state)
            return
        state.running = True
        self._added(state)
        self._spawn(self._run(key, state))

    def lead(self) -> None:
        """This replica leads now: reconcile every key it knows (then as triggers come)."""
        if self.leading:
            return
        self.leading = True
        keys = list(self._states)
        log.info("leading: reconciling %d known keys", len(keys))
        for key in keys:
            self.enqueue(key)

    def stand_by(self) -> None:
        """This replica no longer leads: no pass starts until `lead()` (triggers are
        remembered); a pass under way ends without another."""
        if not self.leading:
            return
        self.leading = False
        log.info("standing by: %d known keys wait for the lead", len(self._states))

    def _added(self, state: _KeyState) -> None:
        state.added_at = time.monotonic()
        self.observer.added()

    def is_own_write(self, key: Key, resource_version: str | None) -> bool:
        """Whether an event merely echoes the status this controller just wrote."""
        state = self._states.get(key)
        return (
            state is not None
            and resource_version is not None
            and (state.status_version == resource_version)
        )

    def forget(self, key: Key) -> None:
        """The platform is gone: no more passes (a running one finishes, then the state goes).

        The state stays while a pass runs, so an enqueue meanwhile (the platform created again
        under the same name) coalesces into it instead of starting a second, concurrent pass.
        """
        state = self._states.get(key)
        if state is None:
            return
        if state.retry is not None:
            state.retry.cancel()
            state.retry = None
        state.failures = 0
        if state.running:
            state.forgotten = True
            state.dirty = False
        else:
            del self._states[key]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Key, state: _KeyState) -> None:
        assert self._slots is not None, "Controller.start() was not called"
        try:
            while self.leading:
                state.dirty = False
                added_at = state.added_at
                if state.retry is not None:
                    state.retry.cancel()
                    state.retry = None
                self.observer.waiting(key)
                async with self._slots:
                    started = time.monotonic()
                    self.observer.started(key, started - added_at)
                    result = await self._attempt(key)
                    self.observer.finished(key, time.monotonic() - started, _outcome(result))
                if result is not None and result.status_version:
                    state.status_version = result.status_version
                failed = result is None or result.error is not None
                if state.forgotten or (result is not None and not result.found):
                    if state.dirty:  # created again meanwhile: one more pass
                        continue
                    if self._states.get(key) is state:
                        del self._states[key]
                    return
                if failed:
                    # Triggers that came in meanwhile wait for the backoff: no tight loops.
                    if result is None or result.retry or state.dirty:
                        self._schedule_retry(key, state)
                    else:
                        log.info("%s/%s: refused as invalid; waiting for a change", *key)
                    return
                state.failures = 0
                if not state.dirty:
                    if result is not None and result.requeue_after is not None:
                        self._schedule(key, state, result.requeue_after)
                    return
        finally:
            state.running = False

    async def _attempt(self, key: Key) -> Result | None:
        try:
            return await asyncio.to_thread(self.reconcile, *key)
        except Exception:
            log.exception("reconcile of %s/%s crashed", *key)
            return None

    def _schedule_retry(self, key: Key, state: _KeyState) -> None:
        delay = min(self.max_backoff, 2.0**state.failures)
        state.failures += 1
        self.observer.retried()
        log.info("retrying %s/%s in %.0fs", key[0], key[1], delay)
        self._schedule(key, state, delay)

    def _schedule(self, key: Key, state: _KeyState, delay: float) -> None:
        """One more pass of `key` after `delay` seconds (a newer pass cancels it)."""
        loop = asyncio.get_running_loop()
        state.retry = loop.call_later(delay, self.enqueue, key)

    def known(self) -> list[Key]:
        """Every key this controller has seen and not forgotten."""
        return list(self._states)

    async def _resync_loop(self) -> None:
        """Safety net for missed events: a read-only pass over every known platform."""
        while True:
            await asyncio.sleep(self.resync_seconds)
            for key in list(self._states):
                self.enqueue(key)

    async def _vanished_loop(self, lister: Callable[[str], Collection[str]]) -> None:
        """Give a pass to every known key that its namespace no longer lists (its deletion
        happened while the watch was away)."""
        while True:
            await asyncio.sleep(self.lister_seconds)
            keys = list(self._states)
            try:
                gone = await asyncio.to_thread(_vanished, keys, lister)
            except Exception:
                log.exception("listing the namespaces' objects failed")
                continue
            for key in gone:
                log.info("%s/%s is gone (its deletion was not watched): reconciling", *key)
                self.enqueue(key)

    async def _monitoring_loop(self, probe: Callable[[], object]) -> None:
        """Re-check discovery; when monitoring.coreos.com/v1, KEDA or a metrics API appears or
        goes (the probe's answer changes), reconcile all."""
        last: object | None = None
        while True:
            try:
                available = await asyncio.to_thread(probe)
            except Exception:
                log.exception("discovery of the monitoring, KEDA and metrics APIs failed")
            else:
                if last is not None and available != last:
                    log.info("discovery changed: %s; reconciling all", available)
                    for key in list(self._states):
                        self.enqueue(key)
                last = available
            await asyncio.sleep(self.monitoring_probe_seconds)


def _vanished(keys: list[Key], lister: Callable[[str], Collection[str]]) -> list[Key]:
    """The keys whose namespace does not list their name (one list per namespace)."""
    gone: list[Key] = []
    for namespace in sorted({namespace for namespace, _ in keys}):
        present = set(lister(namespace))
        gone += [key for key in keys if key[0] == namespace and key[1] not in present]
    return gone


def _outcome(result: Result | None) -> Outcome:
    if result is None or result.error is not None:
        return "error"
    return "success" if result.requeue_after is None else "requeue_after"
