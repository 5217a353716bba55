"""Playback through the streaming server: a signed URL, a Range request, an unsigned request."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping

from vod_delivery.report import Reporter
from vod_delivery.standin import resolve_command


def sign(env: Mapping[str, str], path: str, ttl: str, base_url: str) -> str:
    """A signed URL from `vod-stream sign` with the server's own (rendered) settings."""
    program = resolve_command(["vod-stream"])[0]
    out = subprocess.run(
        [program, "sign", path, "--ttl", ttl, "--base-url", base_url],
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip().splitlines()[-1]


def fetch(url: str, range_header: str | None) -> tuple[int, dict[str, str], int]:
    """GET `url` (optionally with a Range header): status, headers and body length."""
    request = urllib.request.Request(url, headers={"Range": range_header} if range_header else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers.items()), len(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), len(exc.read())


def stream_and_show(
    report: Reporter, base_url: str, media_path: str, env: Mapping[str, str]
) -> None:
    """Print a signed URL, a Range request's status and Content-Range, and an unsigned request."""
    signed = env.get("VOD_SIGNED_URLS", "false").lower() == "true"
    plain_url = f"{base_url}{media_path}"
    if signed:
        ttl = env.get("VOD_SIGNED_URL_TTL_SECONDS", "3600")
        url = sign(env, media_path, ttl, base_url)
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
    if signed:
        status, _, _ = fetch(plain_url, "bytes=0-1023")
        report.info(f"GET without a signature -> {status} (signed URLs are on)")
        if status != 403:
            raise RuntimeError(f"an unsigned request was answered {status}, expected 403")
    report.info(f"try it: curl -r 0-1023 -o /dev/null -sw '%{{http_code}}\\n' '{url}'")
