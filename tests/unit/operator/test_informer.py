"""The children's watch-fed cache: lists, watch events, our own writes, 410 Gone relists."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import pytest

from vod_operator import informer, naming
from vod_operator.informer import ChildCache, KindStore, Stored, later, parse_selector
from vod_operator.kube import CHILD_KINDS, Kind, KubeError

SERVICE = CHILD_KINDS["Service"]
T = TypeVar("T")
SELECTOR = f"{naming.MANAGED_BY}={naming.FIELD_MANAGER}"


def child(
    name: str,
    version: int,
    instance: str = "demo",
    namespace: str = "ns",
    port: int = 80,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "resourceVersion": str(version),
            "labels": {naming.MANAGED_BY: naming.FIELD_MANAGER, naming.INSTANCE: instance},
        },
        "spec": {"ports": [{"port": port}]},
    }
    if status is not None:
        obj["status"] = status
    return obj


class ScriptedApi:
    """Lists and watch streams played in order; a watch past the script blocks until stopped."""

    def __init__(
        self,
        lists: list[tuple[list[dict[str, Any]], str] | KubeError],
        watches: list[list[dict[str, Any] | Exception]],
    ) -> None:
        self.lists = lists
        self.watches = watches
        self.listed = 0
        self.watched_from: list[str] = []
        self.idle = threading.Event()

    def list_all(
        self, kind: Kind, selector: str, convert: Callable[[dict[str, Any]], T]
    ) -> tuple[list[T], str]:
        assert selector == SELECTOR
        answer = self.lists[min(self.listed, len(self.lists) - 1)]
        self.listed += 1
        if isinstance(answer, KubeError):
            raise answer
        return [convert(item) for item in answer[0]], answer[1]

    def watch_all(
        self, kind: Kind, selector: str, resource_version: str, timeout_seconds: int
    ) -> Iterable[dict[str, Any]]:
        self.watched_from.append(resource_version)
        if self.watches:
            return self._play(self.watches.pop(0))
        return self._block()

    @staticmethod
    def _play(script: list[dict[str, Any] | Exception]) -> Iterator[dict[str, Any]]:
        for item in script:
            if isinstance(item, Exception):
                raise item
            yield item

    def _block(self) -> Iterator[dict[str, Any]]:
        self.idle.set()
        time.sleep(0.05)
        return
        yield


def run_cache(api: ScriptedApi) -> tuple[ChildCache, list[str]]:
    changed: list[str] = []
    cache = ChildCache(
        api, {"Service": SERVICE}, SELECTOR, lambda obj: changed.append(describe(obj))
    )
    cache.start()
    assert api.idle.wait(5), "the informer never reached the end of its script"
    cache.stop()
    return cache, changed


def describe(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta['name']}@{meta['resourceVersion']}"


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": obj}


def names(cache: ChildCache, instance: str = "demo") -> list[str]:
    found = cache.list(SERVICE, "ns", f"{SELECTOR},{naming.INSTANCE}={instance}")
    return sorted(describe(obj) for obj in found)


def test_a_list_then_watch_events_keep_the_cache_and_report_changes() -> None:
    api = ScriptedApi(
        [([child("a", 10), child("b", 11), child("c", 12, instance="other")], "20")],
        [
            [
                event("ADDED", child("d", 21)),
                event("MODIFIED", child("a", 22, port=81)),
                event("DELETED", child("b", 23)),
                event("BOOKMARK", {"metadata": {"resourceVersion": "30"}}),
            ]
        ],
    )
    cache, changed = run_cache(api)
    assert cache.serves(SERVICE)
    assert names(cache) == ["a@22", "d@21"]
    assert names(cache, "other") == ["c@12"]
    assert changed == ["a@10", "b@11", "c@12", "d@21", "a@22", "b@23"]
    # The watch resumed after its end from the bookmark, without listing again.
    assert api.watched_from[:2] == ["20", "30"]
    assert api.listed == 1


def test_our_own_write_is_stored_at_once_and_its_echo_is_not_reported() -> None:
    api = ScriptedApi([([child("a", 10)], "10")], [])
    cache, changed = run_cache(api)
    cache.observe(SERVICE, child("a", 15))
    cache.observe(SERVICE, child("a", 12))  # an older answer never replaces a newer one
    assert names(cache) == ["a@15"]
    assert not cache._apply_event("Service", "MODIFIED", child("a", 15))  # the echo
    assert cache._apply_event("Service", "MODIFIED", child("a", 16, port=81))
    cache.forget(SERVICE, "ns", "a")
    assert names(cache) == []
    assert changed == ["a@10"]


def test_a_change_of_the_status_alone_reaches_owners_only_for_kinds_whose_status_is_read() -> None:
    seen: list[str] = []
    cache = ChildCache(
        ScriptedApi([], []),
        {"Service": SERVICE, "Deployment": CHILD_KINDS["Deployment"]},
        SELECTOR,
        lambda obj: seen.append(describe(obj)),
        status_read=frozenset({"Deployment"}),
    )
    for kind in ("Service", "Deployment"):
        assert cache._apply_event(kind, "ADDED", child("a", 1, status={"ready": 0}))
        assert cache._apply_event(kind, "MODIFIED", child("a", 2, status={"ready": 1})) == (
            kind == "Deployment"
        )
        assert cache._apply_event(kind, "MODIFIED", child("a", 3, port=81, status={"ready": 1}))
    cache._stores["Service"].synced = True
    (kept,) = cache.list(SERVICE, "ns", SELECTOR)
    assert kept["status"] == {"ready": 1}  # stored all the same
    assert kept["metadata"]["resourceVersion"] == "3"


def test_a_watch_that_expires_is_followed_by_a_list_that_reports_the_gap() -> None:
    gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
    api = ScriptedApi(
        [
            ([child("a", 10), child("b", 11), child("c", 12)], "12"),
            # In the gap: a deleted, b changed, e created; c unchanged.
            ([child("b", 40), child("c", 12), child("e", 41)], "45"),
        ],
        [[event("ERROR", gone)]],
    )
    cache, changed = run_cache(api)
    assert api.listed == 2
    assert api.watched_from[:2] == ["12", "45"]
    assert names(cache) == ["b@40", "c@12", "e@41"]
    assert changed[3:] == ["a@10", "b@40", "e@41"]


def test_a_broken_watch_resumes_from_the_last_version_it_reached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(informer, "RETRY_SECONDS", 0.01)
    api = ScriptedApi(
        [([child("a", 10)], "10")],
        [[event("MODIFIED", child("a", 11, port=81)), ConnectionResetError("peer reset")]],
    )
    cache, changed = run_cache(api)
    assert api.listed == 1
    assert api.watched_from[:2] == ["10", "11"]
    assert names(cache) == ["a@11"]
    assert changed == ["a@10", "a@11"]


def test_a_relist_keeps_what_we_wrote_after_the_list_was_taken() -> None:
    store = KindStore()
    store.replace([Stored.of(child("a", 10))], 10)
    store.put(Stored.of(child("new", 50)))  # our apply, answered after the next list's snapshot
    changed = store.replace([Stored.of(child("a", 10))], 45)
    assert changed == []
    assert sorted(store.objects) == [("ns", "a"), ("ns", "new")]
    assert sorted(describe(o) for o in store.select("ns", {naming.INSTANCE: "demo"})) == [
        "a@10",
        "new@50",
    ]
    changed = store.replace([Stored.of(child("a", 10))], 60)  # a later list without it: gone
    assert [describe(o.object()) for o in changed] == ["new@50"]


def test_an_unserved_kind_is_read_from_the_api_until_it_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(informer, "UNSERVED_RETRY_SECONDS", 0.01)
    api = ScriptedApi([KubeError(404, "NotFound", "no such kind"), ([child("a", 3)], "3")], [])
    cache, _ = run_cache(api)
    assert api.listed == 2
    assert cache.serves(SERVICE)
    assert names(cache) == ["a@3"]
    assert not cache.serves(CHILD_KINDS["Deployment"])  # not one of its kinds


def test_only_our_own_apply_entries_of_managed_fields_are_kept() -> None:
    ours = {"manager": naming.FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {}}}
    theirs = {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {}}
    our_update = {"manager": naming.FIELD_MANAGER, "operation": "Update", "fieldsV1": {}}
    obj = child("a", 5)
    obj["metadata"]["managedFields"] = [theirs, ours, our_update]
    cache = ChildCache(ScriptedApi([], []), {"Service": SERVICE}, SELECTOR, lambda _: None)
    cache.observe(SERVICE, obj)
    assert len(obj["metadata"]["managedFields"]) == 3  # what the caller holds is left alone
    cache._stores["Service"].synced = True
    (kept,) = cache.list(SERVICE, "ns", SELECTOR)
    assert kept["metadata"]["managedFields"] == [ours]
    kept["metadata"]["name"] = "changed by a reader"  # a reader's copy: the cache keeps its own
    assert names(cache) == ["a@5"]


def test_a_reader_waits_for_the_first_list_but_not_for_a_kind_that_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(informer, "UNSERVED_RETRY_SECONDS", 60)
    gate = threading.Event()

    class SlowApi(ScriptedApi):
        def list_all(
            self, kind: Kind, selector: str, convert: Callable[[dict[str, Any]], T]
        ) -> tuple[list[T], str]:
            gate.wait(5)
            return super().list_all(kind, selector, convert)

    api = SlowApi([([child("a", 3)], "3")], [])
    cache = ChildCache(api, {"Service": SERVICE}, SELECTOR, lambda _: None)
    cache.start()
    threading.Timer(0.3, gate.set).start()
    started = time.monotonic()
    assert cache.serves(SERVICE)  # waited for the list under way
    assert 0.2 < time.monotonic() - started < 5
    assert names(cache) == ["a@3"]
    cache.stop()

    failing = ChildCache(
        ScriptedApi([KubeError(404, "NotFound", "no such kind")], []),
        {"Service": SERVICE},
        SELECTOR,
        lambda _: None,
    )
    failing.start()
    deadline = time.monotonic() + 5
    while "Service" not in failing._failing and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    assert not failing.serves(SERVICE)
    assert time.monotonic() - started < 0.1  # no wait: the API server answers instead
    failing.stop()


def test_version_order_and_selectors() -> None:
    assert later("11", "9")  # numeric, not text order
    assert not later("9", "11")
    assert not later("9", "9")
    assert later("1", None)
    assert later("x", "y")
    assert not later("x", "x")
    assert parse_selector("a=b, c=d") == {"a": "b", "c": "d"}
    for selector in ("a!=b", "a==b", "a in (b)", "a"):
        with pytest.raises(ValueError, match="equality"):
            parse_selector(selector)
