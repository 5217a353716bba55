"""Signed playback URLs: HMAC-SHA256 over a canonical string, with a key id for rotation.

The data plane verifies them (``vod_stream._dataplane.verify``); this module makes them, with
the same compiled canonical string and HMAC.

Query parameters: ``exp`` (expiry, Unix seconds), ``kid`` (key id), ``sig`` (base64url HMAC,
no padding) and, for a whole folder such as an HLS rendition, ``pfx`` (the signed path prefix,
ending in ``/``). The signed string is::

    vod1 LF <"path" or "prefix"> LF <path or prefix> LF <exp> LF <client ip or empty>
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlencode

from vod_stream._dataplane import canonical, signature


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
