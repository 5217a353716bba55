"""The player page's responses and its bundled hls.js; path tokens made in Python and checked
by the compiled verifier (one implementation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vod_stream import player
from vod_stream._dataplane import verify_path_token
from vod_stream.signing import player_path, prefix_token, token_path

pytestmark = pytest.mark.unit

LOCK = Path(__file__).resolve().parents[3] / "streaming" / "player" / "package-lock.json"
KEYS = {"k1": b"secret-1"}
NOW = 1_700_000_000


def test_every_play_path_gets_the_page_with_a_strict_policy() -> None:
    for path in ("/play/t/tok/assets/a/b/master.m3u8", "/play/assets/a/b/master.m3u8"):
        page = player.respond("GET", path, {"X-Request-Id": "r"})
        assert page.status == 200
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Request-Id"] == "r"
        assert isinstance(page.body, bytes)
        assert b'src="/player/hls.min.js"' in page.body


def test_assets_and_refusals() -> None:
    for name, ctype in player.ASSETS.items():
        answer = player.respond("GET", f"/player/{name}", {})
        assert (answer.status, answer.headers["Content-Type"]) == (200, ctype)
    assert player.respond("GET", "/player/../server.py", {}).status == 404
    assert player.respond("GET", "/player/index.html", {}).status == 404
    assert player.respond("POST", "/play/x", {}).status == 405


def test_the_bundled_hls_js_is_the_pinned_one_with_its_license() -> None:
    pinned = json.loads(LOCK.read_text())["packages"]["node_modules/hls.js"]["version"]
    bundled = player.static_file("hls.min.js")
    assert f'"{pinned}"'.encode() in bundled
    assert b"Apache License" in player.static_file("hls.js.LICENSE.txt")
    assert b"http://" not in player.static_file("index.html")  # nothing from elsewhere


def test_tokens_made_in_python_pass_the_compiled_check() -> None:
    token = prefix_token("/assets/ns/intro/", NOW + 60, "k1", KEYS["k1"])
    url = token_path(token, "/assets/ns/intro/0a1b2c3d/360p/seg 1.m4s")
    assert url.endswith("/360p/seg%201.m4s")
    assert verify_path_token(url, KEYS.get, NOW) == (
        "/assets/ns/intro/0a1b2c3d/360p/seg 1.m4s",
        None,
    )
    assert verify_path_token(url, KEYS.get, NOW + 61) == (None, "signature expired")
    other = token_path(token, "/assets/ns/other/master.m3u8")
    assert verify_path_token(other, KEYS.get, NOW) == (None, "path is outside the signed prefix")
    bound = token_path(
        prefix_token("/assets/ns/intro/", NOW + 60, "k1", b"secret-1", ip="1.2.3.4"),
        "/assets/ns/intro/m.m3u8",
    )
    assert verify_path_token(bound, KEYS.get, NOW, "1.2.3.4")[1] is None
    assert verify_path_token(bound, KEYS.get, NOW, "1.2.3.5")[1] == "invalid signature"
    assert player_path(url).startswith("/play/t/")
    with pytest.raises(ValueError, match="clean folder"):
        prefix_token("/assets/../x/", NOW, "k1", KEYS["k1"])
