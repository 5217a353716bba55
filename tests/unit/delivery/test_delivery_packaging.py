"""Each distribution ships every Python package of its source tree (an image built from the
wheel once lacked `vod_operator.assets`, which the editable install used in tests never noticed),
and each keeps to its own dependencies: the operator's never pulls in the streaming server's."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
#: Each distribution's folder (where its pyproject.toml is) and its top-level packages.
DISTRIBUTIONS = {
    "streaming": {"vod_stream"},
    "operator": {"vod_operator"},
    ".": {"localcluster", "vod_delivery"},
}


def _pyproject(folder: str) -> dict:
    return tomllib.loads((ROOT / folder / "pyproject.toml").read_text())


@pytest.mark.parametrize("folder", sorted(DISTRIBUTIONS))
def test_every_package_folder_is_listed_for_the_wheel(folder: str) -> None:
    setuptools = _pyproject(folder)["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    package_dir = setuptools.get("package-dir") or {top: top for top in DISTRIBUTIONS[folder]}
    assert set(package_dir) == DISTRIBUTIONS[folder]
    found = set()  # every folder that holds a file to ship: a package, or data (templates, static)
    for top, relative_folder in package_dir.items():
        base = ROOT / folder / relative_folder
        for path in [base, *base.rglob("*")]:
            if (
                path.is_dir()
                and path.name != "__pycache__"
                and any(f.is_file() and f.suffix not in {".pyc", ".so"} for f in path.iterdir())
            ):
                found.add(".".join([top, *path.relative_to(base).parts]))
    assert found == listed


@pytest.mark.parametrize("folder", sorted(DISTRIBUTIONS))
def test_licence_is_an_spdx_expression(folder: str) -> None:
    data = _pyproject(folder)
    assert data["project"]["license"] == "Apache-2.0"
    assert any(r.startswith("setuptools>=77") for r in data["build-system"]["requires"])


def _names(requirements: list[str]) -> set[str]:
    return {
        r.split("[")[0].split("~")[0].split("=")[0].split(">")[0].split("<")[0].strip()
        for r in requirements
    }


def test_operator_dependencies_are_its_own() -> None:
    names = _names(_pyproject("operator")["project"]["dependencies"])
    assert {"kopf", "kubernetes", "jinja2"} <= names
    assert not names & {"aiohttp", "obstore", "cryptography", "pyjwt"}


def test_streaming_dependencies_are_its_own() -> None:
    names = _names(_pyproject("streaming")["project"]["dependencies"])
    assert {"aiohttp", "obstore"} <= names
    assert not names & {"kopf", "kubernetes", "jinja2"}


def test_no_product_imports_another_or_the_tooling() -> None:
    """The operator image has no vod_stream, neither image has the development tooling."""
    forbidden = {
        "operator/vod_operator": ("vod_stream", "localcluster", "vod_delivery"),
        "streaming/vod_stream": ("vod_operator", "localcluster", "vod_delivery"),
    }
    for folder, names in forbidden.items():
        for source in (ROOT / folder).rglob("*.py"):
            for line in source.read_text().splitlines():
                words = line.split()
                if words[:1] in (["import"], ["from"]) and len(words) > 1:
                    assert words[1].split(".")[0] not in names, f"{source}: {line}"


def test_operator_never_imports_the_asyncio_kubernetes_client() -> None:
    """operator/Dockerfile deletes kubernetes/aio from the image (about 40 MB)."""
    assert "kubernetes/aio" in (ROOT / "operator" / "Dockerfile").read_text()
    for source in (ROOT / "operator" / "vod_operator").rglob("*.py"):
        assert "kubernetes.aio" not in source.read_text(), source
