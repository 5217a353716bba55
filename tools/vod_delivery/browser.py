"""Drive the player page in Debian's Chromium with Playwright (the system browser, no download):
one implementation for the component browser test, the real-node cluster tests and `make demo`
(which skips its browser check when Chromium is not installed)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright import sync_api

CHROMIUM = Path("/usr/lib/chromium/chromium")  # the /usr/bin wrapper trips on some mounts
FLAGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_SECONDS = 30.0


def installed() -> bool:
    """Whether Debian's Chromium is there to drive (`make install` installs it)."""
    return CHROMIUM.exists()


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A headless Chromium context with a fresh user-data-dir ``profile``."""
    if not installed():
        raise RuntimeError(f"{CHROMIUM} is missing: `make install` installs Debian's chromium")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1000, "height": 720},
        )
        try:
            yield context
        finally:
            context.close()


def wait_until(page: Any, expression: str, timeout: float = WAIT_SECONDS) -> None:
    """Poll a JavaScript expression until it is true. (Playwright's wait_for_function evaluates
    its predicate with eval(), which the page's Content-Security-Policy rightly refuses.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            state = page.evaluate(
                "[document.body.dataset.state, document.getElementById('error').textContent]"
            )
            raise AssertionError(f"timed out waiting for {expression} (page: {state})")
        time.sleep(0.05)


def video(page: Any, expression: str) -> Any:
    return page.evaluate(
        f"(() => {{ const v = document.getElementById('video'); return {expression}; }})()"
    )


@dataclass(frozen=True)
class Session:
    first_frame: float  # seconds from navigation to the `playing` event
    reached: float  # currentTime after playing from the start
    duration: float
    landed: float  # currentTime right after seeking to the middle
    after_seek: float  # currentTime once it played on
    before: tuple[int, int]  # video size before the rendition switch
    after: tuple[int, int]  # and after
    heights: tuple[int, ...]  # the levels' heights, ascending
    storyboard_cues: int
    thumb: str  # the preview's background image

    def summary(self) -> str:
        return (
            f"playing {self.first_frame:.2f} s after navigation; playback reached "
            f"{self.reached:.2f} s of {self.duration:.2f} s; seek to the middle landed at "
            f"{self.landed:.2f} s and played on to {self.after_seek:.2f} s; rendition switch "
            f"{self.before[0]}x{self.before[1]} -> {self.after[0]}x{self.after[1]}; "
            f"{self.storyboard_cues} storyboard cues, hover preview {self.thumb[:50]}..."
        )


def play_seek_switch(page: Any, url: str, screenshot: Path | None = None) -> Session:
    """Open the player at ``url``; play >= 3 s, seek to the middle with the page's timeline
    and play on, switch rendition with the menu until the new size shows, hover for a
    storyboard preview. Asserts no error along the way."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script(
        "document.addEventListener('error', e => { if (e.target.tagName === 'VIDEO') "
        "window.__videoErrors = (window.__videoErrors || 0) + 1; }, true);"
    )
    started = time.monotonic()
    page.goto(url)
    wait_until(page, "document.body.dataset.state === 'playing'")
    first_frame = time.monotonic() - started
    wait_until(page, "document.getElementById('video').currentTime >= 3")
    reached = video(page, "v.currentTime")
    duration = video(page, "v.duration")

    box = page.locator("#timeline").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    wait_until(
        page,
        "(() => { const v = document.getElementById('video'); return !v.seeking && "
        f"v.currentTime >= {duration / 2:.3f} - 0.5; }})()",
    )
    landed = video(page, "v.currentTime")
    wait_until(page, f"document.getElementById('video').currentTime >= {landed + 1:.3f}")
    after_seek = video(page, "v.currentTime")
    assert duration / 2 - 0.5 <= landed < duration / 2 + 1.5

    before = tuple(video(page, "[v.videoWidth, v.videoHeight]"))
    levels = page.evaluate("window.vodPlayer.hls.levels.map(l => [l.width, l.height])")
    others = [i for i, (_, height) in enumerate(levels) if height != before[1]]
    target = min(others, key=lambda i: levels[i][1])
    page.select_option("#levels", str(target))
    wait_until(page, f"document.getElementById('video').videoHeight === {levels[target][1]}")
    after = tuple(video(page, "[v.videoWidth, v.videoHeight]"))
    assert "\u00d7".join(map(str, after)) in page.text_content("#status")

    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
    wait_until(page, "!document.getElementById('preview').hidden")
    thumb = page.evaluate("getComputedStyle(document.getElementById('thumb')).backgroundImage")
    cues = int(page.get_attribute("#timeline", "data-storyboard") or 0)
    if screenshot is not None:
        screenshot.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(screenshot))
    assert page.evaluate("document.body.dataset.state") == "playing"
    assert not errors
    assert page.evaluate("window.__videoErrors || 0") == 0
    return Session(
        first_frame,
        reached,
        duration,
        landed,
        after_seek,
        (int(before[0]), int(before[1])),
        (int(after[0]), int(after[1])),
        tuple(sorted(int(h) for _, h in levels)),
        cues,
        str(thumb),
    )


def cannot_play(page: Any, url: str) -> str:
    """Open the player at ``url`` and expect it to fail: the message it shows."""
    page.goto(url)
    wait_until(page, "document.body.dataset.state === 'error'")
    assert video(page, "v.currentTime") == 0
    return str(page.text_content("#error"))


def tamper(player_url: str) -> str:
    """``player_url`` with one character of its token's signature changed."""
    base, rest = player_url.split("/play/t/", 1)
    token, path = rest.split("/", 1)
    kid, exp, scope, bind, sig = token.split("~")
    sig = ("B" if sig[0] == "A" else "A") + sig[1:]
    return f"{base}/play/t/{'~'.join([kid, exp, scope, bind, sig])}/{path}"
