"""Validators and conditional headers (RFC 9110 section 13)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vod_stream._dataplane import (
    EntityTag,
    format_http_date,
    if_match_passes,
    if_none_match_passes,
    if_range_matches,
    make_etag,
    parse_etags,
    parse_http_date,
)

pytestmark = pytest.mark.unit

TAG = EntityTag("abc")
EPOCH = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110 5.6.7)


def test_etag_changes_with_file_identity():
    base = make_etag(1, 2, 3)
    assert str(base) == '"1-2-3"'
    assert {make_etag(9, 2, 3), make_etag(1, 9, 3), make_etag(1, 2, 9)}.isdisjoint({base})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"abc"', (EntityTag("abc"),)),
        ('W/"abc"', (EntityTag("abc", weak=True),)),
        ('"a", W/"b" ,"c"', (EntityTag("a"), EntityTag("b", weak=True), EntityTag("c"))),
        (', "a",,', (EntityTag("a"),)),
        ('""', (EntityTag(""),)),
        ('"a", junk, "b"', (EntityTag("a"),)),  # stop at the first malformed member
        ("abc", ()),
        ("*", None),
    ],
)
def test_parse_etags(value, expected):
    assert parse_etags(value) == expected


def test_if_match_is_strong():
    assert if_match_passes('"abc"', TAG)
    assert if_match_passes('"x", "abc"', TAG)
    assert if_match_passes("*", TAG)
    assert not if_match_passes('W/"abc"', TAG)
    assert not if_match_passes('"abcd"', TAG)
    assert not if_match_passes("garbage", TAG)


def test_if_none_match_is_weak():
    assert not if_none_match_passes('W/"abc"', TAG)
    assert not if_none_match_passes('"abc"', TAG)
    assert not if_none_match_passes("*", TAG)
    assert if_none_match_passes('"other"', TAG)


@pytest.mark.parametrize(
    "value",
    ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"],
)
def test_http_date_formats(value):
    assert parse_http_date(value) == EPOCH


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov",
        "Mon, 01 Jan 99999999999999999999 00:00:00 GMT",  # OverflowError in the stdlib
        "Mon, 32 Jan 2000 00:00:00 GMT",
        "Mon, 01 Jan 2000 24:00:00 GMT",
        "Mon, 01 Jan 2000 00:00:00 +9999",
        "Mon Jan  1 00:00:00 99999999999999999999",
    ],
)
def test_invalid_http_dates(value):
    assert parse_http_date(value) is None


@given(st.text())
def test_property_any_text_is_a_date_or_none(value):
    assert parse_http_date(value) is None or isinstance(parse_http_date(value), int)


@given(st.integers(0, 2**70))
def test_property_any_year_is_a_date_or_none(year):
    parsed = parse_http_date(f"Mon, 01 Jan {year} 00:00:00 GMT")
    assert parsed is None or isinstance(parsed, int)


def test_format_http_date_round_trip():
    assert format_http_date(EPOCH) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date(format_http_date(EPOCH)) == EPOCH


def test_if_range():
    assert if_range_matches('"abc"', TAG, EPOCH)
    assert not if_range_matches('W/"abc"', TAG, EPOCH)  # weak tags never match If-Range
    assert not if_range_matches('"abc", "d"', TAG, EPOCH)
    assert not if_range_matches('"old"', TAG, EPOCH)
    assert if_range_matches("Sun, 06 Nov 1994 08:49:37 GMT", TAG, EPOCH)
    assert not if_range_matches("Sun, 06 Nov 1994 08:49:38 GMT", TAG, EPOCH)  # exact only
    assert not if_range_matches("Sun, 06 Nov 1994 08:49:36 GMT", TAG, EPOCH)
    assert not if_range_matches("not a date", TAG, EPOCH)
    assert not if_range_matches("Mon, 01 Jan 99999999999999999999 00:00:00 GMT", TAG, EPOCH)
