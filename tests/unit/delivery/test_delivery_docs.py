"""The docs site: generated pages are fresh, the settings page renders the server's own
definitions, and the mkdocs hook checks and rewrites links to repository files."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pytest
import yaml

from vod_delivery import docsite, generated, project, settingsdoc
from vod_stream.config import SPECS, Spec, _csv, _optional

pytestmark = pytest.mark.unit

REPO = "https://github.com/example/repo"


def test_every_generated_page_is_fresh() -> None:
    stale = [str(p.relative_to(project.ROOT)) for p in generated.stale()]
    assert not stale, f"stale generated pages {stale}: run `make reference`"


def test_a_stale_page_is_detected(tmp_path: Path) -> None:
    page = generated.Page(tmp_path / "x.md", lambda: "# X\n", "a test")
    assert generated.stale((page,)) == [page.path]
    generated.write((page,))
    assert generated.stale((page,)) == []
    page.path.write_text("# Y\n")
    assert generated.stale((page,)) == [page.path]


def test_settings_page_has_one_row_per_setting_in_order() -> None:
    text = settingsdoc.render(SPECS)
    rows = re.findall(r"^\| `VOD_([A-Z0-9_]+)` \| `(--[a-z0-9-]+)` \| ([^|]*) \|", text, re.M)
    assert [name for name, _, _ in rows] == [s.name for s in SPECS]
    by_name = {name: (flag, default.strip()) for name, flag, default in rows}
    assert by_name["MAX_RANGES"] == ("--max-ranges", "16")
    assert by_name["CACHE_DIR"] == ("--cache-dir", "(unset)")
    assert by_name["S3_PREFIX"] == ("--s3-prefix", "(empty)")


def test_settings_page_escapes_cells_and_names_its_source() -> None:
    spec = Spec("X_Y", "", _optional, "a | b")
    text = settingsdoc.render([spec, Spec("L", "", _csv, "list")])
    assert "| `VOD_X_Y` | `--x-y` | (unset) | a \\| b |" in text
    assert "| `VOD_L` | `--l` | (empty) | list |" in text
    assert "streaming/vod_stream/config.py" in text
    assert text.startswith("# Streaming settings\n")


def test_every_docs_page_is_in_the_nav() -> None:
    config = yaml.safe_load((project.ROOT / "mkdocs.yml").read_text())

    def pages(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [p for item in nav for p in pages(item)]
        if isinstance(nav, dict):
            return [p for value in nav.values() for p in pages(value)]
        return []

    listed = pages(config["nav"])
    on_disk = sorted(p.name for p in project.DOCS_DIR.glob("*.md"))
    assert sorted(listed) == on_disk
    assert "tools/vod_delivery/docsite.py" in config["hooks"]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("../examples/full.yaml", ("examples/full.yaml", "")),
        ("../monitoring/README.md#series", ("monitoring/README.md", "#series")),
        ("./../crds", ("crds", "")),
        ("reference.md", None),
        ("reference.md#videoasset", None),
        ("../docs/player.png", None),
        ("https://example.com/x", None),
        ("mailto:a@b", None),
        ("#anchor", None),
    ],
)
def test_repo_link_resolves_links_that_leave_docs(target, expected) -> None:
    link = docsite.repo_link(target, PurePosixPath("docs"))
    assert (None if link is None else (link.path, link.anchor)) == expected


def test_rewrite_points_repository_links_at_the_repository(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "a.yaml").write_text("")
    markdown = (
        "[a](../examples/a.yaml) and [dir](../examples) and [page](other.md#x)\n"
        "`[code](../missing.yaml)` and\n```\n[fenced](../missing.yaml)\n```\n"
        "[gone](../missing.yaml) [escape](../../outside.md)\n"
    )
    text, broken = docsite.rewrite(markdown, PurePosixPath("docs"), tmp_path, REPO)
    assert f"[a]({REPO}/blob/main/examples/a.yaml)" in text
    assert f"[dir]({REPO}/tree/main/examples)" in text
    assert "[page](other.md#x)" in text
    assert "`[code](../missing.yaml)`" in text
    assert "[fenced](../missing.yaml)" in text
    assert [b.target for b in broken] == ["../missing.yaml", "../../outside.md"]


def _anchors(markdown: str) -> set[str]:
    # mkdocs' own default slugify (Python-Markdown's toc; the package ships no types)
    from markdown.extensions.toc import slugify  # type: ignore[import-untyped]

    outside_fences = docsite._FENCE.sub("", markdown)
    headings = re.findall(r"^#{1,6} (.+?)\s*$", outside_fences, re.MULTILINE)
    return {slugify(h.replace("`", ""), "-") for h in headings}


def test_readme_links_resolve() -> None:
    """The README is outside the site: its links to files and to anchors are checked here."""
    readme = (project.ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", docsite._masked(readme))
    assert targets
    for target in targets:
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = project.ROOT / path if path else project.ROOT / "README.md"
        assert file.exists(), f"README links to {target}, which does not exist"
        if anchor and file.suffix == ".md":
            assert anchor in _anchors(file.read_text()), f"README: no #{anchor} in {file.name}"
