"""The CRD itself: documented field by field, defaults sane, examples valid against it."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from tests.unit.operator import crdschema

pytestmark = pytest.mark.unit


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for key, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _walk(extra, f"{path}{{}}")


def _json_schema(node: Any) -> Any:
    """The OpenAPI schema as plain JSON Schema (drop Kubernetes extensions)."""
    if isinstance(node, dict):
        return {k: _json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if isinstance(node, list):
        return [_json_schema(v) for v in node]
    return node


def test_every_spec_and_status_field_has_a_description() -> None:
    """Every node under spec and status: properties, list items and map values alike."""
    root = crdschema.schema()
    walked = [path for top in ("spec", "status") for path, _ in _walk(root["properties"][top], top)]
    # The walk reaches into list items and map values (additionalProperties) too.
    assert {
        "spec.ingress.annotations{}",
        "spec.resources.requests{}",
        "spec.resources.limits{}",
        "spec.security.cors.allowedOrigins[]",
        "spec.transcoding.renditions[].height",
        "status.conditions[].reason",
    } <= set(walked)
    missing = [
        path
        for top in ("spec", "status")
        for path, node in _walk(root["properties"][top], top)
        if "description" not in node
    ]
    assert missing == []


def test_identity_subresources_and_columns() -> None:
    crd = crdschema.crd()["spec"]
    version = crd["versions"][0]
    assert (crd["group"], crd["scope"], crd["names"]["shortNames"], crd["names"]["categories"]) == (
        "videoplatform.io",
        "Namespaced",
        ["vp"],
        ["vod"],
    )
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert {"Ready", "Replicas", "Endpoint", "Age"} <= set(columns)


@pytest.mark.parametrize("name", ["demo", "showcase"])
def test_examples_validate_against_the_schema(name: str) -> None:
    body = crdschema.example_platform(name)
    jsonschema.validate(body, _json_schema(crdschema.schema()))


def test_defaults_fill_a_minimal_spec() -> None:
    body = crdschema.platform({"storage": {"pvc": {"claimName": "videos"}}})
    spec = body["spec"]
    assert spec["replicas"] == 2
    behavior = spec["autoscaling"].pop("behavior")
    assert spec["autoscaling"] == {
        "enabled": False,
        "minReplicas": 2,
        "maxReplicas": 10,
        "targetCPUUtilizationPercentage": 70,
        "prometheus": {},
    }
    assert set(behavior) == {"scaleUp", "scaleDown"}  # test_autoscaling.py checks the values
    assert spec["server"]["shutdownGraceSeconds"] < spec["server"]["terminationGracePeriodSeconds"]
    assert spec["storage"]["pvc"]["readOnly"] is False
    assert spec["suspend"] is False


def test_schema_rejects_a_wrong_type() -> None:
    body = crdschema.example_platform("demo")
    bad = copy.deepcopy(body)
    bad["spec"]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _json_schema(crdschema.schema()))


# -- VideoAsset --------------------------------------------------------------------------------
def test_every_videoasset_field_has_a_description() -> None:
    root = crdschema.asset_schema()
    walked = {path for top in ("spec", "status") for path, _ in _walk(root["properties"][top], top)}
    assert {
        "spec.source.path",
        "spec.source.url",
        "spec.renditions[].videoBitrate",
        "status.media.codecs[]",
        "status.renditions[].state",
        "status.playback.master",
    } <= walked
    missing = [
        path
        for top in ("spec", "status")
        for path, node in _walk(root["properties"][top], top)
        if "description" not in node
    ]
    assert missing == []


def test_videoasset_identity_columns_and_rules() -> None:
    crd = crdschema.crd(crdschema.ASSET_CRD_PATH)["spec"]
    version = crd["versions"][0]
    assert (crd["group"], crd["scope"], crd["names"]["kind"], crd["names"]["shortNames"]) == (
        "videoplatform.io",
        "Namespaced",
        "VideoAsset",
        ["va"],
    )
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Platform"] == ".spec.platformRef.name"
    assert columns["Phase"] == ".status.phase"
    assert columns["Progress"] == ".status.progress"
    assert columns["Duration"] == ".status.media.duration"
    assert "Age" in columns
    source = crdschema.asset_schema()["properties"]["spec"]["properties"]["source"]
    rules = [r["rule"] for r in source["x-kubernetes-validations"]]
    assert "[has(self.path), has(self.url), has(self.upload)].filter(x, x).size() == 1" in rules


def test_both_crds_share_one_rendition_schema() -> None:
    platform = crdschema.schema()["properties"]["spec"]["properties"]["transcoding"]["properties"]
    asset = crdschema.asset_schema()["properties"]["spec"]["properties"]
    assert platform["renditions"]["items"] == asset["renditions"]["items"]
    assert (
        platform["renditions"]["x-kubernetes-validations"]
        == asset["renditions"]["x-kubernetes-validations"]
    )


def test_asset_examples_validate_and_default() -> None:
    for name in ("intro", "trailer", "lecture"):
        body = crdschema.example_asset(name)
        jsonschema.validate(body, _json_schema(crdschema.asset_schema()))
    intro = crdschema.example_asset("intro")["spec"]
    assert (intro["retainOutputs"], intro["storyboard"]["interval"]) == (False, 10)


@pytest.mark.parametrize(
    "spec",
    [
        {"platformRef": {"name": "demo"}, "source": {"url": "ftp://x/a.mp4"}},
        {
            "platformRef": {"name": "demo"},
            "source": {"path": "a.mp4"},
            "storyboard": {"interval": 1},
        },
        {"platformRef": {"name": "demo"}, "source": {"path": "a.mp4"}, "poster": {"at": "3 s"}},
        {
            "platformRef": {"name": "demo"},
            "source": {"path": "a.mp4"},
            "renditions": [{"name": "HD", "height": 720, "videoBitrate": "3000k"}],
        },
    ],
    ids=["ftp-url", "storyboard-interval", "poster-at", "rendition-name"],
)
def test_asset_schema_refuses_bad_fields(spec: dict[str, Any]) -> None:
    body = crdschema.asset(spec)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, _json_schema(crdschema.asset_schema()))
