"""``decide(request, file) -> response plan`` for GET/HEAD of a file, as Go's ServeContent does.

Preconditions are evaluated in RFC 9110 section 13.2.2 order (If-Match, If-Unmodified-Since,
If-None-Match, If-Modified-Since), then If-Range and Range. No I/O: the plan names the status,
the headers and the body as a sequence of literal bytes and file ranges, which the writer sends
(file ranges with sendfile).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vod_stream.preconditions import (
    EntityTag,
    format_http_date,
    if_match_passes,
    if_none_match_passes,
    if_range_matches,
    parse_http_date,
)
from vod_stream.ranges import ByteRange, RangeKind, RangeSet, parse_range


@dataclass(frozen=True, slots=True)
class Representation:
    """What the plan needs to know about a file."""

    size: int
    mtime: int  # whole seconds, as Last-Modified carries them
    etag: EntityTag
    content_type: str


@dataclass(frozen=True, slots=True)
class Conditions:
    """The request fields that decide the response (``None`` when absent)."""

    method: str = "GET"
    range: str | None = None
    if_range: str | None = None
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_unmodified_since: str | None = None


Segment = bytes | ByteRange


@dataclass(frozen=True, slots=True)
class Plan:
    """A response to send: status, headers, and (unless ``error``) the body's segments."""

    status: int
    headers: dict[str, str]
    body: tuple[Segment, ...] = ()
    kind: RangeKind = RangeKind.NONE
    error: str | None = None  # set for 412/416: the server answers with a JSON error
    head: bool = False  # HEAD: send the headers only
    ranges: tuple[ByteRange, ...] = field(default=())

    @property
    def content_length(self) -> int:
        return sum(len(s) if isinstance(s, bytes) else s.length for s in self.body)


def decide(cond: Conditions, rep: Representation, *, max_ranges: int, boundary: str) -> Plan:
    """Choose 200, 206, 304, 412 or 416 for a GET or HEAD of ``rep``."""
    validators = {"ETag": str(rep.etag), "Last-Modified": format_http_date(rep.mtime)}
    if cond.if_match is not None:
        if not if_match_passes(cond.if_match, rep.etag):
            return Plan(412, {}, error="If-Match does not match the current ETag")
    elif cond.if_unmodified_since is not None:
        since = parse_http_date(cond.if_unmodified_since)
        if since is not None and rep.mtime > since:
            return Plan(412, {}, error="modified since the If-Unmodified-Since date")
    if cond.if_none_match is not None:
        if not if_none_match_passes(cond.if_none_match, rep.etag):
            return Plan(304, validators, head=True)
    elif cond.if_modified_since is not None:
        since = parse_http_date(cond.if_modified_since)
        if since is not None and rep.mtime <= since:
            return Plan(304, validators, head=True)

    headers = {"Accept-Ranges": "bytes", **validators}
    head = cond.method == "HEAD"
    ranges = _ranges_to_send(cond, rep, max_ranges)
    if ranges.kind is RangeKind.UNSATISFIABLE:
        headers["Content-Range"] = f"bytes */{rep.size}"
        return Plan(416, headers, kind=ranges.kind, error="no requested range overlaps the file")
    if ranges.kind in (RangeKind.SINGLE, RangeKind.SUFFIX):
        only = ranges.ranges[0]
        headers["Content-Type"] = rep.content_type
        headers["Content-Range"] = only.content_range(rep.size)
        plan = Plan(206, headers, (only,), ranges.kind, head=head, ranges=ranges.ranges)
    elif ranges.kind is RangeKind.MULTI:
        headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
        body = multipart_body(ranges.ranges, rep, boundary)
        plan = Plan(206, headers, body, ranges.kind, head=head, ranges=ranges.ranges)
    else:
        headers["Content-Type"] = rep.content_type
        body = (ByteRange(0, rep.size - 1),) if rep.size else ()
        plan = Plan(200, headers, body, ranges.kind, head=head)
    headers["Content-Length"] = str(plan.content_length)
    return plan


def _ranges_to_send(cond: Conditions, rep: Representation, max_ranges: int) -> RangeSet:
    # RFC 9110 14.2: GET is the only method for which range handling is defined.
    if cond.range is None or cond.method != "GET":
        return RangeSet(RangeKind.NONE)
    if cond.if_range is not None and not if_range_matches(cond.if_range, rep.etag, rep.mtime):
        return RangeSet(RangeKind.IGNORED)
    return parse_range(cond.range, rep.size, max_ranges)


def multipart_body(
    ranges: tuple[ByteRange, ...], rep: Representation, boundary: str
) -> tuple[Segment, ...]:
    """The segments of a ``multipart/byteranges`` body (RFC 9110 14.6)."""
    body: list[Segment] = []
    for index, part in enumerate(ranges):
        lead = "--" if index == 0 else "\r\n--"
        body.append(
            f"{lead}{boundary}\r\nContent-Type: {rep.content_type}\r\n"
            f"Content-Range: {part.content_range(rep.size)}\r\n\r\n".encode("latin-1")
        )
        body.append(part)
    body.append(f"\r\n--{boundary}--\r\n".encode("latin-1"))
    return tuple(body)
