"""The player page in a real browser: Debian's Chromium (headless, driven by Playwright, no
browser download) opens /play/t/<token>/... from a real vod-stream serving a ladder packaged by
the real `vod-stream package` (three renditions, 12 s, 2 s GOPs). It plays, seeks to the middle
and keeps playing, switches rendition through the page's menu, previews the storyboard on
hover, and saves docs/player.png. A page without a valid token cannot play."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.component.conftest import ServerProcess
from tests.component.hlsladder import SECONDS, Ladder, package_ladder, write_keys
from vod_delivery.browser import cannot_play, chromium, play_seek_switch, tamper

pytestmark = pytest.mark.component

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "player.png"


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
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


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


def test_the_player_plays_seeks_switches_and_previews(
    server: tuple[ServerProcess, Ladder], browser: Any
) -> None:
    process, ladder = server
    url = player_url(process, ladder)
    assert url.startswith(f"{process.url}/play/t/")
    page = browser.new_page()
    session = play_seek_switch(page, url, screenshot=SCREENSHOT)
    page.close()
    assert abs(session.duration - SECONDS) < 0.5
    assert session.reached >= 3
    assert session.after_seek > session.landed
    assert session.heights == (180, 270, 360)
    assert session.after[1] != session.before[1]
    assert "storyboard.jpg" in session.thumb
    assert session.storyboard_cues >= SECONDS // 2
    print(f"\nplayer: {session.summary()}; screenshot {SCREENSHOT}")


@pytest.mark.parametrize("how", ["no token", "tampered token"])
def test_a_page_without_a_valid_token_cannot_play(
    server: tuple[ServerProcess, Ladder], browser: Any, how: str
) -> None:
    process, ladder = server
    signed = player_url(process, ladder)
    url = f"{process.url}/play{ladder.master}" if how == "no token" else tamper(signed)
    page = browser.new_page()
    message = cannot_play(page, url)
    page.close()
    assert "403" in message
    print(f"\nplayer with {how}: {message!r}, currentTime 0")
