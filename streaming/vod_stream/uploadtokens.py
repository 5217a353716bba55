"""Short-lived upload tokens: the platform's signed-URL HMAC, scoped to one upload target.

A token is query parameters ``path`` (the root-relative target, e.g. ``uploads/intro.mp4``),
``exp``, ``kid`` and ``sig``, where ``sig`` is the signed-URL signature (``vod_stream.signing``,
same keys, same canonical string) of the path ``/.upload/<target>``. That path has a hidden
segment, which no playback URL may have, so a playback signature never authorizes an upload
and an upload token never plays anything; prefix scopes (``pfx``) are refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from vod_stream import signing
from vod_stream._dataplane import verify

SCOPE = "/.upload/"
PARAMS = ("path", "exp", "kid", "sig")


def scope_of(target: str) -> str:
    """The path that is signed for an upload to ``target``."""
    return SCOPE + target.lstrip("/")


def sign(target: str, exp: int, key_id: str, key: bytes) -> dict[str, str]:
    """Query parameters that let their bearer upload to ``target`` until ``exp``."""
    return {"path": target.lstrip("/"), **signing.sign_params(scope_of(target), exp, key_id, key)}


def check(
    params: Mapping[str, str], lookup: Callable[[str], bytes | None], now: float | None = None
) -> tuple[str | None, str]:
    """The target a token authorizes (or None) and, when None, why."""
    target = params.get("path", "").lstrip("/")
    if not target:
        return None, "an upload token needs a path"
    if "pfx" in params:
        return None, "an upload token is scoped to one path, not a prefix"
    reason = verify(
        scope_of(target), dict(params), lookup, time.time() if now is None else now, None
    )
    if reason is not None:
        return None, reason
    return target, ""


def query(params: Mapping[str, str]) -> dict[str, str]:
    """Only the token's own parameters (to carry them into the upload's Location)."""
    return {name: params[name] for name in PARAMS if name in params}
