"""decide(): preconditions in RFC order, 200/206/304/412/416, and bodies checked by slicing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.stream.multipart import boundary_of, parse_byteranges
from tests.unit.stream.range_model import expected
from vod_stream._dataplane import (
    Conditions,
    Plan,
    RangeKind,
    Representation,
    decide,
    format_http_date,
    make_etag,
)

pytestmark = pytest.mark.unit

MTIME = 1_700_000_000
ETAG = make_etag(7, 1000, MTIME * 10**9)
REP = Representation(size=1000, mtime=MTIME, etag=ETAG, content_type="video/mp4")
DATA = bytes(i % 251 for i in range(1000))
BOUNDARY = "3d6b6a416f9b5"


def plan(rep: Representation = REP, **fields: str) -> Plan:
    return decide(Conditions(**fields), rep, max_ranges=16, boundary=BOUNDARY)


def render(p: Plan, data: bytes) -> bytes:
    """What the writer sends: literal segments as they are, file ranges as slices."""
    if p.head:
        return b""
    return b"".join(s if isinstance(s, bytes) else data[s.start : s.end + 1] for s in p.body)


def test_plain_get():
    p = plan()
    assert p.status == 200
    assert p.headers["Accept-Ranges"] == "bytes"
    assert p.headers["ETag"] == str(ETAG)
    assert p.headers["Last-Modified"] == format_http_date(MTIME)
    assert p.headers["Content-Length"] == "1000"
    assert p.headers["Content-Type"] == "video/mp4"
    assert render(p, DATA) == DATA


def test_single_range():
    p = plan(range="bytes=10-19")
    assert p.status == 206
    assert p.headers["Content-Range"] == "bytes 10-19/1000"
    assert p.headers["Content-Length"] == "10"
    assert render(p, DATA) == DATA[10:20]
    assert p.kind == RangeKind.SINGLE


def test_suffix_range():
    p = plan(range="bytes=-5")
    assert (p.status, p.kind) == (206, RangeKind.SUFFIX)
    assert render(p, DATA) == DATA[-5:]


def test_multi_range_body():
    p = plan(range="bytes=0-0,-1,500-509")
    assert (p.status, p.kind) == (206, RangeKind.MULTI)
    body = render(p, DATA)
    assert p.headers["Content-Length"] == str(len(body))
    parts = parse_byteranges(body, boundary_of(p.headers["Content-Type"]))
    assert [(s, e) for s, e, *_ in parts] == [(0, 0), (999, 999), (500, 509)]  # as requested
    for start, end, size, ctype, payload in parts:
        assert (size, ctype) == (1000, "video/mp4")
        assert payload == DATA[start : end + 1]


def test_unsatisfiable_416():
    p = plan(range="bytes=1000-")
    assert p.status == 416
    assert p.headers["Content-Range"] == "bytes */1000"
    assert p.error


@pytest.mark.parametrize("header", ["bytes=abc", "items=0-1", "bytes=0-999,0-999"])
def test_ignored_range_is_200(header):
    p = plan(range=header)
    assert (p.status, p.kind) == (200, RangeKind.IGNORED)
    assert render(p, DATA) == DATA


def test_head_ignores_range_and_sends_no_body():
    p = plan(method="HEAD", range="bytes=0-1")
    assert p.status == 200
    assert p.head
    assert p.headers["Content-Length"] == "1000"


def test_if_range_etag_and_date():
    assert plan(range="bytes=0-1", if_range=str(ETAG)).status == 206
    assert plan(range="bytes=0-1", if_range='"stale"').status == 200
    assert plan(range="bytes=0-1", if_range="W/" + str(ETAG)).status == 200
    assert plan(range="bytes=0-1", if_range=format_http_date(MTIME)).status == 206
    assert plan(range="bytes=0-1", if_range=format_http_date(MTIME - 1)).status == 200
    assert plan(range="bytes=0-1", if_range=format_http_date(MTIME + 1)).status == 200
    # a failed If-Range also turns an unsatisfiable range into the whole file
    assert plan(range="bytes=5000-", if_range='"stale"').status == 200


def test_if_none_match_and_if_modified_since_give_304():
    p = plan(if_none_match=str(ETAG))
    assert (p.status, p.headers["ETag"]) == (304, str(ETAG))
    assert p.head
    assert plan(if_none_match='W/"' + ETAG.opaque + '"').status == 304
    assert plan(if_none_match="*").status == 304
    assert plan(if_none_match='"other"').status == 200
    assert plan(if_modified_since=format_http_date(MTIME)).status == 304
    assert plan(if_modified_since=format_http_date(MTIME + 60)).status == 304
    assert plan(if_modified_since=format_http_date(MTIME - 1)).status == 200
    assert plan(if_modified_since="garbage").status == 200


def test_if_none_match_takes_precedence_over_if_modified_since():
    p = plan(if_none_match='"other"', if_modified_since=format_http_date(MTIME))
    assert p.status == 200


def test_if_match_and_if_unmodified_since_give_412():
    assert plan(if_match='"other"').status == 412
    assert plan(if_match=str(ETAG)).status == 200
    assert plan(if_match="*").status == 200
    assert plan(if_unmodified_since=format_http_date(MTIME - 1)).status == 412
    assert plan(if_unmodified_since=format_http_date(MTIME)).status == 200
    assert plan(if_unmodified_since="garbage").status == 200
    # If-Match present: If-Unmodified-Since is not evaluated
    assert plan(if_match=str(ETAG), if_unmodified_since=format_http_date(0)).status == 200


def test_precondition_order_412_before_304():
    assert plan(if_match='"other"', if_none_match=str(ETAG)).status == 412


def test_empty_file():
    empty = Representation(0, MTIME, make_etag(1, 0, 0), "video/mp4")
    p = plan(empty)
    assert (p.status, p.headers["Content-Length"], p.body) == (200, "0", ())
    assert plan(empty, range="bytes=0-").status == 416
    assert plan(empty, range="bytes=-1").status == 200


@given(
    size=st.integers(1, 300),
    specs=st.lists(
        st.tuples(st.integers(0, 320), st.integers(0, 320) | st.none(), st.booleans()),
        min_size=1,
        max_size=6,
    ),
)
def test_property_plans_match_the_model(size, specs):
    """Status, kind, headers and body as the model predicts: a plan that always answered
    200 with the whole file, or put the parts in another order, fails."""
    data = bytes((i * 7 + 3) % 256 for i in range(size))
    items = []
    for a, b, suffix in specs:
        if suffix:
            items.append(f"-{a}")
        elif b is None:
            items.append(f"{a}-")
        else:
            items.append(f"{min(a, b)}-{max(a, b)}")
    rep = Representation(size, MTIME, make_etag(1, size, 0), "video/webm")
    p = plan(rep, range="bytes=" + ",".join(items))
    model = expected(items, size, 16)
    assert (p.status, p.kind.value) == (model.status, model.kind)
    body = render(p, data)
    if model.kind == "unsatisfiable":
        assert p.headers["Content-Range"] == f"bytes */{size}"
        assert p.error
        return
    assert p.headers["Content-Length"] == str(len(body))
    if model.kind == "ignored":
        assert body == data
        assert "Content-Range" not in p.headers
    elif model.kind == "multi":
        parts = parse_byteranges(body, boundary_of(p.headers["Content-Type"]))
        assert [(start, end) for start, end, *_ in parts] == model.ranges
        for start, end, total, ctype, payload in parts:
            assert (total, ctype) == (size, "video/webm")
            assert payload == data[start : end + 1]
    else:
        [(start, end)] = model.ranges
        assert p.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
        assert body == data[start : end + 1]
