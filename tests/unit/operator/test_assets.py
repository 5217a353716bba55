"""VideoAssets: planning (revision, ladder), Job rendering (golden files), what the Job's pod
says, status computation, and whole reconcile passes against the in-memory API."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.unit.operator import crdschema, update_golden
from tests.unit.operator.fakekube import FakeKube
from vod_operator import kube, naming
from vod_operator.assets import job, plan, report, status
from vod_operator.assets.reconcile import AssetReconciler
from vod_operator.kube import POD, VIDEOASSET, KubeError

pytestmark = pytest.mark.unit

NS = "media"
NOW = "2026-01-01T00:00:00Z"
PVC = {"storage": {"pvc": {"claimName": "videos"}}}
S3 = {
    "storage": {
        "s3": {
            "endpoint": "https://s3.test:8333",
            "bucket": "videos",
            "prefix": "lib/",
            "credentialsSecret": {"name": "s3-keys"},
            "caConfigMap": {"name": "s3-ca"},
        }
    }
}
URL = {"platformRef": {"name": "demo"}, "source": {"url": "http://videos.test/a.mp4"}}


def platform(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return crdschema.platform(spec or PVC, name="demo", namespace=NS)


def asset(spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    body = crdschema.asset(spec or URL, name="intro", namespace=NS)
    body["metadata"].update(meta)
    return body


# -- plan ------------------------------------------------------------------------------------
def test_platform_ladder_is_the_default_and_an_asset_may_override_it() -> None:
    default = plan.package(asset(), platform())
    assert [r["name"] for r in default.renditions] == ["1080p", "720p", "480p", "360p"]
    own = plan.package(
        asset({**URL, "renditions": [{"name": "sd", "height": 480, "videoBitrate": "900k"}]}),
        platform(),
    )
    assert own.renditions == ({"name": "sd", "height": 480, "videoBitrate": "900k",
                               "audioBitrate": "128k"},)  # fmt: skip
    assert own.revision != default.revision


@pytest.mark.parametrize(
    ("change", "repackages"),
    [
        (lambda a, p: a["spec"]["source"].update(url="http://videos.test/b.mp4"), True),
        (lambda a, p: a["spec"]["poster"].update(at="5s"), True),
        (lambda a, p: a["spec"]["storyboard"].update(enabled=False), True),
        (lambda a, p: p["spec"]["transcoding"].update(segmentSeconds=6), True),
        (lambda a, p: p["spec"]["transcoding"]["renditions"].pop(), True),
        (lambda a, p: a["metadata"].update(annotations={naming.RETRY_ANNOTATION: "1"}), True),
        (lambda a, p: a["spec"].update(retainOutputs=True), False),
        (lambda a, p: p["spec"]["transcoding"].update(backoffLimit=5), False),
        (
            lambda a, p: p["spec"]["transcoding"]["resources"].update(limits={"memory": "4Gi"}),
            False,
        ),
        (lambda a, p: p["spec"].update(replicas=5), False),
    ],
)
def test_revision_changes_exactly_when_the_outputs_would(change: Any, repackages: bool) -> None:
    a, p = asset(), platform()
    before = plan.package(a, p).revision
    change(a, p)
    assert (plan.package(a, p).revision != before) is repackages


def test_durations() -> None:
    assert plan.seconds("3s") == 3
    assert plan.seconds("1m30s") == 90
    assert plan.seconds("1.5s") == 1.5
    assert plan.seconds("250ms") == 0.25
    with pytest.raises(ValueError, match="not a duration"):
        plan.seconds("3 s")


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (None, "PlatformNotFound"),
        ({"storage": {"emptyDir": {}}}, "OriginNotShared"),
        ({"storage": {"http": {"url": "http://origin.test:8080"}}}, "OriginNotSupported"),
        ({**PVC, "transcoding": {"enabled": False}}, "TranscodingDisabled"),
        ({**PVC, "suspend": True}, "PlatformSuspended"),
    ],
)
def test_why_an_asset_waits(spec: dict[str, Any] | None, reason: str) -> None:
    wait = plan.blocked(asset(), None if spec is None else platform(spec))
    assert wait is not None
    assert wait.reason == reason
    assert plan.blocked(asset(), platform()) is None
    assert plan.blocked(asset(), platform(S3)) is None  # Jobs publish into the bucket


def test_http_platform_is_refused_with_a_message_naming_what_works() -> None:
    wait = plan.blocked(asset(), platform({"storage": {"http": {"url": "http://o.test"}}}))
    assert wait is not None
    assert "read-only" in wait.message
    assert "pvc or s3" in wait.message


# -- Job rendering ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(update_golden.ASSET_CASES))
def test_golden(case: str) -> None:
    path = update_golden.path(case)
    assert update_golden.rendered(case) == path.read_text(), (
        f"{path} is stale: run `make golden` and review the diff"
    )


def test_job_runs_the_packaging_image_restricted_bounded_and_kueue_ready() -> None:
    p = platform(
        {**PVC, "image": "registry.test/vod-stream:9", "transcoding": {"queueName": "media"}}
    )
    a = asset({**URL, "source": {"url": "http://videos.test/a.mp4",
                                 "headersSecretRef": {"name": "cdn-token"}}})  # fmt: skip
    assert (
        job.package_job(a, p, plan.package(a, p))["spec"]["template"]["spec"]["containers"][0][
            "image"
        ]
        == naming.DEFAULT_PACKAGING_IMAGE
    )  # not the platform's (serving) image: it has no ffmpeg
    manifest = job.package_job(a, p, plan.package(a, p), "registry.test/vod-stream-packaging:9")
    assert manifest["kind"] in kube.ASSET_CHILD_KINDS
    meta, spec = manifest["metadata"], manifest["spec"]
    assert meta["labels"][naming.KUEUE_QUEUE_LABEL] == "media"
    assert meta["ownerReferences"][0]["kind"] == naming.ASSET_KIND
    assert (
        spec["backoffLimit"],
        spec["activeDeadlineSeconds"],
        spec["ttlSecondsAfterFinished"],
    ) == (
        2,
        21600,
        3600,
    )
    rule = spec["podFailurePolicy"]["rules"][0]
    assert (rule["action"], rule["onExitCodes"]["values"]) == ("FailJob", [3])
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["image"] == "registry.test/vod-stream-packaging:9"
    assert container["command"] == ["vod-stream"]
    assert container["args"][:3] == ["package", "--source-url", "http://videos.test/a.mp4"]
    assert container["args"][container["args"].index("--headers-dir") + 1] == job.HEADERS_MOUNT
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"},
                                      "limits": {"memory": "2Gi"}}  # fmt: skip
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    secret = next(v for v in pod["volumes"] if v["name"] == "source-headers")
    assert secret["secret"]["secretName"] == "cdn-token"
    assert "cdn-token" not in json.dumps(container["args"])


def test_s3_platform_jobs_get_the_pods_origin_settings_and_files_and_no_media_volume() -> None:
    from vod_operator import render

    p = platform(S3)
    a = asset({"platformRef": {"name": "demo"}, "source": {"path": "uploads/a.mp4"}})
    for manifest in (job.package_job(a, p, plan.package(a, p)), job.unpublish_job(a, p)):
        pod = manifest["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env == render.origin_env(p["spec"]["storage"])  # the streaming pods' settings
        assert env["VOD_ORIGIN"] == "s3"
        assert "--media-root" not in container["args"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "media" not in volumes
        assert volumes["origin-credentials"]["secret"]["secretName"] == "s3-keys"
        assert volumes["origin-ca"]["configMap"]["name"] == "s3-ca"
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert env["VOD_S3_ACCESS_KEY_ID_FILE"].startswith(mounts["origin-credentials"] + "/")
        assert env["VOD_S3_CA_FILE"].startswith(mounts["origin-ca"] + "/")
        assert mounts["tmp"] == "/tmp"
        assert volumes["tmp"]["emptyDir"]["sizeLimit"]  # the scratch space ffmpeg writes into
        assert not any("secret" in json.dumps(e).lower() for e in container["env"]
                       if "FILE" not in e["name"])  # fmt: skip


# -- what the pod says -----------------------------------------------------------------------
PROGRESS = json.dumps(
    {
        "vodPackage": "progress",
        "stage": "transcoding",
        "progress": 42,
        "playable": False,
        "media": {"duration": 6.0},
    }
)


def succeeded(revision: str) -> str:
    return json.dumps({
        "vodPackage": "result", "result": "Succeeded", "revision": revision,
        "media": {"duration": 6.0, "width": 1280, "height": 720},
        "renditions": [{"name": "720p", "resolution": "1280x720", "bitrate": 2800000}],
        "skipped": ["1080p"],
        "playback": {"master": "/assets/media/intro/master.m3u8",
                     "poster": f"/assets/media/intro/{revision}/poster.jpg",
                     "player": "/play/assets/media/intro/master.m3u8"},
    })  # fmt: skip


FAILED = json.dumps({"vodPackage": "result", "result": "Failed", "reason": "SourceNotVideo",
                     "message": "the source is not a video ffprobe can read: Invalid data found "
                     "when processing input", "permanent": True})  # fmt: skip


def test_log_tail_gives_the_newest_snapshot_and_ignores_foreign_text() -> None:
    text = f"some warning\n{PROGRESS}\n{{not json\n"
    found = report.from_log(text)
    assert found is not None
    assert (found.progress, found.media, found.result) == (42, {"duration": 6.0}, None)
    assert report.from_log("nothing yet\n") is None


def test_termination_message_outcomes() -> None:
    assert report.from_termination(FAILED, 3, "Error").reason == "SourceNotVideo"
    oom = report.from_termination("", 137, "OOMKilled")
    assert (oom.result, oom.reason) == ("Failed", "OutOfMemory")
    assert "limits.memory" in oom.message
    crash = report.from_termination("Traceback ...\nRuntimeError: boom", 1, "Error")
    assert crash.reason == "PackagingCrashed"
    assert "boom" in crash.message


# -- status ----------------------------------------------------------------------------------
def observed(**changes: Any) -> status.Observed:
    base: dict[str, Any] = {
        "generation": 1,
        "previous": {},
        "now": NOW,
        "master": "/assets/media/intro/master.m3u8",
        "target": "aaaaaaaaaaaa",
        "job": "intro-package-aaaaaaaaaaaa",
        "requested": ("1080p", "720p"),
    }
    return status.Observed(**{**base, **changes})


def conditions(st: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}


def test_status_processing_with_progress_and_probe() -> None:
    st = status.compute(observed(state="Active", report=report.from_log(PROGRESS)))
    assert (st["phase"], st["progress"], st["media"]) == ("Processing", 42, {"duration": 6.0})
    assert conditions(st) == {
        "Probed": ("True", "Probed"),
        "Playable": ("False", "NotPublished"),
        "Ready": ("False", "Processing"),
        "Failed": ("False", "AsExpected"),
    }
    assert [r["state"] for r in st["renditions"]] == ["Processing", "Processing"]
    assert all(c["observedGeneration"] == 1 for c in st["conditions"])


def test_status_ready_from_the_result() -> None:
    found = report.from_termination(succeeded("aaaaaaaaaaaa"), 0, "Completed")
    st = status.compute(observed(state="Succeeded", report=found))
    assert (st["phase"], st["progress"], st["revision"]) == ("Ready", 100, "aaaaaaaaaaaa")
    assert conditions(st)["Ready"] == ("True", "Published")
    assert conditions(st)["Playable"] == ("True", "Published")
    assert st["renditions"] == [
        {"name": "720p", "resolution": "1280x720", "bitrate": 2800000, "state": "Ready"},
        {"name": "1080p", "state": "Skipped"},
    ]
    assert st["playback"]["poster"].endswith("aaaaaaaaaaaa/poster.jpg")
    assert st["playback"]["player"] == "/play/assets/media/intro/master.m3u8"  # the player page
    # The Job's TTL removes it later: the status stays as it is, with no writes.
    again = status.compute(observed(previous=st, now="2026-01-02T00:00:00Z"))
    assert again == st


def test_status_reprocessing_keeps_the_previous_ladder_playable() -> None:
    ready = status.compute(
        observed(
            state="Succeeded", report=report.from_termination(succeeded("aaaaaaaaaaaa"), 0, None)
        )
    )
    st = status.compute(observed(previous=ready, target="bbbbbbbbbbbb", job="j2", state="Active"))
    assert (st["phase"], st["progress"], st["revision"]) == ("Processing", 0, "aaaaaaaaaaaa")
    assert conditions(st)["Playable"] == ("True", "PreviousRevision")
    assert conditions(st)["Ready"] == ("False", "Reprocessing")
    assert st["playback"]["master"] == "/assets/media/intro/master.m3u8"


def test_status_failure_carries_the_reason_and_sticks() -> None:
    found = report.from_termination(FAILED, 3, "Error")
    st = status.compute(observed(state="Failed", report=found))
    assert st["phase"] == "Failed"
    assert conditions(st)["Failed"] == ("True", "SourceNotVideo")
    assert conditions(st)["Probed"] == ("False", "SourceNotVideo")
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert "Invalid data found" in failed["message"]
    # The Job is gone (TTL): still Failed, no new Job for the same revision.
    assert status.compute(observed(previous=st, state=None))["phase"] == "Failed"


def test_status_waits_for_a_missing_platform() -> None:
    wait = plan.blocked(asset(), None)
    st = status.compute(observed(target=None, job=None, wait=wait))
    assert st["phase"] == "Pending"
    assert conditions(st)["Ready"] == ("False", "PlatformNotFound")
    assert "does not exist" in st["conditions"][2]["message"]


def test_last_transition_time_moves_only_when_a_condition_flips() -> None:
    first = status.compute(observed(state="Active", report=report.from_log(PROGRESS)))
    later = status.compute(
        observed(
            previous=first,
            now="2026-01-01T00:01:00Z",
            state="Active",
            report=report.from_log(PROGRESS.replace("42", "70")),
        )
    )
    assert later["progress"] == 70
    assert [c["lastTransitionTime"] for c in later["conditions"]] == [NOW] * 4


# -- reconcile -------------------------------------------------------------------------------
def setup(asset_spec: dict[str, Any] | None = None, with_platform: bool = True):
    fake = FakeKube()
    if with_platform:
        fake.add_platform(platform())
    fake.add(VIDEOASSET, asset(asset_spec))
    return fake, AssetReconciler(fake, now=lambda: NOW, poll_seconds=5)


def jobs_of(fake: FakeKube) -> list[str]:
    return sorted(name for (plural, _, name) in fake.objects if plural == "jobs")


def finish(fake: FakeKube, name: str, *, outcome: str, message: str, code: int) -> None:
    """What the Job controller and the kubelet do when the pod ends."""
    manifest = fake.child("Job", NS, name)
    manifest["status"] = {"conditions": [{"type": outcome, "status": "True", "reason": outcome}]}
    fake.add(POD, {
        "metadata": {"name": f"{name}-x1", "namespace": NS,
                     "labels": {naming.JOB_NAME_LABEL: name}},
        "status": {"phase": "Succeeded" if code == 0 else "Failed",
                   "containerStatuses": [{"state": {"terminated": {
                       "exitCode": code, "message": message}}}]},
    })  # fmt: skip


def run_pod(fake: FakeKube, name: str, log: str) -> None:
    fake.add(POD, {"metadata": {"name": f"{name}-x1", "namespace": NS,
                                "labels": {naming.JOB_NAME_LABEL: name}},
                   "status": {"phase": "Running"}})  # fmt: skip
    fake.logs[(NS, f"{name}-x1")] = log


def test_first_pass_creates_one_job_adds_the_finalizer_and_polls() -> None:
    fake, reconciler = setup()
    result = reconciler.reconcile(NS, "intro")
    (name,) = jobs_of(fake)
    assert name.startswith("intro-package-")
    assert naming.OUTPUTS_FINALIZER in fake.asset(NS, "intro")["metadata"]["finalizers"]
    st = fake.asset(NS, "intro")["status"]
    assert (st["phase"], st["job"]) == ("Processing", name)
    assert result.requeue_after == 5
    assert "Packaging" in fake.reasons()


def test_progress_then_ready_then_quiet() -> None:
    fake, reconciler = setup()
    reconciler.reconcile(NS, "intro")
    (name,) = jobs_of(fake)
    run_pod(fake, name, f"{PROGRESS}\n")
    reconciler.reconcile(NS, "intro")
    assert fake.asset(NS, "intro")["status"]["progress"] == 42
    revision = name.rsplit("-", 1)[1]
    del fake.objects[("pods", NS, f"{name}-x1")]
    finish(fake, name, outcome="Complete", message=succeeded(revision), code=0)
    result = reconciler.reconcile(NS, "intro")
    st = fake.asset(NS, "intro")["status"]
    assert (st["phase"], st["revision"]) == ("Ready", revision)
    assert result.requeue_after is None
    writes = len(fake.writes)
    del fake.objects[("jobs", NS, name)]  # the TTL controller
    reconciler.reconcile(NS, "intro")
    assert len(fake.writes) == writes  # at rest: no Job again, no status write
    assert jobs_of(fake) == []


def test_a_corrupt_input_fails_once_and_is_not_retried() -> None:
    fake, reconciler = setup()
    reconciler.reconcile(NS, "intro")
    (name,) = jobs_of(fake)
    finish(fake, name, outcome="Failed", message=FAILED, code=3)
    reconciler.reconcile(NS, "intro")
    st = fake.asset(NS, "intro")["status"]
    assert st["phase"] == "Failed"
    assert "SourceNotVideo" in fake.reasons()
    del fake.objects[("jobs", NS, name)]
    reconciler.reconcile(NS, "intro")
    assert jobs_of(fake) == []  # not retried for the same revision
    body = fake.asset(NS, "intro")
    body["metadata"]["annotations"] = {naming.RETRY_ANNOTATION: "1"}
    reconciler.reconcile(NS, "intro")
    assert len(jobs_of(fake)) == 1  # the retry annotation asks for a new run


def test_a_spec_change_replaces_a_running_job_and_keeps_the_old_ladder() -> None:
    fake, reconciler = setup()
    reconciler.reconcile(NS, "intro")
    (first,) = jobs_of(fake)
    finish(fake, first, outcome="Complete", message=succeeded(first.rsplit("-", 1)[1]), code=0)
    reconciler.reconcile(NS, "intro")
    body = fake.asset(NS, "intro")
    body["spec"]["poster"]["at"] = "9s"
    body["metadata"]["generation"] = 2
    reconciler.reconcile(NS, "intro")
    (second,) = [j for j in jobs_of(fake) if j != first]
    st = fake.asset(NS, "intro")["status"]
    assert (st["phase"], st["job"]) == ("Processing", second)
    assert {c["type"]: c["status"] for c in st["conditions"]}["Playable"] == "True"
    # Another change while the second runs: the second Job is deleted, a third one created.
    body["spec"]["poster"]["at"] = "12s"
    reconciler.reconcile(NS, "intro")
    assert second not in jobs_of(fake)
    assert len(jobs_of(fake)) == 2  # the finished first one stays for its TTL


def test_a_missing_platform_waits_and_its_creation_proceeds() -> None:
    fake, reconciler = setup(with_platform=False)
    reconciler.reconcile(NS, "intro")
    assert jobs_of(fake) == []
    st = fake.asset(NS, "intro")["status"]
    assert st["phase"] == "Pending"
    assert "PlatformNotFound" in fake.reasons()
    fake.add_platform(platform())
    reconciler.reconcile(NS, "intro")
    assert len(jobs_of(fake)) == 1


def test_deletion_runs_the_cleanup_job_then_releases_the_asset() -> None:
    fake, reconciler = setup()
    reconciler.reconcile(NS, "intro")
    fake.asset(NS, "intro")["metadata"]["deletionTimestamp"] = NOW
    result = reconciler.reconcile(NS, "intro")
    assert naming.unpublish_job("intro") in jobs_of(fake)
    assert not any(j.startswith("intro-package-") for j in jobs_of(fake))  # running one stopped
    assert result.requeue_after == 5
    fake.child("Job", NS, "intro-unpublish")["status"] = {
        "conditions": [{"type": "Complete", "status": "True"}]
    }
    reconciler.reconcile(NS, "intro")
    assert ("videoassets", NS, "intro") not in fake.objects
    assert "OutputsRemoved" in fake.reasons()


def test_deletion_on_an_s3_platform_runs_the_cleanup_job_too() -> None:
    fake = FakeKube()
    fake.add_platform(platform(S3))
    fake.add(VIDEOASSET, asset())
    reconciler = AssetReconciler(fake, now=lambda: NOW, poll_seconds=5)
    reconciler.reconcile(NS, "intro")
    fake.asset(NS, "intro")["metadata"]["deletionTimestamp"] = NOW
    reconciler.reconcile(NS, "intro")
    cleaner = fake.child("Job", NS, naming.unpublish_job("intro"))
    (container,) = cleaner["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["unpublish", "--prefix", naming.asset_prefix(NS, "intro")]
    cleaner["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    reconciler.reconcile(NS, "intro")
    assert ("videoassets", NS, "intro") not in fake.objects
    assert "OutputsRemoved" in fake.reasons()


def test_retained_outputs_need_no_finalizer() -> None:
    fake, reconciler = setup({**URL, "retainOutputs": True})
    reconciler.reconcile(NS, "intro")
    assert not fake.asset(NS, "intro")["metadata"].get("finalizers")
    fake.asset(NS, "intro")["metadata"]["deletionTimestamp"] = NOW
    reconciler.reconcile(NS, "intro")
    assert naming.unpublish_job("intro") not in jobs_of(fake)


def test_a_refused_job_is_reported_not_retried() -> None:
    fake, reconciler = setup()
    fake.fail[("apply", "Job")] = KubeError(422, "Invalid", "spec.template: bad")
    result = reconciler.reconcile(NS, "intro")
    assert result.retry is False
    st = fake.asset(NS, "intro")["status"]
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Ready"] == "JobCreateFailed"


def test_platform_counts_assets_by_phase() -> None:
    from vod_operator.status import asset_counts

    def with_phase(name: str, phase: str | None, ref: str = "demo") -> dict[str, Any]:
        body = copy.deepcopy(asset({**URL, "platformRef": {"name": ref}}))
        body["metadata"]["name"] = name
        if phase:
            body["status"] = {"phase": phase}
        return body

    found = [
        with_phase("a", "Ready"),
        with_phase("b", "Ready"),
        with_phase("c", "Failed"),
        with_phase("d", None),
        with_phase("e", "Processing"),
        with_phase("f", "Ready", "x"),
    ]
    assert asset_counts(found, "demo") == {"ready": 2, "processing": 2, "failed": 1}


def test_a_job_killed_at_its_deadline_says_which_field_to_raise() -> None:
    fake, reconciler = setup()
    reconciler.reconcile(NS, "intro")
    (name,) = jobs_of(fake)
    progress_tail = f"{PROGRESS}\n"  # what FallbackToLogsOnError leaves: no result line
    finish(fake, name, outcome="Failed", message=progress_tail, code=137)
    fake.child("Job", NS, name)["status"]["conditions"][0].update(
        reason="DeadlineExceeded", message="Job was active longer than specified deadline"
    )
    reconciler.reconcile(NS, "intro")
    failed = next(
        c for c in fake.asset(NS, "intro")["status"]["conditions"] if c["type"] == "Failed"
    )
    assert failed["reason"] == "DeadlineExceeded"
    assert "activeDeadlineSeconds" in failed["message"]


TIMED_OUT = json.dumps({"vodPackage": "result", "result": "Failed",
                        "reason": "SourceDownloadFailed", "permanent": False,
                        "message": "GET http://a/b.mp4 failed: no answer within 30 s"})  # fmt: skip


def test_a_failed_run_of_a_job_that_retries_is_retrying_not_failed() -> None:
    fake, reconciler = setup()
    reconciler.reconcile(NS, "intro")
    (name,) = jobs_of(fake)

    def ready_and_failed() -> tuple[str, tuple[str, str], tuple[str, str]]:
        st = fake.asset(NS, "intro")["status"]
        found = conditions(st)
        return st["phase"], found["Ready"], found["Failed"]

    # The run prints its result; the kubelet has not yet seen the container end.
    run_pod(fake, name, f"{PROGRESS}\n{TIMED_OUT}\n")
    assert reconciler.reconcile(NS, "intro").requeue_after == 5
    assert ready_and_failed() == ("Processing", ("False", "Retrying"), ("False", "AsExpected"))
    ready = next(c for c in fake.asset(NS, "intro")["status"]["conditions"]
                 if c["type"] == "Ready")  # fmt: skip
    assert ready["message"].startswith(f"run 1 of packaging Job {name} failed")
    assert "no answer within 30 s" in ready["message"]
    assert fake.reasons().count("Retrying") == 1  # a Warning event, once per failed run
    # The pod ended (exit 1) and the Job, still active, waits out its backoff.
    pod = fake.objects[("pods", NS, f"{name}-x1")]
    pod["status"] = {"phase": "Failed", "containerStatuses": [
        {"state": {"terminated": {"exitCode": 1, "message": TIMED_OUT}}}]}  # fmt: skip
    reconciler.reconcile(NS, "intro")
    assert ready_and_failed()[:2] == ("Processing", ("False", "Retrying"))
    assert fake.reasons().count("Retrying") == 1
    # The second run makes progress: still Retrying (the last failure stays in view), with
    # the new run's progress, and no second event for the same failure.
    fake.add(POD, {"metadata": {"name": f"{name}-x2", "namespace": NS,
                                "creationTimestamp": "2026-01-01T00:00:30Z",
                                "labels": {naming.JOB_NAME_LABEL: name}},
                   "status": {"phase": "Running"}})  # fmt: skip
    pod["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    fake.logs[(NS, f"{name}-x2")] = f"{PROGRESS}\n"
    reconciler.reconcile(NS, "intro")
    assert ready_and_failed() == ("Processing", ("False", "Retrying"), ("False", "AsExpected"))
    assert fake.asset(NS, "intro")["status"]["progress"] == 42
    assert fake.reasons().count("Retrying") == 1
    # The second run fails too (its pod has not ended yet): run 2, a second event.
    fake.logs[(NS, f"{name}-x2")] = f"{PROGRESS}\n{TIMED_OUT}\n"
    reconciler.reconcile(NS, "intro")
    ready = next(c for c in fake.asset(NS, "intro")["status"]["conditions"]
                 if c["type"] == "Ready")  # fmt: skip
    assert ready["message"].startswith(f"run 2 of packaging Job {name} failed")
    assert fake.reasons().count("Retrying") == 2
    # The Job controller gives up (backoffLimit spent): now the asset failed.
    del fake.objects[("pods", NS, f"{name}-x2")]
    fake.child("Job", NS, name)["status"] = {"conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}  # fmt: skip
    reconciler.reconcile(NS, "intro")
    assert ready_and_failed() == (
        "Failed", ("False", "SourceDownloadFailed"), ("True", "SourceDownloadFailed"))  # fmt: skip


def test_a_run_that_no_retry_can_help_fails_while_the_job_is_still_active() -> None:
    refused = report.from_log(FAILED)  # permanent: the pod failure policy fails the Job
    assert report.while_active(refused, []) == refused
    crash = report.from_termination("Traceback ...\nRuntimeError: boom", 1, "Error")
    retried = report.while_active(None, [crash, crash])
    assert retried is not None
    assert (retried.result, retried.retries, retried.reason) == (None, 2, "PackagingCrashed")
    # A run that succeeded before the Job controller counted it: the outcome, not a retry.
    done = report.from_termination(succeeded("aaaaaaaaaaaa"), 0, None)
    assert report.while_active(None, [crash, done]) == done
    assert report.while_active(report.from_log(PROGRESS), []) == report.from_log(PROGRESS)
