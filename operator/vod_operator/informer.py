"""A watch-fed cache of the operator's children (what controller-runtime calls an informer).

One thread per child kind lists every labelled object of that kind in the cluster once, then
watches from the list's resourceVersion. A reconcile reads its children from here instead of
listing each kind per pass (at 300 platforms those LISTs were a quarter of the operator's CPU),
and a child's change reaches its owner's queue from here.

- A watch that ends (its timeout) resumes from the last resourceVersion seen (bookmarks on).
- A watch whose connection breaks resumes from the last resourceVersion it reached.
- A watch that expires (410 Gone, after an etcd compaction) or is refused is followed by a new
  list that *replaces* the kind's objects: whatever changed in the gap, deletions included, is
  reported like an event, so nothing is missed.
- Our own writes go in at once (`observe`, from the apply response): the next pass does not
  read a stale child and re-send it, and the watch's echo of that write, not newer than what
  is stored, is not reported (no extra pass per write).
- Until a kind's first list is in, readers wait for it (up to SYNC_WAIT_SECONDS); while it
  cannot be listed (the CRD is not installed, RBAC is limited to some namespaces) readers ask
  the API server.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from vod_operator import naming
from vod_operator.kube import Kind, KubeError

log = logging.getLogger(__name__)

Obj = dict[str, Any]
T = TypeVar("T")
ObjKey = tuple[str, str]  # (namespace, name)
#: Told of every child that appeared, changed or went (the object as last seen).
OnChange = Callable[[Mapping[str, Any]], None]

#: Pause before listing again after a failure, doubling up to the maximum.
RETRY_SECONDS = 1.0  # (tests lower it)
MAX_RETRY_SECONDS = 30.0
#: How long a reader waits for a kind's first list before it lists the kind itself.
SYNC_WAIT_SECONDS = 10.0
#: A kind the API does not serve (404: its CRD is not installed) is tried again this often.
UNSERVED_RETRY_SECONDS = 30.0
GONE = 410


class WatchApi(Protocol):
    """The two calls an informer makes (`Kube.list_all`, `Kube.watch_all`)."""

    def list_all(
        self, kind: Kind, selector: str, convert: Callable[[Obj], T]
    ) -> tuple[list[T], str]: ...

    def watch_all(
        self, kind: Kind, selector: str, resource_version: str, timeout_seconds: int
    ) -> Iterable[Obj]: ...


def later(candidate: str | None, stored: str | None) -> bool:
    """Whether resourceVersion `candidate` is a later state than `stored` (None: nothing
    stored). They are etcd revisions, compared as numbers; any other text as "different"."""
    if stored is None:
        return True
    try:
        return int(candidate or "") > int(stored)
    except ValueError:
        return candidate != stored


def parse_selector(selector: str) -> dict[str, str]:
    """`a=b,c=d` as a dict; other selector forms are not used for children (ValueError)."""
    labels: dict[str, str] = {}
    for term in filter(None, (part.strip() for part in selector.split(","))):
        key, sep, value = term.partition("=")
        if not sep or key.endswith(("!", "=")) or value.startswith("="):
            raise ValueError(f"only equality label selectors are cached: {selector!r}")
        labels[key.strip()] = value.strip()
    return labels


def _version(obj: Mapping[str, Any]) -> str | None:
    version = obj.get("metadata", {}).get("resourceVersion")
    return None if version is None else str(version)


def _key(obj: Mapping[str, Any]) -> ObjKey:
    meta = obj["metadata"]
    return str(meta.get("namespace", "")), str(meta["name"])


@dataclass(frozen=True, slots=True)
class Stored:
    """One object as kept: its version and labels (to order and select it) and its JSON, parsed
    again on each read. A child is 4-20 kB as Python objects but 1-5 kB as JSON; a read
    parses a few of them (tens of microseconds) and hands out a copy the reader may keep.

    `body` is all but the status and the resourceVersion, so that a change of the status alone
    (a controller's report) shows as an equal body. Of metadata.managedFields only our own Apply
    entries are kept (what `owns_field` reads; the controllers' entries are never read)."""

    key: ObjKey
    version: str
    labels: dict[str, str]
    body: bytes
    status: bytes

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Stored:
        key = _key(obj)
        meta = dict(obj.get("metadata") or {})
        version = str(meta.pop("resourceVersion", ""))
        if meta.get("managedFields"):
            meta["managedFields"] = [
                entry
                for entry in meta["managedFields"]
                if entry.get("manager") == naming.FIELD_MANAGER
                and entry.get("operation") == "Apply"
            ]
        body = {key: value for key, value in obj.items() if key not in ("metadata", "status")}
        body["metadata"] = meta
        labels = {sys.intern(k): sys.intern(v) for k, v in (meta.get("labels") or {}).items()}
        status = obj.get("status")
        return cls(key, version, labels, _json(body), b"" if status is None else _json(status))

    @property
    def instance(self) -> str:
        return self.labels.get(naming.INSTANCE, "")

    def object(self) -> Obj:
        obj: Obj = json.loads(self.body)
        obj["metadata"]["resourceVersion"] = self.version
        if self.status:
            obj["status"] = json.loads(self.status)
        return obj


def _ours(entry: Mapping[str, Any]) -> bool:
    return entry.get("manager") == naming.FIELD_MANAGER and entry.get("operation") == "Apply"


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class KindStore:
    """The objects of one kind, indexed by (namespace, instance label). Not thread-safe alone:
    `ChildCache` holds the lock."""

    objects: dict[ObjKey, Stored] = field(default_factory=dict)
    by_instance: dict[tuple[str, str], set[ObjKey]] = field(default_factory=dict)
    synced: bool = False

    def version(self, key: ObjKey) -> str | None:
        stored = self.objects.get(key)
        return None if stored is None else stored.version

    def put(self, stored: Stored) -> Stored | None:
        """Store an object; what was stored before under its key."""
        key = stored.key
        old = self.pop(key)
        self.objects[key] = stored
        self.by_instance.setdefault((key[0], stored.instance), set()).add(key)
        return old

    def pop(self, key: ObjKey) -> Stored | None:
        old = self.objects.pop(key, None)
        if old is not None:
            index = (key[0], old.instance)
            keys = self.by_instance.get(index)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_instance[index]
        return old

    def select(self, namespace: str, labels: Mapping[str, str]) -> list[Obj]:
        if naming.INSTANCE in labels:
            keys: Iterable[ObjKey] = self.by_instance.get((namespace, labels[naming.INSTANCE]), ())
        else:
            keys = [k for k in self.objects if k[0] == namespace]
        found = []
        for key in keys:
            stored = self.objects[key]
            if all(stored.labels.get(k) == v for k, v in labels.items()):
                found.append(stored.object())
        return found

    def replace(self, items: list[Stored], listed_at: int | None) -> list[Stored]:
        """Make the store what a fresh list says; the objects that changed (gone ones too).

        An object stored from our own write after the list was taken (a later version than the
        list's) is kept: the watch from `listed_at` brings its events anyway.
        """
        listed = {stored.key: stored for stored in items}
        changed: list[Stored] = []
        for key, old in list(self.objects.items()):
            new = listed.get(key)
            if new is None:
                if listed_at is not None and later(old.version, str(listed_at)):
                    continue
                self.pop(key)
                changed.append(old)
            elif not later(new.version, old.version):
                del listed[key]
        for stored in listed.values():
            self.put(stored)
            changed.append(stored)
        self.synced = True
        return changed


class ChildCache:
    """The operator's children of `kinds`, kept by one informer thread per kind."""

    def __init__(
        self,
        api: WatchApi,
        kinds: Mapping[str, Kind],
        selector: str,
        on_change: OnChange,
        watch_timeout_seconds: int = 300,
        status_read: frozenset[str] = frozenset(),
    ) -> None:
        """`status_read`: the kinds whose status a pass reads; a change of the status alone of
        any other kind (a PodDisruptionBudget's counts) reaches nobody."""
        self._api = api
        self._kinds = dict(kinds)
        self._names = {kind: name for name, kind in self._kinds.items()}
        self._selector = selector
        self._on_change = on_change
        self._watch_timeout = watch_timeout_seconds
        self._status_read = status_read
        self._stores = {name: KindStore() for name in self._kinds}
        #: Set once a kind's first list is in.
        self._synced = {name: threading.Event() for name in self._kinds}
        #: Kinds whose last list failed (not served, forbidden): read from the API server.
        self._failing: set[str] = set()
        self._lock = threading.Lock()
        self._listing = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        #: The last resourceVersion each kind's watch reached (where a broken watch resumes).
        self._seen: dict[str, str] = {}

    # -- readers ----------------------------------------------------------------------------
    def serves(self, kind: Kind) -> bool:
        """Whether reads of `kind` can come from here (a child kind whose first list is in).
        While that first list is under way (start-up) the reader waits for it, up to
        SYNC_WAIT_SECONDS, rather than listing the kind itself (as controller-runtime waits
        for its caches); a kind whose list failed is read from the API server at once."""
        name = self._names.get(kind)
        if name is None:
            return False
        with self._lock:
            if self._stores[name].synced:
                return True
            failing = name in self._failing
        return not failing and self._synced[name].wait(SYNC_WAIT_SECONDS)

    def list(self, kind: Kind, namespace: str, selector: str) -> list[Obj]:
        """Like a LIST of `kind` in `namespace` with an equality `selector` (`serves` first).
        The objects are the cache's own: callers read them and never change them."""
        labels = parse_selector(selector)
        with self._lock:
            return self._stores[self._names[kind]].select(namespace, labels)

    # -- our own writes -----------------------------------------------------------------------
    def observe(self, kind: Kind, obj: Obj) -> None:
        """Store what an apply returned (when it is newer than what is stored)."""
        name = self._names.get(kind)
        if name is None or not obj.get("metadata", {}).get("name"):
            return
        with self._lock:
            store = self._stores[name]
            if later(_version(obj), store.version(_key(obj))):
                store.put(Stored.of(obj))

    def forget(self, kind: Kind, namespace: str, name: str) -> None:
        """Drop an object we deleted (its DELETED event may come later)."""
        kind_name = self._names.get(kind)
        if kind_name is not None:
            with self._lock:
                self._stores[kind_name].pop((namespace, name))

    # -- informers -----------------------------------------------------------------------------
    def start(self) -> None:
        for name in self._kinds:
            thread = threading.Thread(
                target=self._run, args=(name,), name=f"informer {name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Ask every informer to stop (each ends at its watch's next event or timeout)."""
        self._stop.set()

    def _run(self, name: str) -> None:
        kind = self._kinds[name]
        version: str | None = None  # None: list first
        delay = RETRY_SECONDS
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list(name, kind)
                version = self._watch(name, kind, version)
                delay = RETRY_SECONDS
            except KubeError as exc:
                version = None
                if exc.status == GONE:
                    log.info("watch of %s expired (410 Gone): listing again", name)
                    continue
                with self._lock:
                    self._failing.add(name)
                wait = UNSERVED_RETRY_SECONDS if exc.status == 404 else delay
                log.log(
                    logging.DEBUG if exc.status == 404 else logging.WARNING,
                    "informer %s: %s; listing again in %.0f s",
                    name,
                    exc,
                    wait,
                )
                self._stop.wait(wait)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
            except Exception:  # a broken stream, a bad line: never let the thread die
                # Resume from the last version seen (a 410 then says when a list is due).
                version = self._seen.get(name)
                log.warning("informer %s: watch broke; again in %.0f s", name, delay, exc_info=True)
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)

    def _list(self, name: str, kind: Kind) -> str:
        # One kind lists at a time: pages of every kind parsed at once (at start-up, or after
        # an etcd compaction) would make a peak of memory the process keeps afterwards.
        with self._listing:  # each page kept compact as it comes
            items, version = self._api.list_all(kind, self._selector, Stored.of)
        try:
            listed_at: int | None = int(version)
        except ValueError:
            listed_at = None
        with self._lock:
            changed = self._stores[name].replace(items, listed_at)
            self._failing.discard(name)
        self._synced[name].set()
        log.debug("informer %s: listed %d, %d changed", name, len(items), len(changed))
        for stored in changed:
            self._on_change(stored.object())
        self._seen[name] = version
        return version

    def _watch(self, name: str, kind: Kind, version: str) -> str:
        """Follow one watch; the resourceVersion to resume from when it ends."""
        for event in self._api.watch_all(kind, self._selector, version, self._watch_timeout):
            if self._stop.is_set():
                break
            kind_of_event = event.get("type")
            obj = event.get("object") or {}
            if kind_of_event == "ERROR":
                raise KubeError(
                    int(obj.get("code") or 0),
                    str(obj.get("reason", "")),
                    str(obj.get("message", "watch error")),
                )
            version = str(obj.get("metadata", {}).get("resourceVersion") or version)
            self._seen[name] = version
            if kind_of_event == "BOOKMARK":
                continue
            if self._apply_event(name, kind_of_event, obj):
                self._on_change(obj)
        return version

    def _apply_event(self, name: str, kind_of_event: Any, obj: Obj) -> bool:
        """Store one watch event; whether it told something new."""
        with self._lock:
            store = self._stores[name]
            if kind_of_event == "DELETED":
                return store.pop(_key(obj)) is not None
            if not later(_version(obj), store.version(_key(obj))):
                return False  # the echo of our own write, already stored
            new = Stored.of(obj)
            old = store.put(new)
            if old is None or name in self._status_read:
                return True
            return old.body != new.body  # not a status report alone
