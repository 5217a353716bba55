"""VideoAssets with an upload source: the upload token (checked by vod-stream's own code), the
Uploading phase, and completion starting the packaging Job."""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import pytest

from tests.unit.operator import crdschema
from tests.unit.operator.fakekube import FakeKube
from tests.unit.operator.test_crd import _json_schema
from vod_operator import naming
from vod_operator.assets import job, plan, upload
from vod_operator.assets.reconcile import AssetReconciler
from vod_operator.kube import CHILD_KINDS, VIDEOASSET
from vod_stream import uploadtokens
from vod_stream._dataplane import verify

pytestmark = pytest.mark.unit

NS = "media"
KEY = b"k" * 32
SIGNED = {
    "storage": {"pvc": {"claimName": "videos"}},
    "security": {"signedUrls": {"enabled": True}},
}
UPLOAD = {"platformRef": {"name": "demo"}, "source": {"upload": {}}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_780_000_000

    def __call__(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.now))


def setup(
    platform_spec: dict[str, Any] | None = None, asset_spec: dict[str, Any] | None = None
) -> tuple[FakeKube, AssetReconciler, list[str], Clock, dict[str, bool]]:
    fake = FakeKube()
    fake.add_platform(crdschema.platform(platform_spec or SIGNED, name="demo", namespace=NS))
    fake.add(VIDEOASSET, crdschema.asset(asset_spec or UPLOAD, name="intro", namespace=NS))
    secret = naming.ChildNames.of("demo").signing
    fake.add(
        CHILD_KINDS["Secret"],
        {
            "metadata": {"name": secret, "namespace": NS},
            "data": {"k1": base64.b64encode(KEY).decode()},
        },
    )
    probed: list[str] = []
    there = {"object": False}

    def probe(url: str) -> bool | None:
        probed.append(url)
        return there["object"]

    clock = Clock()
    reconciler = AssetReconciler(fake, now=clock, poll_seconds=5, probe=probe)
    return fake, reconciler, probed, clock, there


def jobs_of(fake: FakeKube) -> list[str]:
    return sorted(name for (plural, _, name) in fake.objects if plural == "jobs")


def test_the_operator_signs_what_vod_stream_verifies() -> None:
    now = time.time()
    params = upload.token("uploads/media/intro", int(now) + 60, "k1", KEY)
    assert uploadtokens.check(params, {"k1": KEY}.get, now) == ("uploads/media/intro", "")
    probe = upload.probe_url(
        "http://demo-stream.media.svc:8080", "uploads/a b.mp4", int(now) + 60, ("k1", KEY)
    )
    parts = urlsplit(probe)
    query = dict(parse_qsl(parts.query))
    assert verify("/uploads/a b.mp4", query, {"k1": KEY}.get, now, None) is None
    assert parts.path == "/uploads/a%20b.mp4"


def test_an_upload_source_waits_uploading_with_a_url_then_packages_when_complete() -> None:
    fake, reconciler, probed, clock, there = setup()
    result = reconciler.reconcile(NS, "intro")
    st = fake.asset(NS, "intro")["status"]
    assert st["phase"] == "Uploading"
    assert jobs_of(fake) == []
    assert result.requeue_after == 5
    url = urlsplit(st["upload"]["url"])
    assert (url.netloc, url.path) == ("demo-stream.media.svc:8080", "/tus/")
    token = dict(parse_qsl(url.query))
    assert uploadtokens.check(token, {"k1": KEY}.get, clock.now) == ("uploads/media/intro", "")
    assert int(token["exp"]) == clock.now + 3600
    assert st["upload"]["path"] == "uploads/media/intro"
    uploaded = {c["type"]: c for c in st["conditions"]}["Uploaded"]
    assert (uploaded["status"], uploaded["reason"]) == ("False", "AwaitingUpload")
    assert urlsplit(probed[-1]).path == "/uploads/media/intro"

    clock.now += 600  # the token keeps more than half its life: the same URL
    reconciler.reconcile(NS, "intro")
    assert fake.asset(NS, "intro")["status"]["upload"] == st["upload"]
    clock.now += 1800  # less than half left: a fresh token
    reconciler.reconcile(NS, "intro")
    renewed = fake.asset(NS, "intro")["status"]["upload"]
    assert renewed["url"] != st["upload"]["url"]

    there["object"] = True
    reconciler.reconcile(NS, "intro")
    st = fake.asset(NS, "intro")["status"]
    assert st["phase"] == "Processing"
    assert {c["type"]: c["status"] for c in st["conditions"]}["Uploaded"] == "True"
    assert "Uploaded" in fake.reasons()
    (name,) = jobs_of(fake)
    args = fake.child("Job", NS, name)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--source-path") + 1] == "uploads/media/intro"

    asked = len(probed)
    reconciler.reconcile(NS, "intro")  # Uploaded sticks: no more probes
    assert len(probed) == asked


def test_without_signed_urls_there_is_no_key_for_an_upload_token() -> None:
    fake, reconciler, probed, _, _ = setup({"storage": {"pvc": {"claimName": "videos"}}})
    reconciler.reconcile(NS, "intro")
    st = fake.asset(NS, "intro")["status"]
    assert st["phase"] == "Pending"
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Ready"] == "UploadNeedsSigningKey"
    assert "upload" not in st
    assert probed == []


def test_an_upload_path_and_the_revision() -> None:
    spec = {"platformRef": {"name": "demo"}, "source": {"upload": {"path": "in/a.mov"}}}
    asset = crdschema.asset(spec, name="intro", namespace=NS)
    assert upload.target(asset) == "in/a.mov"
    platform = crdschema.platform(SIGNED, name="demo", namespace=NS)
    wanted = plan.package(asset, platform)
    assert wanted.source == {"path": "in/a.mov"}
    assert "--source-path" in job.package_args(asset, wanted, platform["spec"]["storage"])
    assert asset["spec"]["source"]["upload"]["tokenTTLSeconds"] == 3600  # the CRD default
    short = crdschema.asset(
        {"platformRef": {"name": "demo"}, "source": {"upload": {"tokenTTLSeconds": 5}}}
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(short, _json_schema(crdschema.asset_schema()))


def test_the_completion_probe_goes_to_the_services_cluster_ip_when_known() -> None:
    fake, reconciler, probed, _, _ = setup()
    reconciler.reconcile(NS, "intro")
    assert urlsplit(probed[-1]).netloc == "demo-stream.media.svc:8080"  # no Service yet: DNS
    service = naming.ChildNames.of("demo").stream
    fake.add(
        CHILD_KINDS["Service"],
        {"metadata": {"name": service, "namespace": NS}, "spec": {"clusterIP": "10.96.3.7"}},
    )
    reconciler.reconcile(NS, "intro")
    assert urlsplit(probed[-1]).netloc == "10.96.3.7:8080"
    # the user-facing URL keeps the Service's DNS name
    url = urlsplit(fake.asset(NS, "intro")["status"]["upload"]["url"])
    assert url.netloc == "demo-stream.media.svc:8080"
