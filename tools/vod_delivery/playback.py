"""Playback through the streaming server: a signed URL, a Range request, an unsigned request;
an asset's signed master playlist and its player page, in Chromium when it is installed."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

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


HLS_TYPES = ("application/vnd.apple.mpegurl", "audio/mpegurl")


def get_text(url: str) -> tuple[int, str, str]:
    """GET `url`: status, Content-Type and the body as text."""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode(errors="replace")


def variants(playlist: str) -> int:
    """How many variant streams a master playlist lists."""
    return sum(1 for line in playlist.splitlines() if line.startswith("#EXT-X-STREAM-INF:"))


def master_url(player_url: str) -> str:
    """The signed master playlist's URL behind a signed player page's URL
    (`.../play/t/TOKEN/assets/...` -> `.../t/TOKEN/assets/...`)."""
    base, sep, rest = player_url.partition("/play/")
    if not sep:
        raise ValueError(f"not a player URL: {player_url}")
    return f"{base}/{rest}"


def check_master(report: Reporter, player_url: str, expected_variants: int) -> None:
    """The signed master playlist answers 200, as HLS, with one variant per Ready rendition; the
    player page answers 200 HTML."""
    url = master_url(player_url)
    status, content_type, body = get_text(url)
    found = variants(body) if status == 200 else 0
    report.info(f"GET {url.split('/t/', 1)[0]}/t/.../master.m3u8 -> {status}, {content_type}, "
                f"{found} variants")  # fmt: skip
    if status != 200 or not content_type.startswith(HLS_TYPES) or found != expected_variants:
        raise RuntimeError(
            f"master playlist: expected 200 HLS with {expected_variants} variants, got {status} "
            f"{content_type!r} with {found}:\n{body[:500]}"
        )
    status, content_type, _ = get_text(player_url)
    report.info(f"GET the player page -> {status}, {content_type}")
    if status != 200 or not content_type.startswith("text/html"):
        raise RuntimeError(f"the player page answered {status} {content_type!r}")


def check_in_browser(
    report: Reporter, player_url: str, workdir: Path, screenshot: Path | None
) -> bool:
    """Chromium (a fresh profile under `workdir`) opens the player page: it plays, seeks,
    switches rendition and previews the storyboard (the same check the tests run); False when
    Chromium is not installed."""
    import tempfile

    from vod_delivery import browser

    if not browser.installed():
        report.info(
            f"browser check skipped: Chromium is not installed ({browser.CHROMIUM}; "
            "`make install` installs Debian's chromium)"
        )
        return False
    workdir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="chromium-", dir=workdir) as profile,
        browser.chromium(Path(profile)) as context,
    ):
        page = context.new_page()
        try:
            session = browser.play_seek_switch(page, player_url, screenshot=screenshot)
        except AssertionError as exc:
            raise RuntimeError(f"the player did not play in Chromium: {exc}") from None
        finally:
            page.close()
    report.info(f"Chromium: {session.summary()}")
    if screenshot is not None:
        report.info(f"screenshot of the player: {screenshot}")
    return True
