"""The player page in a real browser: Debian's Chromium (headless, driven by Playwright, no
browser download) opens /play/t/<token>/... from a real vod-stream serving a ladder packaged by
the real `vod-stream package` (three renditions, 12 s, 2 s GOPs). It plays, seeks to the middle
and keeps playing, switches rendition through the page's menu, previews the storyboard on
hover, and saves docs/player.png. A page without a valid token cannot play."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api

from tests.component.conftest import ServerProcess
from tests.component.hlsladder import SECONDS, Ladder, package_ladder, write_keys

pytestmark = pytest.mark.component

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
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "player.png"
WAIT_SECONDS = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Ladder]]:
    ladder = package_ladder(tmp_path_factory.mktemp("origin"), tmp_path_factory.mktemp("work"))
    workdir = tmp_path_factory.mktemp("server")
    write_keys(workdir / "keys")
    process = ServerProcess(
        ladder.root,
        workdir,
        env={"VOD_SIGNED_URLS": "true", "VOD_SIGNING_ACTIVE_KEY_ID": "k1", "VOD_WORKERS": "2"},
    )
    process.keys = workdir / "keys"  # type: ignore[attr-defined]
    yield process, ladder
    process.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1000, "height": 720},
        )
        yield context
        context.close()


def player_url(server: ServerProcess, ladder: Ladder) -> str:
    keys: Path = server.keys  # type: ignore[attr-defined]
    done = subprocess.run(
        [
            sys.executable, "-m", "vod_stream", "sign", "--prefix", ladder.prefix, "--player",
            "--ttl", "600", "--base-url", server.url,
        ],
        env={"PATH": os.environ["PATH"], "VOD_SIGNING_KEYS_DIR": str(keys)},
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return done.stdout.strip()


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


def test_the_player_plays_seeks_switches_and_previews(
    server: tuple[ServerProcess, Ladder], browser: Any
) -> None:
    process, ladder = server
    url = player_url(process, ladder)
    assert url.startswith(f"{process.url}/play/t/")
    page = browser.new_page()
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
    assert abs(duration - SECONDS) < 0.5

    # seek to the middle with the page's timeline, then keep playing
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

    # switch rendition through the menu: a height other than the one showing
    before = video(page, "[v.videoWidth, v.videoHeight]")
    levels = page.evaluate("window.vodPlayer.hls.levels.map(l => [l.width, l.height])")
    assert sorted(h for _, h in levels) == [180, 270, 360]
    target = min(
        (i for i, (_, h) in enumerate(levels) if h != before[1]), key=lambda i: levels[i][1]
    )
    page.select_option("#levels", str(target))
    wait_until(page, f"document.getElementById('video').videoHeight === {levels[target][1]}")
    after = video(page, "[v.videoWidth, v.videoHeight]")
    assert "\u00d7".join(map(str, after)) in page.text_content("#status")

    # storyboard preview on hover
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
    wait_until(page, "!document.getElementById('preview').hidden")
    thumb = page.evaluate("getComputedStyle(document.getElementById('thumb')).backgroundImage")
    assert "storyboard.jpg" in thumb
    assert int(page.get_attribute("#timeline", "data-storyboard")) >= SECONDS // 2

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    state = page.evaluate("document.body.dataset.state")
    assert state == "playing"
    assert not errors
    assert page.evaluate("window.__videoErrors || 0") == 0
    print(
        f"\nplayer: playing {first_frame:.2f} s after navigation; "
        f"playback reached {reached:.2f} s of {duration:.2f} s; "
        f"seek to the middle landed at {landed:.2f} s and played on to {after_seek:.2f} s; "
        f"rendition switch {before[0]}x{before[1]} -> {after[0]}x{after[1]} "
        f"(level {target}); storyboard preview {thumb[:60]}...; screenshot {SCREENSHOT}"
    )
    page.close()


@pytest.mark.parametrize("how", ["no token", "tampered token"])
def test_a_page_without_a_valid_token_cannot_play(
    server: tuple[ServerProcess, Ladder], browser: Any, how: str
) -> None:
    process, ladder = server
    url = player_url(process, ladder)
    if how == "no token":
        url = f"{process.url}/play{ladder.master}"
    else:
        base, rest = url.split("/play/t/", 1)
        token, path = rest.split("/", 1)
        kid, exp, scope, bind, sig = token.split("~")
        sig = ("B" if sig[0] == "A" else "A") + sig[1:]  # one signature character differs
        url = f"{base}/play/t/{'~'.join([kid, exp, scope, bind, sig])}/{path}"
    page = browser.new_page()
    page.goto(url)
    wait_until(page, "document.body.dataset.state === 'error'")
    message = page.text_content("#error")
    assert "403" in message
    assert video(page, "v.currentTime") == 0
    print(f"\nplayer with {how}: {message!r}, currentTime 0")
    page.close()
