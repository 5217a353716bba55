"""Generated docs pages are fresh, and the settings page renders the server's own definitions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vod_delivery import generated, project, settingsdoc
from vod_stream.config import SPECS, Spec, _csv, _optional

pytestmark = pytest.mark.unit


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
