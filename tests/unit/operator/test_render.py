"""render(): golden files for the examples, plus the rules every rendering must keep.

Regenerate the golden files with `make golden` (tests/unit/operator/update_golden.py, not a
test: a test run never writes them) and review the diff like code.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.unit.operator import crdschema, update_golden
from tests.unit.operator.update_golden import CASES, KEYS
from vod_operator import naming
from vod_operator import render as render_mod
from vod_operator.render import (
    RenderError,
    RenderInputs,
    applied_hash,
    creation_manifest,
    desired_kinds,
    render,
    stamp,
)

pytestmark = pytest.mark.unit


def _by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in manifests}


def _deployment_env(manifests: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = _by_kind(manifests)["ConfigMap"]["data"]
    return data


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    path = update_golden.path(case)
    assert update_golden.rendered(case) == path.read_text(), (
        f"{path} is stale: run `make golden` and review the diff"
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_child_is_labelled_owned_and_canonical(case: str) -> None:
    name, inputs = CASES[case]
    platform = crdschema.example_platform(name)
    for manifest in render(platform, inputs):
        meta = manifest["metadata"]
        assert meta["namespace"] == platform["metadata"]["namespace"]
        for key in ("name", "instance", "component", "managed-by", "part-of", "version"):
            assert f"app.kubernetes.io/{key}" in meta["labels"], (manifest["kind"], key)
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "videoplatform.io/v1alpha1",
                "kind": "VideoPlatform",
                "name": name,
                "uid": platform["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["annotations"][naming.APPLIED_HASH_ANNOTATION] == applied_hash(manifest)
        text = yaml.safe_dump(manifest)
        assert "null" not in text
        assert "[]" not in text
        assert "creationTimestamp" not in text
        assert "stringData" not in manifest


def test_minimal_renders_the_core_children_only() -> None:
    manifests = render(crdschema.example_platform("demo"), RenderInputs())
    assert [m["kind"] for m in manifests] == [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ]
    deployment = _by_kind(manifests)["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == naming.DEFAULT_IMAGE
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"media": "/media", "tmp": "/tmp"}
    env = _deployment_env(manifests)
    assert env["VOD_SIGNED_URLS"] == "false"
    assert "VOD_SIGNING_KEYS_DIR" not in env
    assert int(env["VOD_SHUTDOWN_GRACE_SECONDS"]) < pod["terminationGracePeriodSeconds"]


def test_full_renders_every_child_and_wires_the_contract() -> None:
    manifests = render(crdschema.example_platform("showcase"), CASES["full"][1])
    kinds = _by_kind(manifests)
    assert set(kinds) == set(
        desired_kinds(crdschema.example_platform("showcase")["spec"], CASES["full"][1])
    )
    assert "replicas" not in kinds["Deployment"]["spec"]  # KEDA's HPA owns it
    assert kinds["ScaledObject"]["spec"]["minReplicaCount"] == 2
    assert "HorizontalPodAutoscaler" not in kinds  # exactly one scaler
    adapter = _by_kind(render(crdschema.example_platform("showcase"), CASES["full-adapter"][1]))
    assert adapter["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 2
    assert "ScaledObject" not in adapter
    assert kinds["Secret"]["data"] == KEYS
    env = _deployment_env(manifests)
    assert env["VOD_SIGNING_ACTIVE_KEY_ID"] == "k-test"
    assert env["VOD_SIGNING_KEYS_DIR"] == "/etc/vod/signing"
    assert env["VOD_JWT_SECRET_FILE"] == "/etc/vod/jwt/key"
    assert env["VOD_CORS_ALLOWED_ORIGINS"] == "https://app.example.com,https://admin.example.com"
    assert "VOD_ORIGIN" not in env
    assert env["VOD_MEDIA_ROOT"] == "/media"
    assert kinds["Ingress"]["spec"]["rules"][0]["host"] == "videos.example.com"


def test_config_change_changes_the_pod_template_hash() -> None:
    platform = crdschema.example_platform("demo")
    before = _by_kind(render(platform, RenderInputs()))["Deployment"]
    changed = copy.deepcopy(platform)
    changed["spec"]["server"]["logLevel"] = "debug"
    after = _by_kind(render(changed, RenderInputs()))["Deployment"]
    annotation = naming.CONFIG_HASH_ANNOTATION

    def hash_of(d: dict[str, Any]) -> str:
        value: str = d["spec"]["template"]["metadata"]["annotations"][annotation]
        return value

    assert hash_of(before) != hash_of(after)
    assert render(platform, RenderInputs()) == render(copy.deepcopy(platform), RenderInputs())


def test_autoscaling_off_restores_replicas_and_drops_the_hpa() -> None:
    platform = crdschema.example_platform("showcase")
    platform["spec"]["autoscaling"]["enabled"] = False
    kinds = _by_kind(render(platform, CASES["full"][1]))
    assert "HorizontalPodAutoscaler" not in kinds
    assert kinds["Deployment"]["spec"]["replicas"] == 3


def test_an_autoscaled_deployment_is_created_at_min_replicas_and_applied_without_a_count() -> None:
    platform = crdschema.example_platform("showcase")
    platform["spec"]["autoscaling"].update(enabled=True, minReplicas=4, maxReplicas=9)
    platform["spec"]["replicas"] = 2
    manifests = render(platform, CASES["full"][1])
    deployment = _by_kind(manifests)["Deployment"]
    assert "replicas" not in deployment["spec"]  # the HPA owns the count after creation
    first = creation_manifest(deployment, platform["spec"])
    assert first["spec"]["replicas"] == 4
    assert {**first["spec"], "replicas": None} == {**deployment["spec"], "replicas": None}
    assert first["metadata"] == deployment["metadata"]
    assert "replicas" not in deployment["spec"]  # the rendered manifest is left as it was
    for other in manifests:
        if other["kind"] != "Deployment":
            assert creation_manifest(other, platform["spec"]) is other


def test_without_autoscaling_the_deployment_is_created_as_rendered() -> None:
    platform = crdschema.example_platform("showcase")
    platform["spec"]["autoscaling"]["enabled"] = False
    deployment = _by_kind(render(platform, CASES["full"][1]))["Deployment"]
    assert creation_manifest(deployment, platform["spec"]) is deployment
    assert deployment["spec"]["replicas"] == platform["spec"]["replicas"]


def test_monitoring_objects_only_when_the_api_exists() -> None:
    platform = crdschema.example_platform("showcase")
    without = {m["kind"] for m in render(platform, RenderInputs(signing_keys=KEYS))}
    assert not {"ServiceMonitor", "PrometheusRule"} & without
    platform["spec"]["monitoring"]["enabled"] = False
    disabled = {m["kind"] for m in render(platform, CASES["full"][1])}
    assert not {"ServiceMonitor", "PrometheusRule"} & disabled


def test_user_signing_secret_is_mounted_and_nothing_generated() -> None:
    platform = crdschema.example_platform("demo")
    platform["spec"]["security"]["signedUrls"] = {
        "enabled": True,
        "ttlSeconds": 60,
        "secretName": "my-keys",
        "activeKeyId": "2026-01",
    }
    manifests = render(platform, RenderInputs())
    kinds = _by_kind(manifests)
    assert "Secret" not in kinds
    volumes = kinds["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "signing", "secret": {"secretName": "my-keys", "defaultMode": 288}} in volumes
    assert _deployment_env(manifests)["VOD_SIGNING_ACTIVE_KEY_ID"] == "2026-01"


def test_signed_urls_without_a_generated_key_is_an_error() -> None:
    platform = crdschema.example_platform("demo")
    platform["spec"]["security"]["signedUrls"]["enabled"] = True
    with pytest.raises(RenderError):
        render(platform, RenderInputs())


def test_emptydir_origin_and_public_key_jwt() -> None:
    platform = crdschema.platform(
        {
            "storage": {"emptyDir": {}},
            "security": {"jwt": {"secretName": "jwt", "keyType": "PublicKey"}},
        }
    )
    manifests = render(platform, RenderInputs())
    pod = _by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]
    media = next(v for v in pod["volumes"] if v["name"] == "media")
    assert media == {"name": "media", "emptyDir": {"sizeLimit": "1Gi"}}
    assert _deployment_env(manifests)["VOD_JWT_PUBLIC_KEY_FILE"] == "/etc/vod/jwt/key"


def test_applied_hash_ignores_itself_and_changes_with_any_field() -> None:
    manifest = {"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"A": "1"}}
    stamped = stamp(manifest)
    assert stamped["metadata"]["annotations"] == {
        naming.APPLIED_HASH_ANNOTATION: applied_hash(manifest)
    }
    assert "annotations" not in manifest["metadata"]  # the input is left alone
    assert applied_hash(stamped) == applied_hash(manifest)
    assert stamp(stamped) == stamped
    with_annotation = {**manifest, "metadata": {"name": "x", "annotations": {"a": "b"}}}
    assert applied_hash(with_annotation) != applied_hash(manifest)
    assert applied_hash({**manifest, "data": {"A": "2"}}) != applied_hash(manifest)


def test_removed_spec_fields_change_the_applied_hash_of_their_children() -> None:
    """The reconciler applies on a hash change: that is how removed fields leave the children."""
    platform = crdschema.example_platform("showcase")
    before = _by_kind(render(platform, CASES["full"][1]))
    trimmed = copy.deepcopy(platform)
    del trimmed["spec"]["security"]["cors"]
    del trimmed["spec"]["security"]["jwt"]
    trimmed["spec"]["ingress"].pop("annotations", None)
    after = _by_kind(render(trimmed, CASES["full"][1]))

    def hash_of(m: dict[str, Any]) -> str:
        value: str = m["metadata"]["annotations"][naming.APPLIED_HASH_ANNOTATION]
        return value

    for kind in ("ConfigMap", "Deployment", "Ingress"):
        assert hash_of(before[kind]) != hash_of(after[kind]), kind
    assert hash_of(before["Service"]) == hash_of(after["Service"])
    assert "VOD_CORS_ALLOWED_ORIGINS" not in after["ConfigMap"]["data"]
    assert "VOD_JWT_SECRET_FILE" not in after["ConfigMap"]["data"]
    volumes = after["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert "jwt" not in {v["name"] for v in volumes}
    assert set(after["Ingress"]["metadata"]["annotations"]) == {naming.APPLIED_HASH_ANNOTATION}


@pytest.mark.parametrize(
    ("termination", "drain", "sleep"),
    [(30, 20, 5), (30, 27, 2), (30, 29, 0), (60, 10, 5)],
)
def test_pre_stop_sleep_fits_inside_the_termination_grace_period(
    termination: int, drain: int, sleep: int
) -> None:
    server = {"terminationGracePeriodSeconds": termination, "shutdownGraceSeconds": drain}
    assert render_mod.endpoint_drain_seconds(server) == sleep
    assert sleep == 0 or sleep + drain < termination


def _pod_spec(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = _by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]
    return spec


def test_streaming_pods_prefer_other_nodes_and_zones_and_the_node_preference_stands_alone() -> None:
    """One soft spread constraint, by hostname: the scheduler scores soft constraints only on
    nodes that carry every key of them, so a zone constraint beside it disabled it on clusters
    without zone labels. Zones: a preferred anti-affinity (nodes without the label score the
    same). Nothing hard: a replacement must never wait for a skew (a drain would hang on the
    PodDisruptionBudget)."""
    pod = _pod_spec(render(crdschema.example_platform("demo"), RenderInputs()))
    selector = {"matchLabels": naming.selector_labels("demo")}
    (spread,) = pod["topologySpreadConstraints"]
    assert spread == {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": selector,
    }
    (zone,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert zone["podAffinityTerm"] == {
        "topologyKey": "topology.kubernetes.io/zone",
        "labelSelector": selector,
    }
    assert (
        "requiredDuringSchedulingIgnoredDuringExecution" not in pod["affinity"]["podAntiAffinity"]
    )


def test_s3_origin_mounts_credentials_as_files_and_caches_in_an_empty_dir() -> None:
    manifests = render(crdschema.example_platform("library"), RenderInputs())
    env = _deployment_env(manifests)
    assert env["VOD_ORIGIN"] == "s3"
    assert env["VOD_S3_BUCKET"] == "media"
    assert env["VOD_S3_PREFIX"] == "library/"
    assert env["VOD_S3_ACCESS_KEY_ID_FILE"] == "/etc/vod/s3/access-key-id"
    assert env["VOD_CACHE_DIR"] == "/var/cache/vod"
    assert env["VOD_CACHE_MAX_BYTES"] == str(2 * 2**30)
    assert env["VOD_CACHE_SLICE_BYTES"] == str(2**20)
    assert not any("vod-demo" in value for value in env.values())  # no secret in the ConfigMap
    pod = _pod_spec(manifests)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "media" not in volumes  # nothing mounted for a remote origin
    assert volumes["origin-credentials"]["secret"] == {
        "secretName": "seaweedfs-s3",
        "items": [
            {"key": "access_key_id", "path": "access-key-id"},
            {"key": "secret_access_key", "path": "secret-access-key"},
        ],
        "defaultMode": 288,
    }
    assert volumes["cache"]["emptyDir"] == {"sizeLimit": "2Gi"}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["origin-credentials"]["mountPath"] == "/etc/vod/s3"
    assert mounts["origin-credentials"]["readOnly"] is True
    assert "envFrom" not in pod["containers"][0] or all(
        "secretRef" not in source for source in pod["containers"][0]["envFrom"]
    )


def test_cache_storage_class_gives_a_generic_ephemeral_volume() -> None:
    platform = crdschema.example_platform("library")
    platform["spec"]["cache"]["storageClassName"] = "fast-local"
    volumes = {v["name"]: v for v in _pod_spec(render(platform, RenderInputs()))["volumes"]}
    assert volumes["cache"]["ephemeral"]["volumeClaimTemplate"]["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "fast-local",
        "resources": {"requests": {"storage": "2Gi"}},
    }


def test_http_origin_with_a_ca_bundle() -> None:
    platform = crdschema.example_platform("library")
    platform["spec"]["storage"] = {
        "http": {"url": "https://origin.example.com/vod", "caConfigMap": {"name": "origin-ca"}}
    }
    manifests = render(platform, RenderInputs())
    env = _deployment_env(manifests)
    assert env["VOD_ORIGIN"] == "http"
    assert env["VOD_HTTP_ORIGIN_URL"] == "https://origin.example.com/vod"
    assert env["VOD_HTTP_ORIGIN_CA_FILE"] == "/etc/vod/origin-ca/ca.crt"
    assert not any(key.startswith("VOD_S3_") for key in env)
    volumes = {v["name"]: v for v in _pod_spec(manifests)["volumes"]}
    assert volumes["origin-ca"]["configMap"] == {
        "name": "origin-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    assert "origin-credentials" not in volumes


def test_a_change_of_origin_rolls_the_pods() -> None:
    platform = crdschema.example_platform("library")
    moved = copy.deepcopy(platform)
    moved["spec"]["storage"]["s3"]["bucket"] = "media-eu"
    annotation = naming.CONFIG_HASH_ANNOTATION

    def hash_of(p: dict[str, Any]) -> str:
        deployment = _by_kind(render(p, RenderInputs()))["Deployment"]
        value: str = deployment["spec"]["template"]["metadata"]["annotations"][annotation]
        return value

    assert hash_of(platform) != hash_of(moved)
