"""A deliberately simple model of how a Range header is answered, independent of ``ranges.py``:
the property tests check the parser, the plan and the live server against it.

It follows docs/streaming.md literally: more than ``max_ranges`` range-specs, a decreasing
range, a non-zero suffix of an empty file, or ranges adding up to more than the file → ignored
(200, the whole file); no range overlapping the file → unsatisfiable (416); otherwise the
ranges, clamped to the file, merged while any two overlap or touch, each merged range in the
place of its first-requested member → one (206, ``single`` or ``suffix``) or several (206,
multipart).
"""

from __future__ import annotations

from dataclasses import dataclass

STATUS = {"ignored": 200, "unsatisfiable": 416, "single": 206, "suffix": 206, "multi": 206}


@dataclass(frozen=True)
class Expected:
    kind: str  # a RangeKind value
    ranges: list[tuple[int, int]]  # inclusive (start, end), in the order to send

    @property
    def status(self) -> int:
        return STATUS[self.kind]


IGNORED = Expected("ignored", [])


def expected(specs: list[str], size: int, max_ranges: int) -> Expected:
    """The answer to ``Range: bytes=<specs joined by commas>`` for a file of ``size`` bytes.

    ``specs`` are ``a-b``, ``a-`` or ``-n`` with decimal numbers and no spaces.
    """
    if len(specs) > max_ranges:
        return IGNORED
    wanted: list[tuple[int, int, int]] = []  # (request index, start, end)
    for index, spec in enumerate(specs):
        first, last = spec.split("-")
        if not first:  # a suffix: the last n bytes
            n = int(last)
            if n and not size:
                return IGNORED
            if n:
                wanted.append((index, max(0, size - n), size - 1))
            continue
        start = int(first)
        end = int(last) if last else size - 1
        if last and end < start:
            return IGNORED
        if start < size:
            wanted.append((index, start, min(end, size - 1)))
    if not wanted:
        return Expected("unsatisfiable", [])
    if sum(end - start + 1 for _, start, end in wanted) > size:
        return IGNORED
    merged = _merge_until_disjoint(wanted)
    ranges = [(start, end) for _, start, end in sorted(merged)]
    if len(ranges) > 1:
        return Expected("multi", ranges)
    return Expected("suffix" if len(specs) == 1 and specs[0][0] == "-" else "single", ranges)


def _merge_until_disjoint(items: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Merge any two ranges that overlap or touch, until none do (keeping the smaller index)."""
    groups = list(items)
    changed = True
    while changed:
        changed = False
        for x in range(len(groups)):
            for y in range(x + 1, len(groups)):
                (i, a, b), (j, c, d) = groups[x], groups[y]
                if a <= d + 1 and c <= b + 1:
                    groups[x] = (min(i, j), min(a, c), max(b, d))
                    del groups[y]
                    changed = True
                    break
            if changed:
                break
    return groups
