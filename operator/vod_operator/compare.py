"""Pure drift detection: does the live object still hold every field we would apply?

Server-side apply is idempotent, but every apply request is a write. Comparing first keeps a
platform at rest at zero writes: fields the API server defaults (extra keys in `live`) are
ignored, quantities compare by value (`1000m` == `1`), everything else must be equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import InvalidOperation
from typing import Any

from kubernetes.utils import parse_quantity

_QUANTITY_PARENTS = frozenset({"requests", "limits"})
#: averageValue: an HPA metric target (the API server canonicalizes it: 1024Ki becomes 1Mi).
_QUANTITY_KEYS = frozenset({"sizeLimit", "storage", "averageValue"})


def drift(desired: Any, live: Any, path: Sequence[str] = ()) -> str | None:
    """The first path where `live` differs from `desired`, or None when it holds all of it."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return _at(path)
        for key, value in desired.items():
            if key not in live:
                return _at((*path, key))
            found = drift(value, live[key], (*path, key))
            if found is not None:
                return found
        return None
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return _at(path)
        for index, (want, have) in enumerate(zip(desired, live, strict=True)):
            found = drift(want, have, (*path, str(index)))
            if found is not None:
                return found
        return None
    if desired == live or _same_quantity(desired, live, path):
        return None
    return _at(path)


def _same_quantity(desired: Any, live: Any, path: Sequence[str]) -> bool:
    in_context = bool(path) and (
        path[-1] in _QUANTITY_KEYS or (len(path) > 1 and path[-2] in _QUANTITY_PARENTS)
    )
    if not in_context or not isinstance(desired, str | int) or not isinstance(live, str | int):
        return False
    try:
        return bool(parse_quantity(desired) == parse_quantity(live))
    except (ValueError, InvalidOperation):
        return False


def _at(path: Sequence[str]) -> str:
    return "." + ".".join(path) if path else "."
