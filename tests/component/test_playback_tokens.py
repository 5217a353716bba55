"""Signed HLS playback against a real vod-stream serving a ladder made by `vod-stream package`:
one prefix token plays the master, variants, segments, poster and storyboard (the relative
URIs of the playlists inherit it); the tamper matrix gets 403 on playlists and segments; HTTP
caching headers, content types and CORS for a player on another origin."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urljoin

import httpx
import m3u8
import pytest

from tests.component.conftest import (
    JWT_SECRET,
    ServerProcess,
    make_token,
    raw_request,
    status_of,
)
from tests.component.hlsladder import REVISION, Ladder, package_ladder, write_keys

pytestmark = pytest.mark.component

APP = "https://app.example.com"
IMMUTABLE = "max-age=31536000, immutable"


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> Ladder:
    root = tmp_path_factory.mktemp("origin")
    made = package_ladder(root, tmp_path_factory.mktemp("work"))
    # a second asset beside it: what an escaping path would reach
    shutil.copytree(root / "assets/media/intro", root / "assets/media/other")
    return made


@pytest.fixture(scope="module")
def server(ladder: Ladder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("server")
    write_keys(workdir / "keys")
    process = ServerProcess(
        ladder.root,
        workdir,
        env={
            "VOD_SIGNED_URLS": "true",
            "VOD_SIGNING_ACTIVE_KEY_ID": "k1",
            "VOD_JWT_SECRET": JWT_SECRET,
            "VOD_CORS_ALLOWED_ORIGINS": APP,
        },
    )
    process.keys = workdir / "keys"  # type: ignore[attr-defined]
    yield process
    process.kill()


def sign(server: ServerProcess, *args: str) -> str:
    keys: Path = server.keys  # type: ignore[attr-defined]
    done = subprocess.run(
        [sys.executable, "-m", "vod_stream", "sign", *args],
        env={
            "PATH": os.environ["PATH"],
            "VOD_SIGNING_KEYS_DIR": str(keys),
            "VOD_SIGNING_ACTIVE_KEY_ID": "k1",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def token_of(url: str) -> str:
    return url.split("/")[2]


def get_status(server: ServerProcess, raw_path: str) -> int:
    """GET exactly this path (no client normalises `..` or escapes on the way)."""
    request = f"GET {raw_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    return status_of(raw_request(server.port, request.encode()))


def test_the_tamper_matrix(server: ServerProcess, ladder: Ladder) -> None:
    prefix = ladder.prefix
    good = token_of(sign(server, "--prefix", prefix, "--ttl", "600"))
    kid, exp, scope, bind, sig = good.split("~")
    tampered = "~".join([kid, exp, scope, bind, ("B" if sig[0] == "A" else "A") + sig[1:]])
    expired = token_of(sign(server, "--prefix", prefix, "--ttl", "-5"))
    wrong_prefix = token_of(sign(server, "--prefix", "/assets/media/other/", "--ttl", "600"))
    other_kid = "~".join(["k2", exp, scope, bind, sig])
    bound_elsewhere = token_of(sign(server, "--prefix", prefix, "--ip", "10.9.9.9"))
    bound_here = token_of(sign(server, "--prefix", prefix, "--ip", "127.0.0.1"))
    unbound_flag = bound_elsewhere.replace("~ip~", "~a~")
    targets = {
        "master playlist": ladder.master,
        "variant playlist": ladder.variant("360p"),
        "segment": ladder.first_segment("360p"),
    }

    def escapes(path: str, how: str) -> str:
        """``path`` of the other asset, reached from inside the signed prefix."""
        inside = path.replace(prefix, "")
        return {
            "..": f"{prefix}../other/{inside}",
            "%2e%2e": f"{prefix}%2e%2e/other/{inside}",
            "%2f": f"{prefix}..%2fother%2f{inside.replace('/', '%2f')}",
        }[how]

    cases: list[tuple[str, str, Callable[[str], str], int]] = [
        ("valid", good, lambda p: p, 200),
        ("valid, IP-bound to this client", bound_here, lambda p: p, 200),
        ("tampered signature", tampered, lambda p: p, 403),
        ("expired", expired, lambda p: p, 403),
        ("token of another prefix", wrong_prefix, lambda p: p, 403),
        ("other key id", other_kid, lambda p: p, 403),
        ("IP-bound to another client", bound_elsewhere, lambda p: p, 403),
        ("IP binding stripped", unbound_flag, lambda p: p, 403),
        (".. escape", good, lambda p: escapes(p, ".."), 403),
        ("%2e%2e escape", good, lambda p: escapes(p, "%2e%2e"), 403),
        ("%2f escape", good, lambda p: escapes(p, "%2f"), 403),
    ]
    rows = []
    for name, token, shape, expected in cases:
        got = {
            what: get_status(server, f"/t/{token}{shape(path)}") for what, path in targets.items()
        }
        rows.append((name, got, expected))
    width = max(len(name) for name, _, _ in rows)
    print("\ntoken tamper matrix (HTTP status per target)")
    print(f"{'case':<{width}}  " + "  ".join(f"{t:>16}" for t in targets) + "  expected")
    for name, got, expected in rows:
        cells = "  ".join(f"{got[t]:>16}" for t in targets)
        print(f"{name:<{width}}  {cells}  {expected}")
    assert all(set(got.values()) == {expected} for _, got, expected in rows), rows
    # the escapes name files that exist and that the token of their own prefix may read
    for path in targets.values():
        other = path.replace("/intro/", "/other/")
        assert get_status(server, f"/t/{wrong_prefix}{other}") == 200


def test_one_token_plays_the_whole_ladder_through_relative_uris(
    server: ServerProcess, ladder: Ladder
) -> None:
    url = sign(server, "--prefix", ladder.prefix, "--base-url", server.url)
    assert url == f"{server.url}/t/{token_of(url[len(server.url) :])}{ladder.master}"
    fetched = 0
    with httpx.Client(timeout=30) as client:
        master = m3u8.M3U8(client.get(url).text, strict=True)
        assert len(master.playlists) == 3
        for variant in master.playlists:
            variant_url = urljoin(url, variant.uri)  # relative: inherits the token
            playlist = m3u8.M3U8(client.get(variant_url).raise_for_status().text, strict=True)
            init = urljoin(variant_url, playlist.segment_map[0].uri)
            assert client.get(init).raise_for_status().content[4:8] == b"ftyp"
            for segment in playlist.segments:
                assert client.get(urljoin(variant_url, segment.uri)).status_code == 200
                fetched += 1
        base = urljoin(url, f"{REVISION}/")
        assert client.get(base + "poster.jpg").content[:2] == b"\xff\xd8"
        assert client.get(base + "storyboard.vtt").text.startswith("WEBVTT")
        assert client.get(base + "storyboard.jpg").status_code == 200
        # the same paths without the token are refused
        assert client.get(server.url + ladder.master).status_code == 403
    assert fetched >= 3 * 6  # 12 s in 2 s segments, three renditions
    # the player page for it, and no signature in either side's access log
    token = token_of(url[len(server.url) :])
    with server.client() as c:
        page = c.get(f"/play/t/{token}{ladder.master}")
        assert (page.status_code, page.headers["content-type"]) == (200, "text/html; charset=utf-8")
    signature = token.rsplit("~", 1)[1]

    def logged_paths() -> list[str]:
        return [str(e["path"]) for e in list(server.logs) if "/t/" in str(e.get("path"))]

    # The data plane's access records are flushed within about a second (buffered like nginx).
    deadline = time.monotonic() + 5
    while not any(p.startswith("/t/") for p in logged_paths()) and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = logged_paths()
    assert any(p.startswith("/play/t/") for p in logged)
    assert any(p.startswith("/t/") for p in logged)
    assert not [p for p in logged if signature in p]


def test_admin_sign_grants_a_prefix(server: ServerProcess, ladder: Ladder) -> None:
    auth = {"Authorization": f"Bearer {make_token()}"}
    with server.client() as c:
        r = c.post("/admin/sign", json={"prefix": ladder.prefix, "ttl": 60}, headers=auth)
        assert r.status_code == 200, r.text
        grant = r.json()
        assert grant["url"] == f"/t/{grant['token']}{ladder.master}"
        assert grant["player"] == f"/play{grant['url']}"
        assert (grant["prefix"], grant["kid"]) == (ladder.prefix, "k1")
        assert c.get(grant["url"]).status_code == 200
        outside = c.post(
            "/admin/sign", json={"prefix": ladder.prefix, "path": "/movie.mp4"}, headers=auth
        )
        assert outside.status_code == 400
        bad = c.post("/admin/sign", json={"prefix": "/assets/../x/"}, headers=auth)
        assert bad.status_code == 400
        assert c.post("/admin/sign", json={"prefix": ladder.prefix}).status_code == 401


def test_hls_caching_headers_and_types(server: ServerProcess, ladder: Ladder) -> None:
    token = token_of(sign(server, "--prefix", ladder.prefix))
    revision = f"{ladder.prefix}{REVISION}"
    expected = {
        ladder.master: ("application/vnd.apple.mpegurl", "private, max-age=2"),
        ladder.variant("360p"): ("application/vnd.apple.mpegurl", "private, max-age=2"),
        ladder.first_segment("360p"): ("video/iso.segment", f"private, {IMMUTABLE}"),
        f"{revision}/360p/init_0.mp4": ("video/mp4", f"private, {IMMUTABLE}"),
        f"{revision}/poster.jpg": ("image/jpeg", f"private, {IMMUTABLE}"),
        f"{revision}/storyboard.jpg": ("image/jpeg", f"private, {IMMUTABLE}"),
        f"{revision}/storyboard.vtt": ("text/vtt; charset=utf-8", f"private, {IMMUTABLE}"),
    }
    with server.client() as c:
        for path, (ctype, cache) in expected.items():
            r = c.get(f"/t/{token}{path}")
            assert r.status_code == 200, path
            assert (r.headers["content-type"], r.headers["cache-control"]) == (ctype, cache), path
            again = c.get(f"/t/{token}{path}", headers={"If-None-Match": r.headers["etag"]})
            assert (again.status_code, again.headers["cache-control"]) == (304, cache), path
        refused = c.get(f"/t/{token}/assets/media/other/master.m3u8")
        assert (refused.status_code, refused.headers["cache-control"]) == (403, "no-store")


def test_unsigned_server_caches_publicly(start_server, ladder: Ladder) -> None:
    server: ServerProcess = start_server(media_root=ladder.root)
    with server.client() as c:
        assert c.get(ladder.master).headers["cache-control"] == "public, max-age=2"
        seg = c.get(ladder.first_segment("360p"))
        assert seg.headers["cache-control"] == f"public, {IMMUTABLE}"
        assert c.get("/uploads/pattern.mp4").headers["cache-control"] == "public, no-cache"


def test_cors_lets_a_player_elsewhere_fetch_and_seek(server: ServerProcess, ladder: Ladder) -> None:
    token = token_of(sign(server, "--prefix", ladder.prefix))
    segment = f"/t/{token}{ladder.first_segment('360p')}"
    with server.client() as c:
        preflight = c.options(
            segment,
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "range",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == APP
        assert "Range" in preflight.headers["access-control-allow-headers"]
        ranged = c.get(segment, headers={"Origin": APP, "Range": "bytes=0-99"})
        assert ranged.status_code == 206
        assert ranged.headers["access-control-allow-origin"] == APP
        exposed = ranged.headers["access-control-expose-headers"]
        for name in ("Content-Range", "Content-Length", "Accept-Ranges"):
            assert name in exposed
        assert ranged.headers["content-range"].startswith("bytes 0-99/")
        stranger = c.get(segment, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in stranger.headers
