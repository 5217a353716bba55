"""One version and one CRD source: the chart and the kustomize tree never drift from them."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
import yaml

from vod_delivery import project, sync
from vod_operator import __version__, naming

pytestmark = pytest.mark.unit


def fake_repo(tmp_path: Path) -> Path:
    """A copy of the parts of the repository the sync reads and writes."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(project.ROOT / "pyproject.toml", root / "pyproject.toml")
    for distribution in sync.DISTRIBUTIONS:
        (root / distribution).parent.mkdir(parents=True)
        shutil.copy(project.ROOT / distribution, root / distribution)
    shutil.copytree(project.CRDS_DIR, root / "crds")
    shutil.copytree(project.CHART_DIR, root / "charts" / "vod-operator")
    shutil.copytree(project.MANIFESTS_DIR, root / "manifests")
    shutil.copytree(project.ROOT / "monitoring", root / "monitoring")
    return root


def test_repository_is_in_step() -> None:
    assert sync.check() == [], "run `make sync-chart-crds`"


def test_chart_crds_are_identical_to_crds() -> None:
    ours = {p.name: p.read_bytes() for p in project.crd_files()}
    chart = {p.name: p.read_bytes() for p in (project.CHART_DIR / "crds").iterdir()}
    assert ours
    assert chart == ours


def test_version_flows_from_pyproject() -> None:
    version = project.version()
    chart = yaml.safe_load((project.CHART_DIR / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (version, version)
    base = yaml.safe_load((project.MANIFESTS_DIR / "base" / "kustomization.yaml").read_text())
    assert base["images"] == [{"name": "ghcr.io/vod-operator/vod-operator", "newTag": version}]


def test_drift_is_found_and_repaired(tmp_path: Path) -> None:
    root = fake_repo(tmp_path)
    crd = project.crd_files(root / "crds")[0]
    crd.write_text(crd.read_text() + "\n# changed\n")
    (root / "charts/vod-operator/crds/stale.yaml").write_text("kind: Old\n")
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(f'"{project.version()}"', '"9.9.9"', 1))
    drift = set(sync.check(root))
    (root / "crds/kustomization.yaml").write_text("kind: Kustomization\n")
    drift = set(sync.check(root))
    assert drift == {
        f"charts/vod-operator/crds/{crd.name}",
        f"manifests/crds/{crd.name}",
        "crds/kustomization.yaml",
        "charts/vod-operator/crds/stale.yaml",
        "charts/vod-operator/Chart.yaml",
        "manifests/base/kustomization.yaml",
        "manifests/base/deployment.yaml",
        "streaming/pyproject.toml",
        "operator/pyproject.toml",
    }
    assert set(sync.apply(root)) == drift
    assert sync.check(root) == []
    assert not (root / "charts/vod-operator/crds/stale.yaml").exists()
    assert not (root / "crds/kustomization.yaml").exists()
    assert yaml.safe_load((root / "charts/vod-operator/Chart.yaml").read_text())["version"] == (
        "9.9.9"
    )
    assert "# version and appVersion" in (root / "charts/vod-operator/Chart.yaml").read_text()
    for distribution in sync.DISTRIBUTIONS:
        text = (root / distribution).read_text()
        assert 'version = "9.9.9"' in text
        assert "setuptools>=77" in text  # only the version line changed
    deployment = (root / "manifests/base/deployment.yaml").read_text()
    assert "ghcr.io/vod-operator/vod-stream-packaging:9.9.9" in deployment


def test_crds_kustomization_lists_every_crd() -> None:
    folder = project.MANIFESTS_DIR / "crds"
    listed = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    assert listed == [p.name for p in project.crd_files()]
    copies = {p.name: p.read_bytes() for p in project.crd_files(folder)}
    assert copies == {p.name: p.read_bytes() for p in project.crd_files()}


def test_crds_folder_holds_only_crds() -> None:
    """What `kubectl apply --server-side -f crds/` reads: every file there is a CRD."""
    files = sorted(p for p in project.CRDS_DIR.iterdir() if p.suffix in {".yaml", ".yml", ".json"})
    assert [p.name for p in files] == [
        "videoassets.videoplatform.io.yaml",
        "videoplatforms.videoplatform.io.yaml",
    ]
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert [d["kind"] for d in docs] == ["CustomResourceDefinition"], path


def test_operator_default_streaming_image_carries_the_version() -> None:
    image = naming.DEFAULT_IMAGE
    assert __version__ == project.version()
    assert image == f"ghcr.io/vod-operator/vod-stream:{project.version()}"


def test_packaging_image_carries_the_version_everywhere() -> None:
    """The operator's default, the chart's default and the kustomize Deployment's setting."""
    wanted = f"ghcr.io/vod-operator/vod-stream-packaging:{project.version()}"
    assert wanted == naming.DEFAULT_PACKAGING_IMAGE
    deployment = yaml.safe_load((project.MANIFESTS_DIR / "base" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VOD_OPERATOR_PACKAGING_IMAGE"] == wanted
    values = yaml.safe_load((project.CHART_DIR / "values.yaml").read_text())
    assert values["packagingImage"] == {
        "repository": "ghcr.io/vod-operator/vod-stream-packaging",
        "tag": "",
    }


def test_distributions_carry_the_project_version() -> None:
    for distribution in sync.DISTRIBUTIONS:
        with (project.ROOT / distribution).open("rb") as fh:
            assert tomllib.load(fh)["project"]["version"] == project.version(), distribution
