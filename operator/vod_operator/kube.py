"""The one place that talks to the Kubernetes API (official `kubernetes` client, sync).

Everything goes through `Kube._call`, a thin layer over the client's REST transport (each
request is told to an optional `RequestHook`: the operator's rest_client_requests_total):
plain dicts in and out, server-side apply with one field manager, label-selected lists,
uid-guarded deletes, Events, and a cached discovery probe for the monitoring API.
Callers run it in a worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from vod_operator import naming
from vod_operator.autoscaling import MetricsApis

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kind:
    """An API resource the operator uses."""

    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def root(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def cluster_path(self) -> str:
        """Every object of this kind in every namespace (lists and watches)."""
        return f"{self.root}/{self.plural}"

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        path = f"{self.root}/namespaces/{namespace}/{self.plural}"
        if name:
            path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
        return path


VIDEOPLATFORM = Kind(naming.GROUP, naming.VERSION, naming.PLURAL)
VIDEOASSET = Kind(naming.GROUP, naming.VERSION, naming.ASSET_PLURAL)
EVENT = Kind("", "v1", "events")
LEASE = Kind("coordination.k8s.io", "v1", "leases")
JOB = Kind("batch", "v1", "jobs")
POD = Kind("", "v1", "pods")
MONITORING_GROUP_VERSION = "monitoring.coreos.com/v1"
KEDA_GROUP_VERSION = "keda.sh/v1alpha1"
#: The metrics APIs an HPA reads Pods and External metrics from (the versions the HPA
#: controller itself prefers).
CUSTOM_METRICS_GROUP_VERSION = "custom.metrics.k8s.io/v1beta2"
EXTERNAL_METRICS_GROUP_VERSION = "external.metrics.k8s.io/v1beta1"

#: Every child kind the operator may create, keyed by `kind`.
CHILD_KINDS: dict[str, Kind] = {
    "ConfigMap": Kind("", "v1", "configmaps"),
    "Secret": Kind("", "v1", "secrets"),
    "Deployment": Kind("apps", "v1", "deployments"),
    "Service": Kind("", "v1", "services"),
    "HorizontalPodAutoscaler": Kind("autoscaling", "v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": Kind("policy", "v1", "poddisruptionbudgets"),
    "Ingress": Kind("networking.k8s.io", "v1", "ingresses"),
    "ServiceMonitor": Kind("monitoring.coreos.com", "v1", "servicemonitors"),
    "PrometheusRule": Kind("monitoring.coreos.com", "v1", "prometheusrules"),
    "ScaledObject": Kind("keda.sh", "v1alpha1", "scaledobjects"),
}
MONITORING_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})
#: Child kinds listed (and so kept or pruned) only while KEDA's API is served.
KEDA_KINDS = frozenset({"ScaledObject"})

#: Every child kind the operator may create for a VideoAsset, keyed by `kind`.
ASSET_CHILD_KINDS: dict[str, Kind] = {"Job": JOB}

#: Every kind `apply` handles.
APPLIED_KINDS: dict[str, Kind] = {**CHILD_KINDS, **ASSET_CHILD_KINDS}

#: Every resource the operator writes (children, both custom resources' status, Events).
WRITTEN_RESOURCES = frozenset(
    {kind.plural for kind in APPLIED_KINDS.values()}
    | {naming.PLURAL, naming.ASSET_PLURAL, EVENT.plural}
)

CHILD_VERBS = ("get", "list", "watch", "create", "patch", "delete")

#: (apiGroup, resource, verbs) for every API call of the operator, kopf's own included.
#: The RBAC in manifests/ and the Helm chart must grant at least these.
PERMISSIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (naming.GROUP, naming.PLURAL, ("get", "list", "watch")),
    (naming.GROUP, f"{naming.PLURAL}/status", ("get", "patch")),
    # blockOwnerDeletion on children needs update on the owner's finalizers subresource.
    (naming.GROUP, f"{naming.PLURAL}/finalizers", ("update",)),
    *((kind.group, kind.plural, CHILD_VERBS) for kind in CHILD_KINDS.values()),
    # The VideoAssets it packages: watch them, report status, own Jobs (blockOwnerDeletion);
    # patch adds and removes the outputs finalizer (metadata.finalizers) and nothing else.
    (naming.GROUP, naming.ASSET_PLURAL, ("get", "list", "watch", "patch")),
    (naming.GROUP, f"{naming.ASSET_PLURAL}/status", ("get", "patch")),
    (naming.GROUP, f"{naming.ASSET_PLURAL}/finalizers", ("update",)),
    *((kind.group, kind.plural, CHILD_VERBS) for kind in ASSET_CHILD_KINDS.values()),
    # Progress and outcome of a packaging Job: its pod's log (progress lines) and termination
    # message (the result). Read only; the Job's pod itself gets no API credentials.
    ("", "pods", ("list",)),
    ("", "pods/log", ("get",)),
    ("", "events", ("create",)),  # Reconciler's Events (kopf's own poster is disabled)
    # kopf: scans the CRDs to resolve the resources it serves, and lists/watches namespaces
    # when limited to some with `-n`.
    ("apiextensions.k8s.io", "customresourcedefinitions", ("get", "list", "watch")),
    ("", "namespaces", ("get", "list", "watch")),
)

#: (apiGroup, resource, verbs) the leader election needs, in the operator's own namespace
#: only (a Role, not the ClusterRole): read the Lease, create it once, renew it.
LEASE_PERMISSIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (LEASE.group, LEASE.plural, ("get", "create", "update")),
)


#: Told about every API request: (method, HTTP status or None when no answer came, host).
RequestHook = Callable[[str, int | None, str], None]


class KubeError(Exception):
    """An API request failed; `message` is the API server's own explanation."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def namespace_terminating(self) -> bool:
        """The namespace is being deleted: creating in it is refused, and that is fine."""
        return self.status == 403 and "because it is being terminated" in self.message

    @classmethod
    def from_api(cls, exc: ApiException) -> KubeError:
        message = exc.reason or ""
        try:
            body = json.loads(exc.body or "{}")
            message = body.get("message", message)
            reason = body.get("reason", exc.reason or "")
        except (ValueError, AttributeError):
            reason = exc.reason or ""
        return cls(int(exc.status or 0), str(reason), str(message))


class NotLeader(KubeError):
    """A write refused in-process: this replica does not hold the leader Lease (any more)."""

    def __init__(self) -> None:
        super().__init__(0, "NotLeader", "this replica is not the leader; it does not write")


class WriteGuard(Protocol):
    """Asked before every write (`election.WriteGate`): raises NotLeader to refuse it."""

    def writing(self) -> AbstractContextManager[None]: ...


class ChildReads(Protocol):
    """A cache of children that `Kube` reads from and tells its writes (`informer.ChildCache`)."""

    def serves(self, kind: Kind) -> bool: ...

    def list(self, kind: Kind, namespace: str, selector: str) -> list[dict[str, Any]]: ...

    def observe(self, kind: Kind, obj: dict[str, Any]) -> None: ...

    def forget(self, kind: Kind, namespace: str, name: str) -> None: ...


class KubeApi(Protocol):
    """What the reconciler needs from the API: `Kube`, or an in-memory fake in unit tests."""

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list(self, kind: Kind, namespace: str, selector: str) -> list[dict[str, Any]]: ...

    def monitoring_available(self) -> bool: ...

    def metrics_apis(self) -> MetricsApis: ...

    def apply(
        self, manifest: Mapping[str, Any], *, manager: str = naming.FIELD_MANAGER
    ) -> dict[str, Any]: ...

    def apply_status(
        self, namespace: str, name: str, status: Mapping[str, Any], *, kind: Kind = ...
    ) -> dict[str, Any]: ...

    def delete(self, kind: Kind, namespace: str, name: str, uid: str) -> None: ...

    def set_finalizers(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        finalizers: Sequence[str],
        version: str,
    ) -> dict[str, Any]: ...

    def pod_log(self, namespace: str, pod: str, tail_lines: int) -> str: ...

    def event(self, platform: Mapping[str, Any], kind: str, reason: str, message: str) -> None: ...


def load_client(user_agent: str | None = None, pool_size: int | None = None) -> client.ApiClient:
    """An ApiClient from the in-cluster service account, else from $KUBECONFIG.

    `user_agent` names this process in the API server's audit log (e.g. its election identity);
    `pool_size` sets how many connections it keeps (one per concurrent long watch).
    """
    configuration = client.Configuration()
    if pool_size is not None:
        configuration.connection_pool_maxsize = pool_size
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    if not configuration.verify_ssl:
        log.warning("TLS verification is off for the API server (kubeconfig says so)")
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    api_client = client.ApiClient(configuration)
    if user_agent:
        api_client.user_agent = user_agent
    return api_client


class Kube:
    """Thin, thread-safe wrapper over the API for the operator's few needs."""

    def __init__(
        self,
        api_client: client.ApiClient,
        discovery_ttl: float = 60.0,
        on_request: RequestHook | None = None,
        guard: WriteGuard | None = None,
    ) -> None:
        self._client = api_client
        #: None: every write goes through (leader election off).
        self._guard = guard
        self._on_request = on_request
        self._host = urlparse(str(api_client.configuration.host)).netloc
        self._discovery_ttl = discovery_ttl
        self._discovery: tuple[float, bool] | None = None
        self._metrics_discovery: tuple[float, MetricsApis] | None = None
        self._lock = threading.Lock()
        self._instance = os.environ.get("POD_NAME") or socket.gethostname()
        #: Children read from a watch-fed cache once it serves their kind (`informer`).
        self.cache: ChildReads | None = None

    # -- plumbing -------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if method == "GET" or self._guard is None:
            data = self._call(method, path, query or [], headers, body, read_timeout=60)
        else:
            with self._guard.writing():
                data = self._call(method, path, query or [], headers, body, read_timeout=60)
        result: dict[str, Any] = json.loads(data) if data else {}
        return result

    def _call(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        body: Any,
        read_timeout: float,
        connect_timeout: float = 10,
    ) -> bytes:
        """One API call; the response body, or KubeError for any non-2xx answer."""
        response = self._open(method, path, query, headers, read_timeout, body, connect_timeout)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise KubeError.from_api(ApiException(http_resp=response))
        return bytes(data or b"")

    def _open(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        read_timeout: float,
        body: Any = None,
        connect_timeout: float = 10,
    ) -> Any:
        """Send one request; the response with its body unread (a watch streams it)."""
        serialized = self._client.param_serialize(
            method,
            path,
            query_params=query,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        status: int | None = None
        try:
            response = self._client.call_api(
                *serialized, _request_timeout=(connect_timeout, read_timeout)
            )
            status = response.status
        except ApiException as exc:
            status = exc.status or None
            raise KubeError.from_api(exc) from exc
        finally:
            if self._on_request is not None:
                self._on_request(method, status, self._host)
        return response

    # -- reads ----------------------------------------------------------------------------
    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._request("GET", kind.path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: Kind, namespace: str, selector: str) -> list[dict[str, Any]]:
        cache = self.cache
        if cache is not None and cache.serves(kind):
            return cache.list(kind, namespace, selector)
        return self._list(kind.path(namespace), kind, selector, [])[0]

    def list_all(
        self,
        kind: Kind,
        selector: str,
        convert: Callable[[dict[str, Any]], T],
        page: int = 100,
    ) -> tuple[builtins.list[T], str]:
        """Every object of `kind` matching `selector` in the cluster, each passed through
        `convert` as its page comes, and the list's version. Pages of `page` objects (one
        consistent snapshot; no single huge response, no whole list parsed at once)."""
        items: builtins.list[T] = []
        token = ""
        while True:
            query = [("limit", str(page))] + ([("continue", token)] if token else [])
            found, version, token = self._list(kind.cluster_path(), kind, selector, query)
            items.extend(convert(item) for item in found)
            if not token:
                return items, version

    def _list(
        self, path: str, kind: Kind, selector: str, query: builtins.list[tuple[str, str]]
    ) -> tuple[builtins.list[dict[str, Any]], str, str]:
        """One LIST request: its items, the list's resourceVersion and its continue token."""
        if selector:
            query = [("labelSelector", selector), *query]
        result = self._request("GET", path, query=query)
        items: builtins.list[dict[str, Any]] = result.get("items", [])
        # List items carry no apiVersion/kind; restore them so items compare like objects.
        item_kind = str(result.get("kind", "")).removesuffix("List")
        for item in items:
            item.setdefault("apiVersion", kind.api_version)
            item.setdefault("kind", item_kind)
        meta = result.get("metadata", {})
        return items, str(meta.get("resourceVersion", "")), str(meta.get("continue") or "")

    def watch_all(
        self, kind: Kind, selector: str, resource_version: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        """The watch events of `kind` in the cluster after `resource_version` (with bookmarks),
        until the API server ends the watch after `timeout_seconds`."""
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if selector:
            query.append(("labelSelector", selector))
        response = self._open(
            "GET", kind.cluster_path(), query, {"Accept": "application/json"}, timeout_seconds + 30
        )
        if not 200 <= response.status <= 299:
            response.read()
            raise KubeError.from_api(ApiException(http_resp=response))
        stream = response.response  # urllib3's, its body unread
        try:
            for line in iter_resp_lines(stream):
                event: dict[str, Any] = json.loads(line)
                obj = event.get("object")
                if isinstance(obj, dict) and event.get("type") not in ("ERROR", "BOOKMARK"):
                    obj.setdefault("apiVersion", kind.api_version)
                yield event
        finally:
            stream.release_conn()

    def monitoring_available(self) -> bool:
        """Whether monitoring.coreos.com/v1 serves ServiceMonitor and PrometheusRule (cached)."""
        with self._lock:
            cached = self._discovery
        if cached is not None and time.monotonic() - cached[0] < self._discovery_ttl:
            return cached[1]
        try:
            found = self._request("GET", f"/apis/{MONITORING_GROUP_VERSION}")
            names = {r.get("name") for r in found.get("resources", [])}
            available = {"servicemonitors", "prometheusrules"} <= names
        except KubeError as exc:
            if exc.status != 404:
                raise
            available = False
        with self._lock:
            self._discovery = (time.monotonic(), available)
        return available

    def metrics_apis(self) -> MetricsApis:
        """What autoscaling can use (cached like monitoring_available): whether KEDA serves
        scaledobjects, and which metrics the custom (pods) and external metrics APIs serve.
        An API that is not registered (404) or whose adapter is down (503) serves nothing."""
        with self._lock:
            cached = self._metrics_discovery
        if cached is not None and time.monotonic() - cached[0] < self._discovery_ttl:
            return cached[1]
        keda = "scaledobjects" in self._resource_names(KEDA_GROUP_VERSION)
        custom = frozenset(
            name.removeprefix("pods/")
            for name in self._resource_names(CUSTOM_METRICS_GROUP_VERSION)
            if name.startswith("pods/")
        )
        external = self._resource_names(EXTERNAL_METRICS_GROUP_VERSION)
        found = MetricsApis(keda=keda, custom=custom, external=external)
        with self._lock:
            self._metrics_discovery = (time.monotonic(), found)
        return found

    def _resource_names(self, group_version: str) -> frozenset[str]:
        """Resource names discovery lists for `group_version` (empty when not served)."""
        try:
            found = self._request("GET", f"/apis/{group_version}")
        except KubeError as exc:
            if exc.status not in (404, 503):
                raise
            return frozenset()
        return frozenset(str(r.get("name")) for r in found.get("resources", []))

    # -- the leader Lease (outside the write guard: a standby writes it to take over) -------
    def _lease_call(self, method: str, path: str, body: Any, timeout: float) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        data = self._call(method, path, [], headers, body, timeout, connect_timeout=timeout)
        result: dict[str, Any] = json.loads(data) if data else {}
        return result

    def get_lease(self, namespace: str, name: str, timeout: float) -> dict[str, Any] | None:
        try:
            return self._lease_call("GET", LEASE.path(namespace, name), None, timeout)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def create_lease(self, namespace: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        return self._lease_call("POST", LEASE.path(namespace), body, timeout)

    def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """PUT the whole Lease; its resourceVersion makes a concurrent change a 409."""
        return self._lease_call("PUT", LEASE.path(namespace, name), body, timeout)

    # -- writes ---------------------------------------------------------------------------
    def apply(
        self, manifest: Mapping[str, Any], *, manager: str = naming.FIELD_MANAGER
    ) -> dict[str, Any]:
        """Server-side apply `manifest` (force: this manager owns what it sends)."""
        kind = kind_of(manifest)
        meta = manifest["metadata"]
        applied = self._request(
            "PATCH",
            kind.path(meta["namespace"], meta["name"]),
            query=[("fieldManager", manager), ("force", "true")],
            body=manifest,
            content_type="application/apply-patch+yaml",
        )
        if self.cache is not None:
            self.cache.observe(kind, applied)
        return applied

    def apply_status(
        self, namespace: str, name: str, status: Mapping[str, Any], *, kind: Kind = VIDEOPLATFORM
    ) -> dict[str, Any]:
        """Server-side apply the status subresource of a VideoPlatform (or a VideoAsset)."""
        body = {
            "apiVersion": naming.API_VERSION,
            "kind": naming.ASSET_KIND if kind == VIDEOASSET else naming.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "status": status,
        }
        return self._request(
            "PATCH",
            kind.path(namespace, name, "status"),
            query=[("fieldManager", naming.FIELD_MANAGER), ("force", "true")],
            body=body,
            content_type="application/apply-patch+yaml",
        )

    def delete(self, kind: Kind, namespace: str, name: str, uid: str) -> None:
        """Delete one object, only if it is still the one we saw (uid precondition)."""
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid},
            # Jobs default to orphaning their pods through the API; never leave those behind.
            "propagationPolicy": "Background",
        }
        try:
            self._request("DELETE", kind.path(namespace, name), body=body)
        except KubeError as exc:
            if exc.status == 409:  # another object by that name now: not ours to forget
                return
            if exc.status != 404:
                raise
        if self.cache is not None:
            self.cache.forget(kind, namespace, name)

    def set_finalizers(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        finalizers: Sequence[str],
        version: str,
    ) -> dict[str, Any]:
        """Replace metadata.finalizers, only if the object is still at resourceVersion `version`."""
        body = {"metadata": {"finalizers": list(finalizers), "resourceVersion": version}}
        return self._request(
            "PATCH",
            kind.path(namespace, name),
            body=body,
            content_type="application/merge-patch+json",
        )

    def pod_log(self, namespace: str, pod: str, tail_lines: int) -> str:
        """The last `tail_lines` lines of a pod's (only) container log."""
        query = [("tailLines", str(tail_lines))]
        data = self._call(
            "GET", POD.path(namespace, pod, "log"), query, {"Accept": "*/*"}, None, 30
        )
        return data.decode("utf-8", "replace")

    def event(self, platform: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """Record a core/v1 Event on a VideoPlatform or VideoAsset (best effort)."""
        meta = platform["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": naming.API_VERSION,
                "kind": platform.get("kind") or naming.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": naming.FIELD_MANAGER},
            "reportingComponent": naming.FIELD_MANAGER,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._request("POST", EVENT.path(meta["namespace"]), body=body)
        except KubeError as exc:
            log.warning("could not record event %s on %s: %s", reason, meta["name"], exc)


def kind_of(manifest: Mapping[str, Any]) -> Kind:
    """The API resource of a rendered child manifest."""
    return APPLIED_KINDS[manifest["kind"]]


def owns_field(live: Mapping[str, Any], manager: str, *path: str) -> bool:
    """Whether `manager` holds `path` (e.g. "spec", "replicas") through an Apply entry."""
    for entry in live.get("metadata", {}).get("managedFields", []):
        if entry.get("manager") != manager or entry.get("operation") != "Apply":
            continue
        node = entry.get("fieldsV1", {})
        for part in path:
            node = node.get(f"f:{part}")
            if node is None:
                break
        else:
            return True
    return False
