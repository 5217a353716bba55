"""Signed playback URLs: HMAC-SHA256 over a canonical string, with a key id for rotation.

The data plane verifies them (``vod_stream._dataplane.verify`` and, for path tokens,
``verify_path_token``); this module makes them, with the same compiled canonical string and HMAC.

Two forms. A folder (an HLS asset: master, variants, segments, poster, storyboard) is signed
with a *path token*: ``/t/<token>/<prefix>master.m3u8``. The token is a path segment, so the
relative URIs in playlists inherit it and playlists are served unchanged (see
``streaming/dataplane/src/tokens.rs``). A single file is signed with query parameters:
``exp`` (expiry, Unix seconds), ``kid`` (key id), ``sig`` (base64url HMAC, no padding) and,
still accepted so URLs signed before path tokens keep working, ``pfx`` (a signed prefix). Both
forms sign the same string (a token's prefix as "prefix")::

    vod1 LF <"path" or "prefix"> LF <path or prefix> LF <exp> LF <client ip or empty>
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlencode

from vod_stream._dataplane import canonical, path_token, redact_token, signature

TOKEN_PATH = "/t/"
PLAYER_PATH = "/play"


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


def prefix_token(prefix: str, exp: int, key_id: str, key: bytes, *, ip: str | None = None) -> str:
    """The path token for every file under ``prefix`` (``/assets/ns/name/``) until ``exp``."""
    return path_token(key_id, key, prefix, exp, ip)


def token_path(token: str, path: str) -> str:
    """The URL path of ``path`` (under the token's prefix) carrying ``token``."""
    return f"{TOKEN_PATH}{token}{quote(path)}"


def player_path(media_path: str) -> str:
    """The player page's URL path for a master playlist's URL path (signed or not)."""
    return PLAYER_PATH + media_path


def loggable(path: str) -> str:
    """``path`` as the access log keeps it: a path token's signature (also in a player page's
    URL) replaced by ``-``."""
    if path.startswith(PLAYER_PATH + TOKEN_PATH):
        return PLAYER_PATH + redact_token(path[len(PLAYER_PATH) :])
    return redact_token(path)
