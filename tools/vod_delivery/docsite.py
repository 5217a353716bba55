"""The docs site's mkdocs hook: links from a page to repository files outside ``docs/``.

mkdocs only knows the files under ``docs_dir``; a page's relative link that climbs out of it
(``../examples/full.yaml``, ``../monitoring/runbooks/README.md``) is what a reader on GitHub
follows, and what the site must send to the repository. Before a page is rendered, every such link
is checked to name a file or folder of the repository (a missing one is a warning, so
``mkdocs build --strict`` fails) and rewritten to its URL under ``repo_url``. Loaded through
``hooks:`` in mkdocs.yml; the functions below the hook are pure.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

log = logging.getLogger("mkdocs.hooks.docsite")

# An inline link or image target: ](target) or ](target "title"); code spans are skipped below.
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)(?P<rest>(?:\s+\"[^\"]*\")?)\)")
_CODE = re.compile(r"(`+)(?:.|\n)*?\1")
_FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.MULTILINE | re.DOTALL)
BRANCH = "main"


@dataclass(frozen=True)
class RepoLink:
    target: str  # as written in the page
    path: str  # repository-relative, POSIX
    anchor: str  # "#..." or ""


def _masked(markdown: str) -> str:
    """The markdown with code fences and code spans blanked (same length): no links in code."""

    def blank(m: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", m.group(0))

    return _CODE.sub(blank, _FENCE.sub(blank, markdown))


def repo_link(target: str, page_dir: PurePosixPath) -> RepoLink | None:
    """The repository path a link names when it climbs out of docs/, else None.

    ``page_dir`` is the page's folder relative to the repository root (``docs`` or below).
    """
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith(("#", "/")):
        return None
    path, _, anchor = target.partition("#")
    parts: list[str] = list(page_dir.parts)
    for part in PurePosixPath(path).parts:
        if part == "..":
            if not parts:
                return RepoLink(target, "..", "")  # above the repository: never valid
            parts.pop()
        elif part != ".":
            parts.append(part)
    resolved = "/".join(parts)
    if resolved == "docs" or resolved.startswith("docs/"):
        return None  # mkdocs checks links inside docs_dir itself
    return RepoLink(target, resolved, f"#{anchor}" if anchor else "")


def rewrite(
    markdown: str, page_dir: PurePosixPath, root: Path, repo_url: str
) -> tuple[str, list[RepoLink]]:
    """The page with its repository links pointed at ``repo_url``, and the links that are broken."""
    masked = _masked(markdown)
    out: list[str] = []
    broken: list[RepoLink] = []
    last = 0
    for m in _LINK.finditer(masked):
        link = repo_link(m.group("target"), page_dir)
        if link is None:
            continue
        target = root / link.path
        if link.path == ".." or not target.exists():
            broken.append(link)
            continue
        kind = "tree" if target.is_dir() else "blob"
        url = f"{repo_url.rstrip('/')}/{kind}/{BRANCH}/{link.path}{link.anchor}"
        out.append(markdown[last : m.start("target")])
        out.append(url)
        last = m.end("target")
    out.append(markdown[last:])
    return "".join(out), broken


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any) -> str:
    """mkdocs hook: check and rewrite the page's links to repository files."""
    docs_dir = Path(config["docs_dir"]).resolve()
    root = Path(config["config_file_path"]).resolve().parent
    src = PurePosixPath(page.file.src_uri)
    page_dir = PurePosixPath(docs_dir.relative_to(root).as_posix()) / src.parent
    text, broken = rewrite(markdown, page_dir, root, config["repo_url"] or "")
    for link in broken:
        log.warning(
            "Doc file '%s' links to '%s', which is not a file of the repository",
            page.file.src_uri,
            link.target,
        )
    return text
