"""Range header parsing: RFC 9110's own examples, edges at 0, size-1, size, empty files, limits."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.stream.range_model import expected
from vod_stream._dataplane import ByteRange, RangeKind, coalesce, parse_range

pytestmark = pytest.mark.unit

SIZE = 10000  # RFC 9110 14.1.2 uses a 10000-byte representation


@pytest.mark.parametrize(
    ("header", "kind", "ranges"),
    [
        # RFC 9110 14.1.2 examples
        ("bytes=0-499", RangeKind.SINGLE, [(0, 499)]),
        ("bytes=500-999", RangeKind.SINGLE, [(500, 999)]),
        ("bytes=-500", RangeKind.SUFFIX, [(9500, 9999)]),
        ("bytes=9500-", RangeKind.SINGLE, [(9500, 9999)]),
        ("bytes=0-0,-1", RangeKind.MULTI, [(0, 0), (9999, 9999)]),
        ("bytes=-1,0-0", RangeKind.MULTI, [(9999, 9999), (0, 0)]),  # the order requested
        ("bytes= 500-600,601-999", RangeKind.SINGLE, [(500, 999)]),
        ("bytes=500-700,601-999", RangeKind.SINGLE, [(500, 999)]),
    ],
)
def test_rfc_examples(header, kind, ranges):
    result = parse_range(header, SIZE, 16)
    assert result.kind == kind
    assert [(r.start, r.end) for r in result.ranges] == ranges


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-", (0, 9999)),
        ("bytes=0-0", (0, 0)),
        ("bytes=9999-", (9999, 9999)),
        ("bytes=9999-9999", (9999, 9999)),
        ("bytes=9999-20000", (9999, 9999)),
        ("bytes=0-99999999999999999999999999", (0, 9999)),
        ("bytes=-1", (9999, 9999)),
        ("bytes=-10000", (0, 9999)),
        ("bytes=-99999999999999999999999999", (0, 9999)),
        ("BYTES=1-2", (1, 2)),
        ("bytes=000000000000000000000000001-2", (1, 2)),
        ("bytes=,1-2,", (1, 2)),
        ("bytes=1-2 , ", (1, 2)),
    ],
)
def test_edges_single(header, expected):
    result = parse_range(header, SIZE, 16)
    assert result.kind in (RangeKind.SINGLE, RangeKind.SUFFIX)
    assert result.ranges == (ByteRange(*expected),)


@pytest.mark.parametrize(
    "header",
    [
        "bytes=10000-",
        "bytes=10000-10000",
        "bytes=20000-30000",
        "bytes=-0",  # golang/go#81262: a zero-length suffix is unsatisfiable, never a 206
        "bytes=-0,10000-",
        "bytes=99999999999999999999999999-",
    ],
)
def test_unsatisfiable(header):
    assert parse_range(header, SIZE, 16).kind == RangeKind.UNSATISFIABLE


@pytest.mark.parametrize(
    "header",
    [
        "items=0-1",  # golang/go#81508: another unit is ignored, not 416
        "bytes",
        "bytes=",
        "bytes=,",
        "bytes=-",
        "bytes=abc",
        "bytes=1-0",
        "bytes=0-1,abc",
        "bytes=0--1",
        "bytes=+1-2",
        "bytes=1-2-3",
        "bytes =0-1",
        "bytes=0x10-20",
        "bytes=0-1;q",
        "bytes=0-9999,0-9999",  # adds up to more than the file: send it whole
        "bytes=0-5000,4000-",  # overlapping ranges beyond the size too
    ],
)
def test_ignored(header):
    assert parse_range(header, SIZE, 16).kind == RangeKind.IGNORED


def test_range_count_cap():
    ok = ",".join(f"{i * 10}-{i * 10}" for i in range(16))
    assert parse_range("bytes=" + ok, SIZE, 16).kind == RangeKind.MULTI
    too_many = ok + ",500-500"
    assert parse_range("bytes=" + too_many, SIZE, 16).kind == RangeKind.IGNORED


def test_empty_file():
    assert parse_range("bytes=0-", 0, 16).kind == RangeKind.UNSATISFIABLE
    assert parse_range("bytes=0-0", 0, 16).kind == RangeKind.UNSATISFIABLE
    assert parse_range("bytes=-0", 0, 16).kind == RangeKind.UNSATISFIABLE
    # a non-zero suffix is satisfiable but names no byte: send the (empty) whole file
    assert parse_range("bytes=-5", 0, 16).kind == RangeKind.IGNORED


def test_one_byte_file():
    assert parse_range("bytes=0-0", 1, 16).ranges == (ByteRange(0, 0),)
    assert parse_range("bytes=-1", 1, 16).ranges == (ByteRange(0, 0),)
    assert parse_range("bytes=1-", 1, 16).kind == RangeKind.UNSATISFIABLE


def test_coalesce_adjacent_keeps_the_request_order():
    merged = coalesce([ByteRange(50, 60), ByteRange(0, 9), ByteRange(10, 19), ByteRange(61, 61)])
    assert merged == (ByteRange(50, 61), ByteRange(0, 19))
    assert coalesce([ByteRange(0, 9), ByteRange(11, 20)]) == (ByteRange(0, 9), ByteRange(11, 20))
    assert coalesce([ByteRange(11, 20), ByteRange(0, 9)]) == (ByteRange(11, 20), ByteRange(0, 9))
    # a merged range takes the place of its first-requested member, not of its lowest one
    merged = coalesce([ByteRange(90, 99), ByteRange(30, 40), ByteRange(0, 5), ByteRange(20, 35)])
    assert merged == (ByteRange(90, 99), ByteRange(20, 40), ByteRange(0, 5))


def test_pathological_header_is_linear():
    """CVE-2025-62727: a long header must not cost quadratic time."""
    commas = "bytes=" + "," * 200_000 + "0-1"
    many = "bytes=" + ",".join(["0-1"] * 50_000)
    start = time.process_time()
    for _ in range(5):
        assert parse_range(commas, SIZE, 16).kind == RangeKind.SINGLE
        assert parse_range(many, SIZE, 16).kind == RangeKind.IGNORED
    # generous bound: linear parsing takes milliseconds; quadratic would take minutes
    assert time.process_time() - start < 5


specs = st.one_of(
    st.tuples(st.integers(0, 300), st.integers(0, 300)).map(lambda t: f"{min(t)}-{max(t)}"),
    st.integers(0, 300).map(lambda n: f"{n}-"),
    st.integers(0, 300).map(lambda n: f"-{n}"),
)


@given(size=st.integers(0, 256), items=st.lists(specs, min_size=1, max_size=20))
def test_property_ranges_match_the_model(size, items):
    """Kind and ranges (with their order) are the model's; the ranges lie in the file, are
    disjoint and non-adjacent, and cover exactly the union of the requested satisfiable bytes."""
    result = parse_range("bytes=" + ",".join(items), size, 16)
    model = expected(items, size, 16)
    assert (result.kind.value, [(r.start, r.end) for r in result.ranges]) == (
        model.kind,
        model.ranges,
    )
    if model.kind in ("ignored", "unsatisfiable"):
        return
    covered: set[int] = set()
    for r in result.ranges:
        assert 0 <= r.start <= r.end < size
        assert covered.isdisjoint(range(r.start - 1, r.end + 2))  # neither overlapping nor adjacent
        covered.update(range(r.start, r.end + 1))
    requested: set[int] = set()
    for item in items:
        first, last = item.split("-")
        if not first:
            requested.update(range(max(0, size - int(last)), size))
        else:
            requested.update(range(int(first), min(int(last) if last else size - 1, size - 1) + 1))
    assert covered == requested
