"""RFC 9110 section 14: parse a ``Range`` header against a representation's size.

Pure and bounded: the work is linear in the header's length (which the HTTP parser caps), numbers
are never converted from more than 18 digits, and at most ``max_ranges`` range-specs are kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# A range-spec with optional whitespace already stripped: int-range or suffix-range.
_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
# Larger than any file we serve; numbers with more significant digits are clamped to it.
_HUGE = 10**18
_MAX_DIGITS = 18


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range ``start..end`` of a representation."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


class RangeKind(StrEnum):
    """How a Range header was answered; also the ``kind`` label of the range metric."""

    NONE = "none"  # no Range header, or not a GET
    IGNORED = "ignored"  # invalid syntax, another unit, too many ranges, or more than the file
    SINGLE = "single"
    SUFFIX = "suffix"
    MULTI = "multi"
    UNSATISFIABLE = "unsatisfiable"


@dataclass(frozen=True, slots=True)
class RangeSet:
    """The outcome of parsing: a kind and, for SINGLE/SUFFIX/MULTI, the ranges to send."""

    kind: RangeKind
    ranges: tuple[ByteRange, ...] = ()


IGNORED = RangeSet(RangeKind.IGNORED)
UNSATISFIABLE = RangeSet(RangeKind.UNSATISFIABLE)


def _number(digits: str) -> int:
    significant = digits.lstrip("0")
    if len(significant) > _MAX_DIGITS:
        return _HUGE
    return int(significant or "0")


def parse_range(value: str, size: int, max_ranges: int) -> RangeSet:
    """Parse a Range header value for a representation of ``size`` bytes.

    Returns IGNORED when the header must be ignored (the whole representation is sent with 200):
    another unit, invalid syntax, more than ``max_ranges`` range-specs, or ranges adding up to
    more than the representation. Returns UNSATISFIABLE when no range overlaps it (416).
    Otherwise the satisfiable ranges, clamped to the size, coalesced where they overlap or
    touch, in the order requested.
    """
    unit, sep, range_set = value.partition("=")
    if not sep or unit.lower() != "bytes":
        return IGNORED
    wanted: list[ByteRange] = []
    specs = 0
    suffix = False
    for item in range_set.split(","):
        spec = item.strip(" \t")
        if not spec:  # RFC 9110 5.6.1.2: empty list elements are ignored
            continue
        specs += 1
        if specs > max_ranges:
            return IGNORED
        match = _SPEC.fullmatch(spec)
        if match is None:
            return IGNORED
        first, last = match.groups()
        if not first:
            if not last:
                return IGNORED
            suffix_length = _number(last)
            suffix = True
            if suffix_length > 0 and size > 0:
                wanted.append(ByteRange(max(0, size - suffix_length), size - 1))
            elif suffix_length > 0:  # satisfiable, but a zero-length file has no bytes to name
                return IGNORED
            continue
        start = _number(first)
        end = _number(last) if last else _HUGE
        if end < start:
            return IGNORED
        if start < size:
            wanted.append(ByteRange(start, min(end, size - 1)))
    if specs == 0:
        return IGNORED
    if not wanted:
        return UNSATISFIABLE
    if sum(r.length for r in wanted) > size:
        return IGNORED
    merged = coalesce(wanted)
    if len(merged) > 1:
        return RangeSet(RangeKind.MULTI, merged)
    kind = RangeKind.SUFFIX if suffix and specs == 1 else RangeKind.SINGLE
    return RangeSet(kind, merged)


def coalesce(ranges: list[ByteRange]) -> tuple[ByteRange, ...]:
    """Merge the ranges that overlap or are adjacent, keeping the order of the request
    (RFC 9110 15.3.7.2): a merged range takes the place of its first-requested member."""
    merged: list[tuple[int, ByteRange]] = []  # (index of the first member, range)
    for index in sorted(range(len(ranges)), key=lambda i: ranges[i].start):
        current = ranges[index]
        if merged and current.start <= merged[-1][1].end + 1:
            first, last = merged[-1]
            merged[-1] = (min(first, index), ByteRange(last.start, max(last.end, current.end)))
        else:
            merged.append((index, current))
    return tuple(r for _, r in sorted(merged, key=lambda m: m[0]))
