"""Every generated documentation page: where it lives and what renders it (`make reference`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vod_delivery import project, reference, settingsdoc


@dataclass(frozen=True)
class Page:
    path: Path
    expected: Callable[[], str]
    source: str  # what it is generated from, for messages


PAGES: tuple[Page, ...] = (
    Page(project.REFERENCE_DOC, reference.expected, "the CRDs in crds/"),
    Page(project.SETTINGS_DOC, settingsdoc.expected, "vod_stream.config.SPECS"),
)


def stale(pages: tuple[Page, ...] = PAGES) -> list[Path]:
    """The pages whose committed text differs from what their sources generate."""
    return [p.path for p in pages if not p.path.exists() or p.path.read_text() != p.expected()]


def write(pages: tuple[Page, ...] = PAGES) -> list[Path]:
    """Regenerate every page; returns the paths written."""
    for page in pages:
        page.path.parent.mkdir(parents=True, exist_ok=True)
        page.path.write_text(page.expected())
    return [p.path for p in pages]
