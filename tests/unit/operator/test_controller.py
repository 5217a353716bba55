"""Controller: coalescing per key, one pass at a time, exponential backoff on failure."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from vod_operator.controller import Controller
from vod_operator.reconcile import Result

pytestmark = pytest.mark.unit


class Recorder:
    def __init__(self, fail_times: int = 0, delay: float = 0.0, retry: bool = True) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.fail_times = fail_times
        self.delay = delay
        self.retry = retry
        self.running = 0
        self.max_running = 0
        self.lock = threading.Lock()

    def __call__(self, namespace: str, name: str) -> Result:
        with self.lock:
            self.calls[(namespace, name)] += 1
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            threading.Event().wait(self.delay)
            if self.calls[(namespace, name)] <= self.fail_times:
                return Result(error="refused", retry=self.retry)
            return Result()
        finally:
            with self.lock:
                self.running -= 1


@contextlib.asynccontextmanager
async def running(*args: Any, **kwargs: Any) -> AsyncIterator[Controller]:
    """A started Controller, stopped on the way out."""
    controller = Controller(*args, **kwargs)
    controller.start()
    try:
        yield controller
    finally:
        await controller.stop()


async def settle(controller: Controller) -> None:
    for _ in range(200):
        await asyncio.sleep(0.01)
        if not any(s.running for s in controller._states.values()):
            return


async def test_triggers_during_a_pass_coalesce_into_one_more_pass() -> None:
    recorder = Recorder(delay=0.2)
    async with running(recorder, workers=2) as controller:
        controller.enqueue(("ns", "a"))
        await asyncio.sleep(0.05)
        for _ in range(10):
            controller.enqueue(("ns", "a"))
        await asyncio.sleep(0.6)
        await settle(controller)
        assert recorder.calls[("ns", "a")] == 2


async def test_worker_limit_bounds_concurrency() -> None:
    recorder = Recorder(delay=0.1)
    async with running(recorder, workers=2) as controller:
        for i in range(6):
            controller.enqueue(("ns", f"p{i}"))
        await asyncio.sleep(0.5)
        await settle(controller)
        assert sum(recorder.calls.values()) == 6
        assert recorder.max_running == 2


async def test_failures_retry_with_growing_backoff() -> None:
    recorder = Recorder(fail_times=2)
    async with running(recorder, workers=1) as controller:
        loop = asyncio.get_running_loop()
        started = loop.time()
        controller.enqueue(("ns", "a"))
        for _ in range(200):
            if recorder.calls[("ns", "a")] >= 3:
                break
            await asyncio.sleep(0.05)
        elapsed = loop.time() - started
        # Retries after 1 s then 2 s: never a tight loop.
        assert recorder.calls[("ns", "a")] == 3
        assert elapsed >= 2.9
        await asyncio.sleep(0.3)
        assert recorder.calls[("ns", "a")] == 3  # success stops the retries


async def test_own_status_write_is_recognised() -> None:
    async with running(lambda ns, n: Result(status_version="42"), workers=1) as controller:
        controller.enqueue(("ns", "a"))
        await asyncio.sleep(0.2)
        assert controller.is_own_write(("ns", "a"), "42")
        assert not controller.is_own_write(("ns", "a"), "43")


async def test_invalid_only_failures_are_not_retried_until_the_next_trigger() -> None:
    recorder = Recorder(fail_times=2, retry=False)  # e.g. every error a 422 Invalid
    async with running(recorder, workers=1) as controller:
        controller.enqueue(("ns", "a"))
        await asyncio.sleep(1.5)  # a retry would have come after 1 s
        await settle(controller)
        assert recorder.calls[("ns", "a")] == 1
        assert controller._states[("ns", "a")].retry is None
        controller.enqueue(("ns", "a"))  # the user changes the spec
        await asyncio.sleep(0.1)
        await settle(controller)
        assert recorder.calls[("ns", "a")] == 2


async def test_deleted_and_recreated_during_a_pass_never_runs_twice_at_once() -> None:
    recorder = Recorder(delay=0.3)
    async with running(recorder, workers=4) as controller:
        controller.enqueue(("ns", "a"))
        await asyncio.sleep(0.05)
        controller.forget(("ns", "a"))  # DELETED while the pass runs
        controller.enqueue(("ns", "a"))  # ... and created again with the same name
        controller.enqueue(("ns", "a"))
        await asyncio.sleep(0.8)
        await settle(controller)
        assert recorder.max_running == 1
        assert recorder.calls[("ns", "a")] == 2  # the new object got its own pass
        assert ("ns", "a") in controller._states


async def test_forget_during_a_failing_pass_drops_the_key_without_retry() -> None:
    recorder = Recorder(fail_times=5, delay=0.2)
    async with running(recorder, workers=1) as controller:
        controller.enqueue(("ns", "a"))
        await asyncio.sleep(0.05)
        controller.forget(("ns", "a"))
        await asyncio.sleep(1.6)  # past the first backoff
        assert recorder.calls[("ns", "a")] == 1
        assert ("ns", "a") not in controller._states


async def test_a_pass_asking_for_a_requeue_runs_again_until_it_stops_asking() -> None:
    """A running packaging Job: the asset's pass asks to come back (progress polling)."""
    calls: Counter[str] = Counter()

    def poll(namespace: str, name: str) -> Result:
        calls[name] += 1
        return Result(requeue_after=0.05 if calls[name] < 3 else None)

    async with running(poll) as controller:
        controller.enqueue(("media", "intro"))
        await asyncio.sleep(0.5)
        assert calls["intro"] == 3  # twice requeued, then at rest: no more passes
        assert controller.known() == [("media", "intro")]


async def test_a_known_key_its_namespace_no_longer_lists_gets_a_pass_and_is_forgotten() -> None:
    """A resumed watch lists what exists, never what was deleted meanwhile: the lister finds
    it, the pass sees the object gone (found=False) and the key goes."""
    calls: list[tuple[str, str]] = []
    present = {"ns": {"a", "gone"}, "other": {"c"}}
    listed: list[str] = []

    def reconcile(namespace: str, name: str) -> Result:
        calls.append((namespace, name))
        return Result(found=name in present[namespace])

    def lister(namespace: str) -> set[str]:
        listed.append(namespace)
        return present[namespace]

    async with running(reconcile, lister=lister, lister_seconds=0.05) as controller:
        for key in (("ns", "a"), ("ns", "gone"), ("other", "c")):
            controller.enqueue(key)
        await settle(controller)
        calls.clear()
        present["ns"] = {"a"}  # deleted while the watch was away: no event
        for _ in range(100):
            await asyncio.sleep(0.01)
            if calls:
                break
        await settle(controller)
        assert calls == [("ns", "gone")]  # only the vanished key got a pass
        assert sorted(controller.known()) == [("ns", "a"), ("other", "c")]
        assert set(listed) == {"ns", "other"}  # one list per namespace with known keys
