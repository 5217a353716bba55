"""RFC 9110 section 13: validators (ETag, Last-Modified) and the conditional-request checks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, items separated by OWS "," OWS.
_ETAG = re.compile(r'[ \t]*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"[ \t]*(?:,|$)')
_EMPTY_ITEM = re.compile(r"[ \t]*,")
_ASCTIME = re.compile(r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}")


@dataclass(frozen=True, slots=True)
class EntityTag:
    opaque: str
    weak: bool = False

    def __str__(self) -> str:
        return f'{"W/" if self.weak else ""}"{self.opaque}"'


def make_etag(inode: int, size: int, mtime_ns: int) -> EntityTag:
    """A strong ETag that changes whenever the file is replaced or modified."""
    return EntityTag(f"{inode:x}-{size:x}-{mtime_ns:x}")


def parse_etags(value: str) -> tuple[EntityTag, ...] | None:
    """Parse an If-Match / If-None-Match list; ``None`` means ``*``.

    Parsing stops at the first malformed member (what was parsed before it is kept), as Go does.
    """
    if value.strip(" \t") == "*":
        return None
    tags: list[EntityTag] = []
    pos = 0
    while pos < len(value):
        empty = _EMPTY_ITEM.match(value, pos)
        if empty:
            pos = empty.end()
            continue
        match = _ETAG.match(value, pos)
        if match is None:
            break
        tags.append(EntityTag(match.group(2), weak=bool(match.group(1))))
        pos = match.end()
    return tuple(tags)


def parse_single_etag(value: str) -> EntityTag | None:
    """Parse one entity-tag (If-Range); ``None`` when it is not exactly one."""
    match = _ETAG.fullmatch(value)
    if match is None or value.rstrip(" \t").endswith(","):
        return None
    return EntityTag(match.group(2), weak=bool(match.group(1)))


def strong_match(a: EntityTag, b: EntityTag) -> bool:
    return not a.weak and not b.weak and a.opaque == b.opaque


def weak_match(a: EntityTag, b: EntityTag) -> bool:
    return a.opaque == b.opaque


def parse_http_date(value: str) -> int | None:
    """An HTTP-date as epoch seconds, or ``None`` when it is not a valid date."""
    if value.count(",") > 1:
        return None  # a list of more than one member
    try:
        parsed = parsedate_to_datetime(value.strip())
        if parsed.tzinfo is None:
            if not _ASCTIME.fullmatch(value.strip()):
                return None  # a date without a zone is not an HTTP-date (asctime is GMT)
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):  # RFC 9110 13.1.3: ignored
        return None


@lru_cache(maxsize=4096)
def format_http_date(epoch_seconds: int) -> str:
    return formatdate(epoch_seconds, usegmt=True)


def if_match_passes(header: str, etag: EntityTag) -> bool:
    """If-Match: true for ``*`` or any strongly matching member."""
    tags = parse_etags(header)
    return tags is None or any(strong_match(tag, etag) for tag in tags)


def if_none_match_passes(header: str, etag: EntityTag) -> bool:
    """If-None-Match: false for ``*`` or any weakly matching member."""
    tags = parse_etags(header)
    return tags is not None and not any(weak_match(tag, etag) for tag in tags)


def if_range_matches(header: str, etag: EntityTag, last_modified: int) -> bool:
    """If-Range: an exact strong ETag, or exactly the Last-Modified date."""
    value = header.strip(" \t")
    if value.startswith(('"', "W/")):
        tag = parse_single_etag(value)
        return tag is not None and strong_match(tag, etag)
    date = parse_http_date(value)
    return date is not None and date == last_modified
