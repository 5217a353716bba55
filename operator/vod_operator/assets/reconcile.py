"""One reconcile pass for one VideoAsset: read, decide, create/delete Jobs, write status.

Synchronous (runs in a worker thread), like `vod_operator.reconcile`. While a packaging Job runs
the pass asks to be repeated every `poll_seconds` (the Controller's requeue): each pass reads
the newest progress line from the Job's pod log, so progress reaches the status at least every
`poll_seconds` plus one API round trip. Status is written only when it changed. When an asset
is in Processing, or becomes Ready, the metrics' `PlatformView` hears of it (given one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from vod_operator import metrics, naming
from vod_operator.assets import job as jobs
from vod_operator.assets import plan, report, status, upload
from vod_operator.kube import CHILD_KINDS, JOB, POD, VIDEOASSET, VIDEOPLATFORM, KubeApi, KubeError
from vod_operator.reconcile import Result, utc_now
from vod_operator.status import Failure, condition

log = logging.getLogger(__name__)

#: Log lines read per poll: the packager prints one JSON line per snapshot, ffmpeg nothing.
TAIL_LINES = 20


class AssetReconciler:
    """Brings one VideoAsset's packaging Job and status in line with its spec."""

    def __init__(
        self,
        kube: KubeApi,
        now: Callable[[], str] = utc_now,
        poll_seconds: float = 5.0,
        probe: Callable[[str], bool | None] = upload.probe,
        view: metrics.PlatformView | None = None,
        packaging_image: str = naming.DEFAULT_PACKAGING_IMAGE,
    ) -> None:
        self.kube = kube
        self.packaging_image = packaging_image
        self.now = now
        self.poll_seconds = poll_seconds
        self.probe = probe
        self.view = view

    def names(self, namespace: str) -> set[str]:
        """The VideoAssets of `namespace` now (`Controller.lister`)."""
        return {a["metadata"]["name"] for a in self.kube.list(VIDEOASSET, namespace, "")}

    def reconcile(self, namespace: str, name: str) -> Result:
        asset = self.kube.get(VIDEOASSET, namespace, name)
        if asset is None:
            if self.view is not None:
                self.view.asset_settled(namespace, name)
            return Result(found=False)
        result = Result()
        meta = asset["metadata"]
        platform = self.kube.get(VIDEOPLATFORM, namespace, asset["spec"]["platformRef"]["name"])
        try:
            owned = [
                j
                for j in self.kube.list(JOB, namespace, naming.asset_selector(name))
                if _owned_by(j, meta["uid"])
            ]
        except KubeError as exc:
            result.fail("ListFailed", f"listing the asset's Jobs failed: {exc.message}")
            return result
        if meta.get("deletionTimestamp"):
            if self.view is not None:
                self.view.asset_settled(namespace, name)
            self._delete(asset, platform, owned, result)
            return result
        self._finalizer(asset, result)

        master = f"/{naming.asset_prefix(namespace, name)}/master.m3u8"
        previous = asset.get("status", {})
        wait = plan.blocked(asset, platform)
        upload_status: Mapping[str, Any] | None = None
        uploaded: bool | None = None
        if "upload" in asset["spec"]["source"]:
            uploaded = False
            if wait is None and platform is not None:
                upload_status, uploaded, wait = self._upload(asset, platform, previous)
        target = job_name = state = None
        current: dict[str, Any] | None = None
        found: report.Report | None = None
        requested: tuple[str, ...] = ()
        if platform is not None:
            wanted = plan.package(asset, platform)
            target = wanted.revision
            requested = tuple(str(r["name"]) for r in wanted.renditions)
            job_name = naming.package_job(name, target)
            current = next((j for j in owned if j["metadata"]["name"] == job_name), None)
            self._stop_stale(owned, job_name, result)
            if current is not None:
                state = report.job_state(current)
                found = self._report(namespace, current, state)
            elif wait is None and not self._settled(previous, target):
                state = self._create(
                    jobs.package_job(asset, platform, wanted, self.packaging_image), asset, result
                )
        observed = status.Observed(
            generation=int(meta.get("generation", 1)),
            previous=previous,
            now=self.now(),
            master=master,
            target=target,
            job=job_name,
            wait=wait,
            state=state,
            report=found,
            requested=requested,
            failure=result.failure,
            upload=upload_status,
            uploaded=uploaded,
        )
        desired = status.compute(observed)
        written = self._write_status(asset, desired, result)
        if self.view is not None:
            self._observe(asset, previous, desired, current, written)
        if desired["phase"] == "Processing" and state == "Active":
            result.requeue_after = self.poll_seconds
        if desired["phase"] == "Uploading":
            result.requeue_after = self.poll_seconds  # until the upload completes
        return result

    def _upload(
        self, asset: Mapping[str, Any], platform: Mapping[str, Any], previous: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any] | None, bool, plan.Wait | None]:
        """status.upload, whether the upload completed, and why packaging waits for it."""
        path = upload.target(asset)
        kept: Mapping[str, Any] = previous.get("upload") or {}
        conditions = previous.get("conditions", [])
        done: Mapping[str, Any] = next((c for c in conditions if c["type"] == "Uploaded"), {})
        if done.get("status") == "True" and kept.get("path") == path:
            return kept, True, None
        signed = platform["spec"]["security"]["signedUrls"]
        ref = platform["metadata"]["name"]
        if not signed.get("enabled"):
            return (
                None,
                False,
                plan.Wait(
                    "UploadNeedsSigningKey",
                    f"VideoPlatform {ref} has no signing key for upload tokens: set "
                    "spec.security.signedUrls.enabled=true",
                ),
            )
        namespace = asset["metadata"]["namespace"]
        secret_name = signed.get("secretName") or naming.ChildNames.of(ref).signing
        try:
            secret = self.kube.get(CHILD_KINDS["Secret"], namespace, secret_name)
        except KubeError as exc:
            return None, False, plan.Wait("SigningKeyUnreadable", f"Secret {secret_name}: {exc}")
        key = upload.signing_key(dict((secret or {}).get("data") or {}))
        if key is None:
            return (
                None,
                False,
                plan.Wait("SigningKeyNotReady", f"Secret {secret_name} holds no signing key yet"),
            )
        now = _epoch(self.now())
        endpoint = naming.endpoint(ref, namespace)
        probe_base = self._service_address(ref, namespace) or endpoint
        if self.probe(upload.probe_url(probe_base, path, int(now) + 300, key)):
            self.kube.event(asset, "Normal", "Uploaded", f"the upload to {path} completed")
            return kept or None, True, None
        ttl = int(asset["spec"]["source"]["upload"].get("tokenTTLSeconds", 3600))
        if not upload.still_valid(kept, path, now, ttl):
            kept = upload.upload_status(endpoint, path, int(now) + ttl, key[0], key[1])
        return (
            kept,
            False,
            plan.Wait(
                status.AWAITING_UPLOAD,
                f"upload the source with a tus client to status.upload.url (stored at {path})",
            ),
        )

    def _service_address(self, platform_name: str, namespace: str) -> str | None:
        """``http://<ClusterIP>:<port>`` of the platform's streaming Service: reachable without
        cluster DNS (an operator run beside the cluster, as `make run`, with routes to Services)."""
        try:
            service = self.kube.get(
                CHILD_KINDS["Service"], namespace, naming.ChildNames.of(platform_name).stream
            )
        except KubeError:
            return None
        ip = ((service or {}).get("spec") or {}).get("clusterIP")
        if not ip or ip == "None":
            return None
        host = f"[{ip}]" if ":" in ip else ip
        return f"http://{host}:{naming.PORT}"

    # -- observation ----------------------------------------------------------------------
    @staticmethod
    def _settled(previous: Mapping[str, Any], target: str) -> bool:
        """The target revision was published, or failed, already: no new Job for it."""
        if previous.get("revision") == target:
            return True
        failed = next(
            (c for c in previous.get("conditions", []) if c.get("type") == "Failed"), None
        )
        return (
            previous.get("targetRevision") == target
            and failed is not None
            and failed.get("status") == "True"
        )

    def _report(self, namespace: str, job: Mapping[str, Any], state: str) -> report.Report | None:
        """Progress of an active Job (its pod's log), or the outcome of a finished one."""
        try:
            pods = self.kube.list(
                POD, namespace, f"{naming.JOB_NAME_LABEL}={job['metadata']['name']}"
            )
        except KubeError as exc:
            log.warning("listing pods of %s failed: %s", job["metadata"]["name"], exc)
            return None
        pods.sort(key=lambda p: str(p["metadata"].get("creationTimestamp", "")))
        outcomes = [
            report.from_termination(str(e.get("message") or ""), e.get("exitCode"), e.get("reason"))
            for e in map(report.terminated, pods)
            if e is not None
        ]
        if state == "Active":
            running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
            current = None
            if running:
                name = running[-1]["metadata"]["name"]
                try:
                    current = report.from_log(self.kube.pod_log(namespace, name, TAIL_LINES))
                except KubeError as exc:
                    log.info("reading the log of %s failed: %s", name, exc)
                    return None
            return report.while_active(current, outcomes)
        found = outcomes[-1] if outcomes else None
        if state == "Succeeded":
            return found
        failure = report.job_failure(job)
        # The packager's own verdict first; for a pod killed from outside, the Job's reason
        # (a deadline) says more than the exit code.
        own = found is not None and found.reason not in report.UNEXPLAINED
        if found is not None and (own or failure is None or failure[0] != "DeadlineExceeded"):
            return found
        if failure is not None:
            return report.Report(result="Failed", reason=failure[0], message=failure[1])
        return None

    def _observe(
        self,
        asset: Mapping[str, Any],
        previous: Mapping[str, Any],
        desired: Mapping[str, Any],
        job: Mapping[str, Any] | None,
        written: bool,
    ) -> None:
        """Tell the metrics view since when the asset is processing, or how long its
        packaging took when it just became Ready (once: with the status write saying so)."""
        assert self.view is not None
        meta = asset["metadata"]
        started = _job_started(job)
        if desired["phase"] == "Processing":
            # A Job just created has no start yet: it starts now.
            self.view.asset_processing(meta["namespace"], meta["name"], started)
            return
        self.view.asset_settled(meta["namespace"], meta["name"])
        became_ready = desired["phase"] == "Ready" and previous.get("phase") != "Ready"
        if not (written and became_ready and started is not None):
            return
        assert job is not None
        completed = (job.get("status") or {}).get("completionTime")
        ended = _epoch(completed) if completed else _epoch(self.now())
        platform = asset["spec"]["platformRef"]["name"]
        self.view.packaging_observed(meta["namespace"], platform, ended - started)

    # -- changes --------------------------------------------------------------------------
    def _create(
        self, manifest: dict[str, Any], asset: Mapping[str, Any], result: Result
    ) -> str | None:
        try:
            self.kube.apply(manifest)
        except KubeError as exc:
            result.fail(
                "JobCreateFailed",
                f"creating Job {manifest['metadata']['name']} failed: {exc.message}",
                retry=exc.status != 422,
            )
            return None
        result.created.append(f"Job/{manifest['metadata']['name']}")
        self.kube.event(asset, "Normal", "Packaging", f"created Job {manifest['metadata']['name']}")
        return "Active"

    def _stop_stale(self, owned: list[dict[str, Any]], keep: str, result: Result) -> None:
        """Delete packaging Jobs of other revisions that still run (a newer spec won)."""
        for job in owned:
            meta = job["metadata"]
            if meta["name"] == keep or naming.REVISION_LABEL not in meta.get("labels", {}):
                continue
            if report.job_state(job) != "Active":
                continue  # finished: its TTL removes it
            try:
                self.kube.delete(JOB, meta["namespace"], meta["name"], meta["uid"])
            except KubeError as exc:
                result.fail("PruneFailed", f"delete Job/{meta['name']}: {exc.message}")
                continue
            result.pruned.append(f"Job/{meta['name']}")

    def _finalizer(self, asset: Mapping[str, Any], result: Result) -> None:
        """Hold deletion for output clean-up unless spec.retainOutputs."""
        meta = asset["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        has = naming.OUTPUTS_FINALIZER in finalizers
        wants = not asset["spec"].get("retainOutputs", False)
        if has == wants:
            return
        if wants:
            finalizers.append(naming.OUTPUTS_FINALIZER)
        else:
            finalizers.remove(naming.OUTPUTS_FINALIZER)
        self._set_finalizers(asset, finalizers, result)

    def _set_finalizers(
        self, asset: Mapping[str, Any], finalizers: list[str], result: Result
    ) -> None:
        meta = asset["metadata"]
        try:
            self.kube.set_finalizers(
                VIDEOASSET, meta["namespace"], meta["name"], finalizers, meta["resourceVersion"]
            )
        except KubeError as exc:
            if exc.status != 404:
                result.fail("FinalizerUpdateFailed", f"finalizers: {exc.message}")

    def _delete(
        self,
        asset: Mapping[str, Any],
        platform: Mapping[str, Any] | None,
        owned: list[dict[str, Any]],
        result: Result,
    ) -> None:
        """Stop packaging; remove the outputs (a clean-up Job) unless retained; let it go."""
        meta = asset["metadata"]
        cleanup = naming.unpublish_job(meta["name"])
        for job in owned:
            if job["metadata"]["name"] != cleanup and report.job_state(job) == "Active":
                try:
                    self.kube.delete(
                        JOB, meta["namespace"], job["metadata"]["name"], job["metadata"]["uid"]
                    )
                except KubeError as exc:
                    result.fail("PruneFailed", f"delete Job/{job['metadata']['name']}: {exc}")
        finalizers = list(meta.get("finalizers") or [])
        if naming.OUTPUTS_FINALIZER not in finalizers:
            return
        remaining = [f for f in finalizers if f != naming.OUTPUTS_FINALIZER]
        prefix = naming.asset_prefix(meta["namespace"], meta["name"])
        if asset["spec"].get("retainOutputs", False):
            self._set_finalizers(asset, remaining, result)
            return
        if platform is None or not plan.writable_origin(platform["spec"]["storage"]):
            self.kube.event(
                asset,
                "Warning",
                "OutputsNotRemoved",
                f"the platform's storage is gone or not shared: {prefix} was left in place",
            )
            self._set_finalizers(asset, remaining, result)
            return
        cleaner = next((j for j in owned if j["metadata"]["name"] == cleanup), None)
        if cleaner is None:
            try:
                self.kube.apply(jobs.unpublish_job(asset, platform, self.packaging_image))
            except KubeError as exc:
                if exc.namespace_terminating or exc.status == 422:
                    self.kube.event(
                        asset,
                        "Warning",
                        "OutputsNotRemoved",
                        f"the clean-up Job was refused ({exc.message}): {prefix} was left",
                    )
                    self._set_finalizers(asset, remaining, result)
                else:
                    result.fail("JobCreateFailed", f"clean-up Job: {exc.message}")
                return
            result.created.append(f"Job/{cleanup}")
            result.requeue_after = self.poll_seconds
            return
        state = report.job_state(cleaner)
        if state == "Active":
            result.requeue_after = self.poll_seconds
            return
        if state == "Failed":
            self.kube.event(
                asset,
                "Warning",
                "OutputsNotRemoved",
                f"the clean-up Job {cleanup} failed: {prefix} was left in place",
            )
        else:
            self.kube.event(asset, "Normal", "OutputsRemoved", f"removed {prefix}")
        self._set_finalizers(asset, remaining, result)

    def _write_status(
        self, asset: Mapping[str, Any], desired: dict[str, Any], result: Result
    ) -> bool:
        """Write the status if it changed; whether it was written."""
        previous = asset.get("status", {})
        if not status.changed(previous, desired) and set(previous) <= set(desired):
            return False
        meta = asset["metadata"]
        try:
            written = self.kube.apply_status(
                meta["namespace"], meta["name"], desired, kind=VIDEOASSET
            )
        except KubeError as exc:
            result.fail("StatusUpdateFailed", f"status update failed: {exc.message}")
            return False
        result.status_version = written.get("metadata", {}).get("resourceVersion")
        for kind, reason, message in transition_events(previous, desired):
            self.kube.event(asset, kind, reason, message)
        return True


def transition_events(
    previous: Mapping[str, Any], current: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """Events worth recording when an asset's phase changes, or a run of its Job failed."""
    before, after = previous.get("phase"), current.get("phase")
    ready = condition(current, "Ready") or {}
    if ready.get("reason") == "Retrying":
        was = condition(previous, "Ready") or {}
        if (was.get("reason"), was.get("message")) != ("Retrying", ready.get("message")):
            return [("Warning", "Retrying", str(ready.get("message", "")))]
    if before == after:
        return []
    if after == "Ready":
        return [("Normal", "Ready", f"published {current.get('playback', {}).get('master', '')}")]
    if after == "Failed":
        cond = condition(current, "Failed") or {}
        return [("Warning", str(cond.get("reason", "Failed")), str(cond.get("message", "")))]
    if after == "Pending":
        return [("Warning", str(ready.get("reason", "Pending")), str(ready.get("message", "")))]
    return []


def _epoch(rfc3339: str) -> float:
    """Seconds since the epoch of the reconciler's clock (``2026-01-01T00:00:00Z``)."""
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def _job_started(job: Mapping[str, Any] | None) -> float | None:
    """When a Job started (status.startTime, else its creation), in epoch seconds."""
    if job is None:
        return None
    stamp = (job.get("status") or {}).get("startTime") or job["metadata"].get("creationTimestamp")
    return _epoch(stamp) if stamp else None


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences", [])
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


__all__ = ["AssetReconciler", "Failure", "transition_events"]
