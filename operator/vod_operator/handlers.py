"""kopf wiring only: which watch events feed the reconcile queues (platforms, assets).

Only `on.event` handlers are used: kopf then keeps no progress or diff-base state in the
objects and adds no finalizers, so a platform at rest sees no writes. Retries and backoff live
in `Controller`. Run with `python -m vod_operator` or
`kopf run --standalone --all-namespaces -m vod_operator.handlers`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from vod_operator import __version__, memory, naming
from vod_operator.asset_index import AssetIndex
from vod_operator.assets.reconcile import AssetReconciler
from vod_operator.autoscaling import SCALER_KINDS
from vod_operator.controller import Controller
from vod_operator.election import LeaderElector, WriteGate, own_identity
from vod_operator.informer import ChildCache, OnChange
from vod_operator.kube import ASSET_CHILD_KINDS, CHILD_KINDS, Kind, Kube, load_client
from vod_operator.lease import ElectionConfig
from vod_operator.metrics import MetricsServer, OperatorMetrics
from vod_operator.options import Options
from vod_operator.reconcile import Reconciler

OWNED = {naming.MANAGED_BY: naming.FIELD_MANAGER}
log = logging.getLogger(__name__)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    options = Options.from_env()
    # No kopf peering: with leader election every replica watches (warm) and only the
    # Lease holder's controllers run passes and write (`election`).
    settings.peering.standalone = True
    settings.posting.enabled = False  # our Events are explicit, see Reconciler
    settings.watching.server_timeout = options.watch_timeout_seconds
    settings.watching.client_timeout = options.watch_timeout_seconds + 30
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    for kind in ASSET_CHILD_KINDS.values():  # only our Jobs (the children: `informer`)
        plural = f"{kind.plural}.{kind.group}" if kind.group else kind.plural
        settings.watching.label_selectors[plural] = f"{naming.MANAGED_BY}={naming.FIELD_MANAGER}"
    metrics = OperatorMetrics(__version__)
    memo.metrics = metrics
    identity = own_identity()
    gate = WriteGate() if options.leader_election else None
    kube = Kube(
        load_client(user_agent=f"vod-operator/{__version__} ({identity})"),
        discovery_ttl=options.monitoring_probe_seconds / 2,
        on_request=metrics.api_request,
        guard=gate,
    )
    platforms = Reconciler(kube, view=metrics.platforms, runbook_base_url=options.runbook_base_url)
    videoassets = AssetReconciler(
        kube, view=metrics.platforms, packaging_image=options.packaging_image
    )
    controller = Controller(
        platforms.reconcile,
        workers=options.workers,
        max_backoff=options.max_backoff_seconds,
        resync_seconds=options.resync_seconds,
        monitoring_probe=lambda: (kube.monitoring_available(), kube.metrics_apis()),
        monitoring_probe_seconds=options.monitoring_probe_seconds,
        # What the API shows is looked at again on the discovery probe's cadence: which
        # platforms still exist too (deletions a resumed watch did not report).
        lister=platforms.names,
        lister_seconds=options.monitoring_probe_seconds,
        observer=metrics.queue("videoplatform", options.workers),
        leading=gate is None,
    )
    controller.start()
    memo.controller = controller
    # Children come from a watch-fed cache, on a client of its own (one connection per watch).
    children = ChildCache(
        Kube(
            load_client(f"vod-operator/{__version__} ({identity})", len(CHILD_KINDS) + 1),
            on_request=metrics.api_request,
        ),
        CHILD_KINDS,
        f"{naming.MANAGED_BY}={naming.FIELD_MANAGER}",
        _child_changed(asyncio.get_running_loop(), controller),
        watch_timeout_seconds=options.watch_timeout_seconds,
        # status.py reads the Deployment's status, autoscaling.scaler_failure the scaler's.
        status_read=frozenset({"Deployment", *SCALER_KINDS}),
    )
    kube.cache = children
    children.start()
    memo.children = children
    assets = Controller(
        videoassets.reconcile,
        workers=options.workers,
        max_backoff=options.max_backoff_seconds,
        resync_seconds=options.resync_seconds,
        lister=videoassets.names,
        lister_seconds=options.monitoring_probe_seconds,
        observer=metrics.queue("videoasset", options.workers),
        leading=gate is None,
    )
    assets.start()
    memo.assets = assets
    #: (namespace, asset) -> (platform name, phase) last seen: platform counts follow phases.
    memo.asset_phases = AssetIndex()
    memo.trimmer = asyncio.create_task(memory.trim_every(), name="malloc trim")
    memo.metrics_server = _serve_metrics(metrics, options)  # last: nothing after it can fail
    memo.elector = None
    if gate is not None:
        config = ElectionConfig(
            name=options.leader_election_name,
            namespace=options.leader_election_namespace,
            identity=identity,
            lease_duration=options.lease_duration_seconds,
            renew_deadline=options.renew_deadline_seconds,
            retry_period=options.retry_period_seconds,
        )

        def lead() -> None:
            controller.lead()
            assets.lead()

        def stand_by() -> None:
            """The Lease was lost (no renew within the deadline; writes were already refused
            by the gate): stand by, watches warm, until this replica holds it again."""
            controller.stand_by()
            assets.stand_by()

        memo.elector = LeaderElector(
            kube,
            config,
            gate,
            on_started=lead,
            on_lost=stand_by,
            on_status=metrics.leader_election(config.name, identity),
        )
        memo.elector_task = asyncio.create_task(memo.elector.run(), name="leader election")
    log.info("vod-operator started as %s: %s", identity, options)


def _serve_metrics(metrics: OperatorMetrics, options: Options) -> MetricsServer | None:
    """The /metrics server on its own port (none with VOD_OPERATOR_METRICS_PORT=0)."""
    if options.metrics_port == 0:
        log.info("metrics server off (VOD_OPERATOR_METRICS_PORT=0)")
        return None
    try:
        server = MetricsServer(metrics.registry, options.metrics_bind_address, options.metrics_port)
    except OSError as exc:  # a port taken stays taken: stop rather than retry forever
        raise kopf.PermanentError(
            f"cannot serve metrics on {options.metrics_bind_address}:{options.metrics_port} "
            f"(VOD_OPERATOR_METRICS_BIND_ADDRESS, VOD_OPERATOR_METRICS_PORT): {exc}"
        ) from exc
    log.info("serving metrics on %s", server.url)
    return server


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    elector: LeaderElector | None = getattr(memo, "elector", None)
    if elector is not None:
        memo.elector_task.cancel()
        await asyncio.gather(memo.elector_task, return_exceptions=True)
    await memo.controller.stop()
    await memo.assets.stop()
    memo.children.stop()
    memo.trimmer.cancel()
    if elector is not None:  # after the passes stopped: writes under way finish, then hand over
        await asyncio.to_thread(elector.release)
    server: MetricsServer | None = getattr(memo, "metrics_server", None)
    if server is not None:
        server.close()


@kopf.on.event(naming.GROUP, naming.VERSION, naming.PLURAL)
async def videoplatform_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """A VideoPlatform appeared (also at start-up: resume), changed or went."""
    controller: Controller = memo.controller
    key = (body.metadata.namespace or "", body.metadata.name or "")
    if event.get("type") == "DELETED":
        controller.forget(key)  # the children go through garbage collection
        memo.metrics.platforms.forget_platform(*key, body.metadata.get("uid"))
    elif not controller.is_own_write(key, body.metadata.get("resourceVersion")):
        controller.enqueue(key)
    # Assets waiting for this platform (or using its ladder) look again.
    phases: AssetIndex = memo.asset_phases
    for asset_key in phases.of_platform(key):
        memo.assets.enqueue(asset_key)


@kopf.on.event(naming.GROUP, naming.VERSION, naming.ASSET_PLURAL)
async def videoasset_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """A VideoAsset appeared, changed or went; its platform's counts follow its phase."""
    assets: Controller = memo.assets
    key = (body.metadata.namespace or "", body.metadata.name or "")
    platform = str(body.spec.get("platformRef", {}).get("name", ""))
    phase = body.get("status", {}).get("phase")
    phases: AssetIndex = memo.asset_phases
    before = phases.get(key)
    if event.get("type") == "DELETED":
        assets.forget(key)
        phases.pop(key)
        memo.metrics.platforms.asset_settled(*key)
    else:
        phases.set(key, platform, phase)
        if not assets.is_own_write(key, body.metadata.get("resourceVersion")):
            assets.enqueue(key)
    if before != phases.get(key) and platform:
        memo.controller.enqueue((key[0], platform))


def _controllers(body: Mapping[str, Any], kind: str) -> list[tuple[str, str]]:
    """(namespace, name) of the `kind` objects that control `body`."""
    metadata = body.get("metadata") or {}
    namespace = metadata.get("namespace") or ""
    refs = metadata.get("ownerReferences") or []
    return [(namespace, r["name"]) for r in refs if r.get("kind") == kind and r.get("controller")]


async def job_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A packaging or clean-up Job changed: reconcile the VideoAsset that owns it."""
    for key in _controllers(body, naming.ASSET_KIND):
        memo.assets.enqueue(key)


def _child_changed(loop: asyncio.AbstractEventLoop, controller: Controller) -> OnChange:
    """What the children's informers call (in their threads) when a child appeared, changed or
    went: reconcile its owner (self-healing)."""

    def changed(child: Mapping[str, Any]) -> None:
        for key in _controllers(child, naming.KIND):
            loop.call_soon_threadsafe(controller.enqueue, key)

    return changed


def _watch_owned(kinds: Iterable[Kind], handler: Any, prefix: str) -> None:
    """Register `handler` for events of every labelled object of `kinds`."""
    for kind in kinds:
        kopf.on.event(
            group=kind.group,
            version=kind.version,
            plural=kind.plural,
            labels=OWNED,
            id=f"{prefix}-{kind.plural}",
        )(handler)


_watch_owned(ASSET_CHILD_KINDS.values(), job_event, "asset-child")
