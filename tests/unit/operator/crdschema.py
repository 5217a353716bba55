"""Test helpers around the CRD in crds/: its schema, structural defaulting, example loading."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CRD_PATH = ROOT / "crds" / "videoplatforms.videoplatform.io.yaml"
ASSET_CRD_PATH = ROOT / "crds" / "videoassets.videoplatform.io.yaml"
EXAMPLES = ROOT / "examples"


@cache
def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def crd(path: Path = CRD_PATH) -> dict[str, Any]:
    return _load(path)


def schema(path: Path = CRD_PATH) -> dict[str, Any]:
    root: dict[str, Any] = crd(path)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return root


def asset_schema() -> dict[str, Any]:
    return schema(ASSET_CRD_PATH)


def apply_defaults(node: dict[str, Any], value: Any) -> Any:
    """Fill defaults the way the API server does (structural defaulting), recursively."""
    if isinstance(value, dict) and "properties" in node:
        for key, sub in node["properties"].items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
    elif isinstance(value, list) and "items" in node:
        return [apply_defaults(node["items"], item) for item in value]
    return value


def platform(spec: dict[str, Any], name: str = "demo", namespace: str = "media") -> dict[str, Any]:
    """A VideoPlatform as the API server returns it: defaults applied, uid and generation set."""
    body = {
        "apiVersion": "videoplatform.io/v1alpha1",
        "kind": "VideoPlatform",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "0b1c2d3e-0000-4000-8000-000000000001",
            "generation": 1,
        },
        "spec": copy.deepcopy(spec),
    }
    return apply_defaults(schema(), body)  # type: ignore[no-any-return]


def example_documents() -> Iterator[dict[str, Any]]:
    for path in sorted([*EXAMPLES.glob("*.yaml"), *EXAMPLES.glob("s3/*.yaml")]):
        yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def example_platform(name: str) -> dict[str, Any]:
    """The VideoPlatform called `name` from examples/, defaulted like the API server does."""
    for doc in example_documents():
        if doc["kind"] == "VideoPlatform" and doc["metadata"]["name"] == name:
            return platform(doc["spec"], name=name, namespace=doc["metadata"]["namespace"])
    raise LookupError(name)


def asset(
    spec: dict[str, Any], name: str = "intro", namespace: str = "media", generation: int = 1
) -> dict[str, Any]:
    """A VideoAsset as the API server returns it: defaults applied, uid and generation set."""
    body = {
        "apiVersion": "videoplatform.io/v1alpha1",
        "kind": "VideoAsset",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "0b1c2d3e-0000-4000-8000-00000000a55e",
            "generation": generation,
        },
        "spec": copy.deepcopy(spec),
    }
    return apply_defaults(asset_schema(), body)  # type: ignore[no-any-return]


def example_asset(name: str) -> dict[str, Any]:
    """The VideoAsset called `name` from examples/assets/, defaulted like the API server does."""
    for path in sorted((EXAMPLES / "assets").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "VideoAsset" and doc["metadata"]["name"] == name:
                meta = doc["metadata"]
                return asset(doc["spec"], name=name, namespace=meta["namespace"])
    raise LookupError(name)
