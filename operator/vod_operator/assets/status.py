"""Pure status computation for a VideoAsset: what was observed -> its status.

Phases: Pending (cannot be packaged yet: the condition says why), Uploading (an upload source
that has not completed yet), Processing (a Job packages
the current revision; the previously published ladder, if any, stays Playable; Ready=False
Retrying when a run failed and the Job starts another), Ready (the
current revision's ladder, poster and storyboard are published), Failed (the Job failed for the
current revision: Failed=True carries the packager's reason and ffmpeg's words; no new Job until
the spec or the retry annotation changes), Deleting.

Conditions (metav1.Condition, observedGeneration on each; lastTransitionTime moves only when
the status flips): Probed, Playable, Ready, Failed, and Uploaded for an upload source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vod_operator.assets.plan import Wait
from vod_operator.assets.report import Report
from vod_operator.status import Failure, Verdict, _condition, changed, condition

__all__ = ["Observed", "changed", "compute"]


@dataclass(frozen=True)
class Observed:
    """Everything a VideoAsset's status depends on, gathered by the reconciler."""

    generation: int
    previous: Mapping[str, Any]
    now: str
    #: The stable master playlist path (/assets/NS/NAME/master.m3u8).
    master: str
    #: Revision the spec asks for (None when it cannot be resolved: no platform).
    target: str | None = None
    job: str | None = None
    #: Why no Job can run now (platform missing, transcoding disabled...).
    wait: Wait | None = None
    #: The Job of `target`: Active, Succeeded, Failed; None when there is none (yet).
    state: str | None = None
    report: Report | None = None
    #: Rendition names the current spec asks for (for their state while processing).
    requested: Sequence[str] = ()
    #: The operator itself fell short (listing Jobs, creating one): reason and message.
    failure: Failure | None = None
    deleting: bool = False
    #: status.upload (URL with token, path, expiry) of an upload source.
    upload: Mapping[str, Any] | None = None
    #: Whether an upload source's upload completed (None: not an upload source).
    uploaded: bool | None = None


#: The wait of an upload source whose upload has not completed: phase Uploading.
AWAITING_UPLOAD = "AwaitingUpload"


@dataclass(frozen=True)
class _Outputs:
    revision: str | None
    media: Mapping[str, Any] | None
    renditions: list[dict[str, Any]]
    playback: dict[str, str]


def _previous_outputs(previous: Mapping[str, Any]) -> _Outputs:
    return _Outputs(
        revision=previous.get("revision"),
        media=previous.get("media"),
        renditions=[dict(r) for r in previous.get("renditions", [])],
        playback=dict(previous.get("playback") or {}),
    )


def _published(report: Report, target: str) -> _Outputs:
    renditions = [
        {
            "name": r.get("name"),
            "resolution": r.get("resolution"),
            "bitrate": r.get("bitrate"),
            "state": "Ready",
        }
        for r in report.renditions
    ]
    renditions += [{"name": name, "state": "Skipped"} for name in report.skipped]
    return _Outputs(target, report.media, renditions, dict(report.playback))


def compute(observed: Observed) -> dict[str, Any]:
    """The full status for `observed` (only fields the operator owns)."""
    previous = observed.previous
    outputs = _previous_outputs(previous)
    report = observed.report
    target = observed.target
    progress = int(previous.get("progress", 0)) if previous.get("targetRevision") == target else 0
    failed: tuple[str, str] | None = None
    probed: Verdict
    phase: str

    if report is not None and report.media is not None:
        outputs = _Outputs(outputs.revision, report.media, outputs.renditions, outputs.playback)
    if report is not None and report.result == "Succeeded" and target is not None:
        outputs = _published(report, target)
    published_now = target is not None and outputs.revision == target

    if observed.deleting:
        phase = "Deleting"
        ready: Verdict = (False, "Deleting", "the VideoAsset is being deleted")
    elif observed.wait is not None and (
        observed.wait.reason == "PlatformNotFound" or not published_now
    ):
        phase = "Uploading" if observed.wait.reason == AWAITING_UPLOAD else "Pending"
        ready = (False, observed.wait.reason, observed.wait.message)
    elif published_now:
        phase, progress = "Ready", 100
        ready = (True, "Published", "the ladder, poster and storyboard are published")
    elif report is not None and report.result == "Failed":
        failed = (report.reason or "PackagingFailed", report.message or "packaging failed")
    elif observed.state == "Failed":
        failed = ("PackagingFailed", "the packaging Job failed")
    elif observed.state is None and _sticky_failure(previous, target):
        cond = condition(previous, "Failed") or {}
        failed = (str(cond.get("reason", "PackagingFailed")), str(cond.get("message", "")))
    if failed is not None:
        phase = "Failed"
        ready = (False, failed[0], failed[1])
    elif not observed.deleting and observed.wait is None and not published_now:
        phase = "Processing"
        if report is not None:
            progress = max(
                progress if previous.get("targetRevision") == target else 0, report.progress
            )
        if report is not None and report.retries:
            ready = (
                False,
                "Retrying",
                # No progress here: the message (and its Warning event) changes per failed run.
                f"run {report.retries} of packaging Job {observed.job} failed and the Job runs "
                f"it again, up to its backoffLimit: {report.reason}: {report.message}",
            )
        else:
            reason = "Reprocessing" if outputs.revision else "Processing"
            ready = (False, reason, f"packaging Job {observed.job} is at {progress}%")
        outputs = _Outputs(
            outputs.revision,
            outputs.media,
            outputs.renditions or [{"name": n, "state": "Processing"} for n in observed.requested],
            outputs.playback,
        )
    if observed.failure is not None and failed is None and phase != "Ready":
        ready = (False, observed.failure.reason, observed.failure.message)

    if outputs.media is not None:
        probed = (True, "Probed", "ffprobe read the source")
    elif failed is not None and failed[0] in (
        "SourceNotVideo",
        "SourceNotFound",
        "SourceOutsideOrigin",
        "SourceDownloadFailed",
    ):
        probed = (False, failed[0], failed[1])
    else:
        probed = (None, "NotYetProbed", "the source has not been probed yet")

    new_ladder_up = report is not None and report.playable and target is not None
    if new_ladder_up:
        outputs = _Outputs(
            outputs.revision,
            outputs.media,
            outputs.renditions,
            {**outputs.playback, "master": observed.master},
        )
    if observed.wait is not None and observed.wait.reason == "PlatformNotFound":
        playable: Verdict = (False, "PlatformNotFound", observed.wait.message)
    elif new_ladder_up or published_now:
        playable = (True, "Published", f"{observed.master} lists a complete ladder")
    elif outputs.revision:
        playable = (
            True,
            "PreviousRevision",
            f"{observed.master} lists the previous revision {outputs.revision} while the "
            "current one is packaged",
        )
    else:
        playable = (False, failed[0] if failed else "NotPublished", "no ladder is published yet")

    failed_verdict: Verdict = (
        (True, failed[0], failed[1]) if failed else (False, "AsExpected", "no known problem")
    )
    verdicts: list[tuple[str, Verdict]] = [
        ("Probed", probed),
        ("Playable", playable),
        ("Ready", ready),
        ("Failed", failed_verdict),
    ]
    if observed.uploaded is not None:
        verdicts.append(("Uploaded", _uploaded(observed)))
    previous_conditions = {c["type"]: c for c in previous.get("conditions", [])}
    conditions = [
        _condition(previous_conditions.get(kind), kind, *verdict, observed)  # type: ignore[arg-type]
        for kind, verdict in verdicts
    ]
    status: dict[str, Any] = {
        "observedGeneration": observed.generation,
        "phase": phase,
        "progress": progress,
        "conditions": conditions,
    }
    if target is not None:
        status["targetRevision"] = target
    if observed.job is not None:
        status["job"] = observed.job
    if outputs.revision is not None:
        status["revision"] = outputs.revision
    if outputs.media is not None:
        status["media"] = dict(outputs.media)
    if outputs.renditions:
        status["renditions"] = outputs.renditions
    if outputs.playback:
        status["playback"] = outputs.playback
    if observed.upload is not None:
        status["upload"] = dict(observed.upload)
    return status


def _uploaded(observed: Observed) -> Verdict:
    path = (observed.upload or {}).get("path", "")
    if observed.uploaded:
        return (True, "Uploaded", f"the upload to {path} completed")
    if observed.wait is not None and observed.wait.reason != AWAITING_UPLOAD:
        return (False, observed.wait.reason, observed.wait.message)
    return (False, AWAITING_UPLOAD, f"upload the source to status.upload.url (stored at {path})")


def _sticky_failure(previous: Mapping[str, Any], target: str | None) -> bool:
    """The current revision failed before and its Job is gone: it stays Failed."""
    cond = condition(previous, "Failed")
    return (
        target is not None
        and previous.get("targetRevision") == target
        and cond is not None
        and cond.get("status") == "True"
    )
