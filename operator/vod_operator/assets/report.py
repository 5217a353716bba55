"""Pure: what a packaging Job's pod says (log lines, termination message) -> a `Report`.

The pod prints one JSON line per progress snapshot (`{"vodPackage": "progress", ...}`) and,
at the end, its result (`{"vodPackage": "result", ...}`), which it also writes to its
termination message. These functions read them; they never raise on foreign text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

#: Reasons of a container that ended without the packager's own result.
UNEXPLAINED = frozenset({"PackagingCrashed", "NoResult"})


@dataclass(frozen=True)
class Report:
    """The newest thing the Job said about one revision."""

    progress: int = 0
    media: Mapping[str, Any] | None = None
    playable: bool = False
    #: Set once the run ended: "Succeeded" or "Failed".
    result: str | None = None
    reason: str = ""
    message: str = ""
    #: A failed run the packager said no retry can help (exit 3: the Job fails at once).
    permanent: bool = False
    #: Failed runs of a Job that is still active (the Job controller starts another pod);
    #: `reason` and `message` are then the last failure's, `progress` the current run's.
    retries: int = 0
    renditions: tuple[Mapping[str, Any], ...] = ()
    skipped: tuple[str, ...] = ()
    playback: Mapping[str, str] = field(default_factory=dict)


def _lines(text: str) -> Iterable[dict[str, Any]]:
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("vodPackage") in ("progress", "result"):
            yield value


def _from(entry: Mapping[str, Any]) -> Report:
    if entry.get("vodPackage") == "result":
        succeeded = entry.get("result") == "Succeeded"
        return Report(
            progress=100 if succeeded else 0,
            media=entry.get("media"),
            playable=succeeded,
            result="Succeeded" if succeeded else "Failed",
            reason=str(entry.get("reason", "")),
            message=str(entry.get("message", "")),
            permanent=entry.get("permanent") is True,
            renditions=tuple(entry.get("renditions") or ()),
            skipped=tuple(entry.get("skipped") or ()),
            playback=dict(entry.get("playback") or {}),
        )
    return Report(
        progress=max(0, min(100, int(entry.get("progress", 0)))),
        media=entry.get("media"),
        playable=bool(entry.get("playable", False)),
    )


def from_log(text: str) -> Report | None:
    """The newest snapshot (or result) in a log tail; None when there is none yet."""
    entries = list(_lines(text))
    return _from(entries[-1]) if entries else None


def from_termination(message: str, exit_code: int | None, reason: str | None) -> Report:
    """The outcome of a finished container: its result line, else what the kubelet says.

    With `terminationMessagePolicy: FallbackToLogsOnError` a container that died before
    writing its result (killed for memory, a crash) leaves its log tail as the message.
    """
    results = [e for e in _lines(message) if e.get("vodPackage") == "result"]
    if results:
        return _from(results[-1])
    if exit_code == 0:
        return Report(result="Failed", reason="NoResult", message="the Job ended without a result")
    if reason == "OOMKilled":
        return Report(
            result="Failed",
            reason="OutOfMemory",
            message="the packaging container ran out of memory: raise the VideoPlatform's "
            "spec.transcoding.resources.limits.memory",
        )
    tail = " ".join(message.split())[-512:]
    detail = f"exit code {exit_code}" + (f" ({reason})" if reason else "")
    return Report(
        result="Failed",
        reason="PackagingCrashed",
        message=f"the packaging container failed with {detail}" + (f": {tail}" if tail else ""),
    )


def while_active(current: Report | None, ended: Sequence[Report]) -> Report | None:
    """What a Job that is still active says: a failed run is an attempt, not the outcome.

    `current` is what the running pod's log says (None when no pod runs), `ended` the
    outcomes of the Job's ended pods, oldest first. Unless the packager said no retry can help
    (the pod failure policy then fails the Job at once), the Job controller starts another pod
    after its backoff, or marks the Job Failed when backoffLimit is spent; until it does, the
    asset is retrying, not failed, and the last failure stays in view while the next run works.
    """
    done = next((r for r in reversed(ended) if r.result == "Succeeded"), None)
    if done is not None:
        return done
    failures = [r for r in ended if r.result == "Failed"]
    if current is not None and current.result == "Failed":
        failures.append(current)  # the run printed its result; its pod has not ended yet
        current = None
    if not failures:
        return current
    last = failures[-1]
    if last.permanent:
        return last
    now = current or Report()
    return replace(now, reason=last.reason, message=last.message, retries=len(failures))


def terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The terminated state of a pod's (only) container, if it has ended."""
    for container in pod.get("status", {}).get("containerStatuses", []):
        state = container.get("state", {}).get("terminated")
        if state is not None:
            return state  # type: ignore[no-any-return]
    return None


def job_failure(job: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of a Job the Job controller marked Failed, else None."""
    for cond in job.get("status", {}).get("conditions", []):
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            reason = str(cond.get("reason") or "JobFailed")
            hints = {
                "DeadlineExceeded": "; raise the VideoPlatform's "
                "spec.transcoding.activeDeadlineSeconds or its CPU",
                "BackoffLimitExceeded": "; the attempts are in `kubectl logs job/"
                f"{job['metadata']['name']}` until the Job's TTL removes it",
            }
            return reason, str(cond.get("message") or reason) + hints.get(reason, "")
    return None


def job_state(job: Mapping[str, Any]) -> str:
    """Active, Succeeded or Failed, from the Job's own conditions."""
    for cond in job.get("status", {}).get("conditions", []):
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "Succeeded"
        if cond.get("type") == "Failed":
            return "Failed"
    return "Active"
