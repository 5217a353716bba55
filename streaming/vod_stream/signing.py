"""Signed playback URLs: HMAC-SHA256 over a canonical string, with a key id for rotation.

Query parameters: ``exp`` (expiry, Unix seconds), ``kid`` (key id), ``sig`` (base64url HMAC,
no padding) and, for a whole folder such as an HLS rendition, ``pfx`` (the signed path prefix,
ending in ``/``). The signed string is::

    vod1 LF <"path" or "prefix"> LF <path or prefix> LF <exp> LF <client ip or empty>
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from urllib.parse import quote, urlencode

VERSION = "vod1"


def canonical(target: str, exp: int, ip: str | None, *, prefix: bool) -> bytes:
    scope = "prefix" if prefix else "path"
    return f"{VERSION}\n{scope}\n{target}\n{exp}\n{ip or ''}".encode()


def signature(key: bytes, message: bytes) -> str:
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_params(
    path: str,
    exp: int,
    key_id: str,
    key: bytes,
    *,
    ip: str | None = None,
    prefix: str | None = None,
) -> dict[str, str]:
    """Query parameters that authorize ``path`` (or every path under ``prefix``) until ``exp``."""
    if prefix is not None and not (prefix.endswith("/") and path.startswith(prefix)):
        raise ValueError("prefix must end with '/' and contain the path")
    target = prefix if prefix is not None else path
    params = {"exp": str(exp), "kid": key_id}
    if prefix is not None:
        params["pfx"] = prefix
    params["sig"] = signature(key, canonical(target, exp, ip, prefix=prefix is not None))
    return params


def signed_url(base_url: str, path: str, params: Mapping[str, str]) -> str:
    return f"{base_url.rstrip('/')}{quote(path)}?{urlencode(params, safe='/')}"


def verify(
    path: str,
    params: Mapping[str, str],
    lookup: Callable[[str], bytes | None],
    now: float,
    ip: str | None,
) -> str | None:
    """``None`` when the request may proceed, else why it may not (answered with 403)."""
    exp_text, key_id, sig = params.get("exp"), params.get("kid"), params.get("sig")
    if not exp_text or not key_id or not sig:
        return "signature required: exp, kid and sig query parameters"
    if not exp_text.isdigit() or len(exp_text) > 12:
        return "invalid exp"
    exp = int(exp_text)
    if exp < now:
        return "signature expired"
    key = lookup(key_id)
    if key is None:
        return "unknown key id"
    prefix = params.get("pfx")
    if prefix is not None and not (prefix.endswith("/") and path.startswith(prefix)):
        return "path is outside the signed prefix"
    target = prefix if prefix is not None else path
    expected = signature(key, canonical(target, exp, ip, prefix=prefix is not None))
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        return "invalid signature"
    return None
