"""Playback through the streaming server: a signed URL, a Range request, an unsigned request."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

from vod_delivery.report import Reporter

#: (media path, ttl seconds, base URL) -> a signed URL
Signer = Callable[[str, str, str], str]


def fetch(url: str, range_header: str | None) -> tuple[int, dict[str, str], int]:
    """GET `url` (optionally with a Range header): status, headers and body length."""
    request = urllib.request.Request(url, headers={"Range": range_header} if range_header else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers.items()), len(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), len(exc.read())


def stream_and_show(
    report: Reporter, base_url: str, media_path: str, sign: Signer | None, ttl: str = "3600"
) -> None:
    """Print a signed URL, a Range request's status and Content-Range, and an unsigned request
    (`sign` None: the platform serves unsigned URLs)."""
    plain_url = f"{base_url}{media_path}"
    if sign is not None:
        url = sign(media_path, ttl, base_url)
        report.info(f"signed URL (vod-stream sign, ttl {ttl}s): {url}")
    else:
        url = plain_url
        report.info(f"signed URLs are off for this platform: {url}")
    status, headers, length = fetch(url, "bytes=0-1023")
    report.info(
        f"GET Range: bytes=0-1023 -> {status}, Content-Range: {headers.get('Content-Range')}, "
        f"Content-Length: {headers.get('Content-Length')}, "
        f"Content-Type: {headers.get('Content-Type')}"
    )
    if status != 206 or length != 1024:
        raise RuntimeError(f"expected 206 with 1024 bytes, got {status} with {length}")
    if sign is not None:
        status, _, _ = fetch(plain_url, "bytes=0-1023")
        report.info(f"GET without a signature -> {status} (signed URLs are on)")
        if status != 403:
            raise RuntimeError(f"an unsigned request was answered {status}, expected 403")
    report.info(f"try it: curl -r 0-1023 -o /dev/null -sw '%{{http_code}}\\n' '{url}'")
