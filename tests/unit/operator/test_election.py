"""Leader election: the Lease rules (pure), the write gate, the elector against an in-memory
Lease store with client-go's optimistic concurrency, and a standby Controller."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import urllib3
from kubernetes import client

from vod_operator import lease
from vod_operator.controller import Controller
from vod_operator.election import LeaderElector, WriteGate, own_identity
from vod_operator.kube import CHILD_KINDS, Kube, KubeError, NotLeader
from vod_operator.lease import ElectionConfig, LeaseRecord, Observation
from vod_operator.metrics import OperatorMetrics
from vod_operator.options import Options
from vod_operator.reconcile import Result

pytestmark = pytest.mark.unit

WALL = datetime(2026, 12, 6, 8, 0, 0, 123456, tzinfo=UTC)
A = ElectionConfig(name="vod-operator", namespace="ops", identity="pod-a_1")
B = ElectionConfig(name="vod-operator", namespace="ops", identity="pod-b_2")


# -- the rules --------------------------------------------------------------------------------


def test_defaults_are_controller_runtimes_and_the_order_is_enforced() -> None:
    assert (A.lease_duration, A.renew_deadline, A.retry_period) == (15.0, 10.0, 2.0)
    with pytest.raises(ValueError, match="lease duration > renew deadline"):
        ElectionConfig("l", "ns", "me", lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="identity"):
        ElectionConfig("l", "ns", "")


def test_a_first_claim_creates_the_record_and_a_renew_keeps_acquire_time() -> None:
    first = lease.claim(None, A, WALL)
    assert first == LeaseRecord(
        "pod-a_1", 15, "2026-12-06T08:00:00.123456Z", "2026-12-06T08:00:00.123456Z", 0
    )
    renewed = lease.claim(first, A, WALL + timedelta(seconds=2))
    assert renewed.acquire_time == first.acquire_time
    assert renewed.renew_time == "2026-12-06T08:00:02.123456Z"
    assert renewed.transitions == 0


def test_taking_over_counts_a_transition_and_a_release_frees_the_lease_at_once() -> None:
    held = lease.claim(None, A, WALL)
    taken = lease.claim(held, B, WALL + timedelta(seconds=20))
    assert (taken.holder, taken.transitions) == ("pod-b_2", 1)
    assert taken.acquire_time == "2026-12-06T08:00:20.123456Z"
    released = lease.release(taken, WALL + timedelta(seconds=30))
    assert (released.holder, released.lease_duration_seconds, released.transitions) == ("", 1, 1)
    seen = lease.observe(None, released, now=100.0)
    assert not lease.held_by_other(seen, A.identity, now=100.0)  # no holder: free now


def test_round_trip_through_a_lease_object() -> None:
    record = lease.claim(None, A, WALL)
    body = {"metadata": {"name": "vod-operator"}, "spec": record.spec()}
    assert LeaseRecord.from_lease(body) == record
    assert LeaseRecord.from_lease({"spec": {}}) == LeaseRecord()
    assert "acquireTime" not in LeaseRecord("x", 15).spec()  # no nulls on the wire


def test_the_claim_lapses_on_the_observers_clock_not_the_renew_time() -> None:
    record = lease.claim(None, B, WALL - timedelta(days=365))  # holder's clock far behind
    seen = lease.observe(None, record, now=1000.0)
    assert lease.held_by_other(seen, A.identity, now=1000.0)
    assert lease.held_by_other(seen, A.identity, now=1014.9)
    assert not lease.held_by_other(seen, A.identity, now=1015.0)
    # The same record seen again does not restart the clock ...
    assert lease.observe(seen, record, now=1010.0) is seen
    # ... a renew (new renewTime) does.
    renewed = lease.claim(record, B, WALL)
    again = lease.observe(seen, renewed, now=1010.0)
    assert again == Observation(renewed, 1010.0)
    assert lease.held_by_other(again, A.identity, now=1024.0)
    # Our own claim never blocks us.
    assert not lease.held_by_other(again, B.identity, now=1010.0)


def test_the_holder_may_write_only_within_the_renew_deadline_of_its_last_renew() -> None:
    assert not lease.may_write(None, A, now=5.0)
    assert lease.may_write(100.0, A, now=109.9)
    assert not lease.may_write(100.0, A, now=110.0)
    # The deadline ends before any observer's claim lapses (it saw the renew after it was sent).
    assert A.renew_deadline < A.lease_duration


# -- the gate ---------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_gate_lets_writes_through_only_until_its_deadline() -> None:
    clock = Clock()
    gate = WriteGate(clock)
    with pytest.raises(NotLeader), gate.writing():
        pass
    gate.open_until(1010.0)
    with gate.writing():
        pass
    clock.now = 1010.0
    assert not gate.is_open()
    with pytest.raises(NotLeader), gate.writing():
        pass
    gate.open_until(1020.0)
    gate.close()
    with pytest.raises(NotLeader), gate.writing():
        pass


def test_drain_waits_for_the_writes_under_way() -> None:
    gate = WriteGate()
    gate.open_until(float("inf"))
    entered, finish = threading.Event(), threading.Event()

    def write() -> None:
        with gate.writing():
            entered.set()
            finish.wait(5)

    writer = threading.Thread(target=write)
    writer.start()
    entered.wait(5)
    gate.close()
    assert not gate.drain(0.1)  # still under way
    finish.set()
    assert gate.drain(5)
    writer.join()


def test_kube_asks_the_gate_before_every_write_and_never_before_a_read() -> None:
    requests: list[tuple[str, int | None]] = []
    configuration = client.Configuration(host="http://127.0.0.1:9")  # discard: nothing listens
    configuration.retries = False
    kube = Kube(
        client.ApiClient(configuration),
        on_request=lambda method, status, host: requests.append((method, status)),
        guard=WriteGate(),
    )
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": "ns"},
    }
    with pytest.raises(NotLeader):
        kube.apply(manifest)
    with pytest.raises(NotLeader):
        kube.delete(CHILD_KINDS["ConfigMap"], "ns", "x", "uid-1")
    assert requests == []  # refused in-process: nothing reached the network
    # A read goes out (and finds nobody listening).
    with pytest.raises(urllib3.exceptions.HTTPError, match="refused"):
        kube.get(CHILD_KINDS["ConfigMap"], "ns", "x")
    assert [method for method, _ in requests] == ["GET"]


# -- the elector against an in-memory Lease store ------------------------------------------------


class LeaseStore:
    """Leases with resourceVersions: a PUT of a stale version is a 409 and a PUT without one
    overwrites, as on the API server."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.down = False
        self.writes: list[str] = []  # holderIdentity of every accepted write
        #: Runs once before the next write is checked (another candidate racing in).
        self.before_write: Callable[[], None] | None = None

    def _check(self) -> None:
        if self.down:
            raise KubeError(503, "ServiceUnavailable", "the API server is away")

    def get_lease(self, namespace: str, name: str, timeout: float) -> dict[str, Any] | None:
        self._check()
        found = self.leases.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def _race(self) -> None:
        if self.before_write is not None:
            self.before_write()

    def _store(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"] = {**stored["metadata"], "resourceVersion": str(self.version)}
        self.leases[(namespace, name)] = stored
        self.writes.append(stored["spec"]["holderIdentity"])
        return copy.deepcopy(stored)

    def create_lease(self, namespace: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._check()
        self._race()
        name = body["metadata"]["name"]
        if (namespace, name) in self.leases:
            raise KubeError(409, "AlreadyExists", "leases already exists")
        return self._store(namespace, name, body)

    def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        self._check()
        self._race()
        current = self.leases[(namespace, name)]
        sent = body["metadata"].get("resourceVersion")  # none: an unconditional update
        if sent is not None and sent != current["metadata"]["resourceVersion"]:
            raise KubeError(409, "Conflict", "the object has been modified")
        return self._store(namespace, name, body)

    def holder(self) -> str:
        return str(self.leases[("ops", "vod-operator")]["spec"]["holderIdentity"])


def elector(
    store: LeaseStore, config: ElectionConfig, clock: Clock, events: list[str]
) -> LeaderElector:
    return LeaderElector(
        store,
        config,
        WriteGate(clock),
        on_started=lambda: events.append(f"started {config.identity}"),
        on_lost=lambda: events.append(f"lost {config.identity}"),
        clock=clock,
        wall=lambda: WALL + timedelta(seconds=clock.now),
    )


def test_one_holder_the_other_waits_for_the_full_lease_after_the_last_change() -> None:
    store, clock, events = LeaseStore(), Clock(), list[str]()
    a, b = elector(store, A, clock, events), elector(store, B, clock, events)
    assert a.try_acquire_or_renew()
    assert a.gate.is_open()
    assert not b.try_acquire_or_renew()  # b sees a's claim now: it lasts 15 s on b's clock
    assert not b.gate.is_open()
    clock.now += 2
    assert a.try_acquire_or_renew()  # a renews: b's clock restarts when it sees that
    assert not b.try_acquire_or_renew()
    clock.now += 14.9  # a is gone; 14.9 s since b saw the last change
    assert not b.try_acquire_or_renew()
    clock.now += 0.1
    assert not a.gate.is_open()  # a stopped writing 5 s before b may take over
    assert b.try_acquire_or_renew()
    assert store.holder() == B.identity
    assert LeaseRecord.from_lease(store.leases[("ops", "vod-operator")]).transitions == 1


def test_a_claim_racing_another_fails_instead_of_stealing() -> None:
    """b reads the released Lease; a claims it again before b's write lands: b's write carries
    the old resourceVersion (409), b does not lead and opens no gate."""
    store, clock, events = LeaseStore(), Clock(), list[str]()
    a, b = elector(store, A, clock, events), elector(store, B, clock, events)
    assert a.try_acquire_or_renew()
    assert not a.release()  # not leading as far as `run` knows: nothing to release
    a.leading = True  # as `run` sets it
    assert a.release()
    assert store.holder() == ""

    def a_claims_first() -> None:
        store.before_write = None
        assert a.try_acquire_or_renew()

    store.before_write = a_claims_first
    assert not b._try()
    assert store.holder() == A.identity
    assert not b.gate.is_open()
    assert b.try_acquire_or_renew() is False  # a fresh read: a holds it now
    clock.now += 20  # a is gone for good: b takes over on a fresh read
    assert b.try_acquire_or_renew()
    assert store.holder() == B.identity


async def test_run_reports_the_loss_when_renewing_fails_and_leads_again_later() -> None:
    store = LeaseStore()
    events: list[str] = []
    statuses: list[bool] = []
    fast = ElectionConfig(
        "vod-operator", "ops", "pod-a_1", lease_duration=1.5, renew_deadline=0.6, retry_period=0.1
    )
    a = LeaderElector(
        store,
        fast,
        WriteGate(),
        on_started=lambda: events.append("started"),
        on_lost=lambda: events.append("lost"),
        on_status=statuses.append,
    )
    task = asyncio.create_task(a.run())
    for _ in range(100):
        await asyncio.sleep(0.02)
        if events:
            break
    assert events == ["started"]
    assert a.leading
    assert a.gate.is_open()
    await asyncio.sleep(0.35)
    assert store.writes.count("pod-a_1") >= 3  # created, then renewed every retry period
    store.down = True
    lost_at = asyncio.get_running_loop().time()
    for _ in range(150):
        await asyncio.sleep(0.02)
        if events == ["started", "lost"]:
            break
    waited = asyncio.get_running_loop().time() - lost_at
    assert events == ["started", "lost"]
    assert not a.gate.is_open()
    assert not a.leading
    assert statuses == [False, True, False, False]  # lost, then a standby again
    assert waited < fast.renew_deadline + 2 * fast.retry_period
    assert not task.done()  # no exit: it tries to acquire again
    store.down = False  # the API server answers again: nobody else took it, so it leads
    for _ in range(100):
        await asyncio.sleep(0.02)
        if len(events) == 3:
            break
    assert events == ["started", "lost", "started"]
    assert a.leading
    assert a.gate.is_open()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_release_waits_for_writes_then_frees_the_lease() -> None:
    store = LeaseStore()
    a = LeaderElector(store, A, WriteGate(), on_started=lambda: None, on_lost=lambda: None)
    assert a.try_acquire_or_renew()
    a.leading = True  # as `run` sets it
    entered, written = threading.Event(), threading.Event()

    def write() -> None:
        with a.gate.writing():
            entered.set()
            threading.Event().wait(0.3)
            written.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert entered.wait(5)
    released = await asyncio.to_thread(a.release, 5.0)
    assert released
    assert written.is_set()
    assert store.holder() == ""
    assert store.leases[("ops", "vod-operator")]["spec"]["leaseDurationSeconds"] == 1
    with pytest.raises(NotLeader), a.gate.writing():
        pass
    writer.join()


def test_identity_is_the_pod_name_and_a_unique_suffix() -> None:
    first = own_identity({"POD_NAME": "vod-operator-7d9-abc"})
    second = own_identity({"POD_NAME": "vod-operator-7d9-abc"})
    assert first.startswith("vod-operator-7d9-abc_")
    assert first != second


def test_options_turn_election_on_in_a_pod_only_unless_told() -> None:
    assert not Options.from_env({}).leader_election
    pod = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "POD_NAMESPACE": "vod-system"}
    options = Options.from_env(pod)
    assert options.leader_election
    assert options.leader_election_namespace == "vod-system"
    assert not Options.from_env({**pod, "VOD_OPERATOR_LEADER_ELECTION": "false"}).leader_election
    told = Options.from_env(
        {
            "VOD_OPERATOR_LEADER_ELECTION": "true",
            "VOD_OPERATOR_LEADER_ELECTION_NAME": "other",
            "VOD_OPERATOR_LEADER_ELECTION_NAMESPACE": "ops",
            "VOD_OPERATOR_LEASE_DURATION_SECONDS": "6",
            "VOD_OPERATOR_RENEW_DEADLINE_SECONDS": "4",
            "VOD_OPERATOR_RETRY_PERIOD_SECONDS": "1",
        }
    )
    assert (told.leader_election, told.leader_election_name) == (True, "other")
    assert told.leader_election_namespace == "ops"
    assert (told.lease_duration_seconds, told.renew_deadline_seconds) == (6.0, 4.0)
    with pytest.raises(ValueError, match="LEADER_ELECTION must be true or false"):
        Options.from_env({"VOD_OPERATOR_LEADER_ELECTION": "maybe"})
    with pytest.raises(ValueError, match="RENEW_DEADLINE"):
        Options.from_env({"VOD_OPERATOR_RENEW_DEADLINE_SECONDS": "20"})


# -- a standby Controller ------------------------------------------------------------------------


async def test_a_standby_controller_remembers_keys_and_reconciles_them_all_when_it_leads() -> None:
    calls: list[tuple[str, str]] = []

    def reconcile(namespace: str, name: str) -> Result:
        calls.append((namespace, name))
        return Result()

    controller = Controller(reconcile, leading=False, resync_seconds=3600)
    controller.start()
    try:
        controller.enqueue(("ns", "a"))
        controller.enqueue(("ns", "b"))
        controller.enqueue(("ns", "gone"))
        controller.forget(("ns", "gone"))
        await asyncio.sleep(0.1)
        assert calls == []  # warm, but not a single pass
        controller.lead()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(calls) == 2:
                break
        assert sorted(calls) == [("ns", "a"), ("ns", "b")]
        controller.enqueue(("ns", "c"))
        await asyncio.sleep(0.1)
        assert ("ns", "c") in calls
    finally:
        await controller.stop()


async def test_a_controller_that_loses_the_lead_stands_by_until_it_leads_again() -> None:
    """A pass under way when the lead is lost ends without the pass its triggers asked for;
    triggers meanwhile are remembered; leading again reconciles every known key."""
    calls: list[tuple[str, str]] = []
    entered, release = threading.Event(), threading.Event()

    def reconcile(namespace: str, name: str) -> Result:
        calls.append((namespace, name))
        entered.set()
        release.wait(5)
        return Result()

    controller = Controller(reconcile, resync_seconds=3600)
    controller.start()
    try:
        controller.enqueue(("ns", "a"))
        assert await asyncio.to_thread(entered.wait, 5)
        controller.enqueue(("ns", "a"))  # one more pass asked for while it runs
        controller.stand_by()
        controller.enqueue(("ns", "b"))
        release.set()
        await asyncio.sleep(0.2)
        assert calls == [("ns", "a")]  # no second pass, nothing for b: remembered only
        controller.lead()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(calls) == 3:
                break
        assert sorted(calls[1:]) == [("ns", "a"), ("ns", "b")]
    finally:
        release.set()
        await controller.stop()


# -- metrics ---------------------------------------------------------------------------------


def test_the_election_is_exposed_with_controller_runtimes_name_and_the_identity() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def samples(metrics: OperatorMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        text = metrics.exposition().decode()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    off = OperatorMetrics("0")
    assert not [k for k in samples(off) if "leader_election" in k[0]]  # election off: none
    metrics = OperatorMetrics("0")
    set_status = metrics.leader_election("vod-operator", "pod-a_1")
    status = ("leader_election_master_status", frozenset({("name", "vod-operator")}))
    info = (
        "vod_operator_leader_election_info",
        frozenset({("name", "vod-operator"), ("identity", "pod-a_1")}),
    )
    assert samples(metrics)[status] == 0
    assert samples(metrics)[info] == 1
    set_status(True)
    assert samples(metrics)[status] == 1
    set_status(False)
    assert samples(metrics)[status] == 0
