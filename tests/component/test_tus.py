"""Resumable uploads (tus 1.0.0) against real vod-stream processes sharing one media root.

The client is the `tuspy` package; cuts, concurrent PATCHes and protocol errors are sent over
raw sockets so the bytes on the wire are exactly the ones described.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from tusclient.client import TusClient

from tests.component.conftest import JWT_SECRET, ServerProcess, make_token, read_head
from vod_stream import signing, uploadtokens
from vod_stream.tusstore import FileStore, UploadInfo, new_id

pytestmark = pytest.mark.component

JWT_ENV = {"VOD_JWT_SECRET": JWT_SECRET, "VOD_TUS_LOCK_WAIT_SECONDS": "1"}
TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = 256 * 1024
KEY_ID = "k1"
KEY = b"upload-token-key-with-enough-bytes"


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A few MiB of real H.264/AAC made by ffmpeg from its test pattern."""
    target = tmp_path_factory.mktemp("tus-video") / "pattern.mp4"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=6",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=6",
            "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "5M",
            "-c:a", "aac", "-shortest", str(target),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    data = target.read_bytes()
    assert 2 * 1024 * 1024 < len(data) < 16 * 1024 * 1024
    return data


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token()}"}


def metadata(**pairs: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


def create(server: ServerProcess, length: int, path: str, **headers: str) -> str:
    """POST a new upload; its path (``/tus/<id>``)."""
    with server.client() as c:
        response = c.post(
            "/tus/",
            headers={
                **TUS,
                **auth(),
                "Upload-Length": str(length),
                "Upload-Metadata": metadata(filename=Path(path).name, path=path),
                **headers,
            },
        )
    assert response.status_code == 201, response.text
    return response.headers["location"]


def head(server: ServerProcess, location: str, **headers: str) -> httpx.Response:
    with server.client() as c:
        return c.head(location, headers={**TUS, **auth(), **headers})


def patch(
    server: ServerProcess, location: str, offset: int, body: bytes, **headers: str
) -> httpx.Response:
    with server.client() as c:
        return c.patch(
            location,
            content=body,
            headers={
                **TUS,
                **auth(),
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": str(offset),
                **headers,
            },
        )


def patch_head(port: int, location: str, offset: int, length: int) -> bytes:
    return (
        f"PATCH {location} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        f"Authorization: Bearer {make_token()}\r\n"
        f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def status_and_offset(response: bytes) -> tuple[int, int | None]:
    lines = response.decode("latin-1").split("\r\n")
    offset = next(
        (int(v) for n, _, v in (h.partition(": ") for h in lines) if n.lower() == "upload-offset"),
        None,
    )
    return int(lines[0].split(" ")[1]), offset


def no_upload_state(root: Path) -> bool:
    state = root / ".vod-uploads"
    return not state.exists() or not any(state.iterdir())


def wait_until(check: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_cut_upload_resumes_on_another_replica_byte_identical(
    start_server: Any, tmp_path: Path, video: bytes
) -> None:
    root = tmp_path / "media"
    replica_a: ServerProcess = start_server(media_root=root, env=JWT_ENV)
    replica_b: ServerProcess = start_server(media_root=root, env=JWT_ENV)
    source = tmp_path / "pattern.mp4"
    source.write_bytes(video)
    size = len(video)
    target = "uploads/resumed/pattern.mp4"

    # 1. tuspy on replica A: chunks of 256 KiB with sha1 checksums, up to about 40 %
    client_a = TusClient(f"{replica_a.url}/tus/", headers=auth())
    uploader = client_a.uploader(
        str(source),
        chunk_size=CHUNK,
        metadata={"filename": "pattern.mp4", "path": target},
        upload_checksum=True,
        retries=0,
    )
    first_stop = (size * 2 // 5) // CHUNK * CHUNK
    uploader.upload(stop_at=first_stop)
    location = str(urlsplit(str(uploader.url)).path)
    print(f"\nreplica A (port {replica_a.port}) {location}: tuspy sent 0..{uploader.offset}")
    assert uploader.offset == first_stop

    # 2. a PATCH to replica A cut mid-body: 1 MiB declared, 300000 bytes sent, connection gone
    declared, sent = 1024 * 1024, 300_000
    with socket.create_connection(("127.0.0.1", replica_a.port)) as sock:
        sock.sendall(patch_head(replica_a.port, location, first_stop, declared))
        sock.sendall(video[first_stop : first_stop + sent])
        time.sleep(0.3)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    kept = first_stop + sent
    assert wait_until(lambda: int(head(replica_a, location).headers["upload-offset"]) == kept)
    print(f"replica A: PATCH at {first_stop} cut after {sent} of {declared} bytes: offset {kept}")
    replica_a.kill()  # the replica is gone; nothing of the upload was in it
    print(f"replica A killed (exit {replica_a.process.returncode})")

    # 3. tuspy resumes against replica B: it asks HEAD for the offset, then PATCHes the rest
    client_b = TusClient(f"{replica_b.url}/tus/", headers=auth())
    resumed = client_b.uploader(
        str(source), chunk_size=CHUNK, url=f"{replica_b.url}{location}", upload_checksum=True
    )
    print(f"replica B (port {replica_b.port}) HEAD {location}: Upload-Offset {resumed.offset}")
    assert resumed.offset == kept
    resumed.upload()
    print(f"replica B: tuspy sent {kept}..{resumed.offset} of {size}")
    assert resumed.offset == size
    stored = (root / target).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(video).hexdigest()
    print(f"object /{target}: {len(stored)} bytes, sha256 identical to the source")
    assert not (root / ".vod-uploads" / location.rsplit("/", 1)[1] / "data").exists()
    with replica_b.client() as c:
        assert c.get("/" + target).content == video  # served by the data plane at once
    completed = head(replica_b, location)
    assert (completed.status_code, completed.headers["upload-offset"]) == (200, str(size))
    assert patch(replica_b, location, size, b"").status_code == 204  # a lost answer, retried
    assert patch(replica_b, location, size, b"x").status_code == 413


def test_expect_100_continue_is_answered_once_the_patch_may_write(start_server: Any) -> None:
    server: ServerProcess = start_server(env=JWT_ENV)
    location = create(server, 5, "uploads/continued.bin")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        head_bytes = patch_head(server.port, location, 0, 5)
        sock.sendall(head_bytes.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
        assert read_head(sock).startswith(b"HTTP/1.1 100")
        sock.sendall(b"hello")
        assert status_and_offset(read_head(sock)) == (204, 5)
    assert (server.media_root / "uploads/continued.bin").read_bytes() == b"hello"


def test_a_completion_that_failed_is_retried_by_an_empty_patch(start_server: Any) -> None:
    server: ServerProcess = start_server(env=JWT_ENV)
    (server.media_root / "uploads/folder.bin").mkdir(parents=True)  # cannot be replaced
    location = create(server, 4, "uploads/folder.bin")
    blocked = patch(server, location, 0, b"abcd")
    assert (blocked.status_code, blocked.headers["upload-offset"]) == (409, "4")
    (server.media_root / "uploads/folder.bin").rmdir()
    retried = patch(server, location, 4, b"")
    assert (retried.status_code, retried.headers["upload-offset"]) == (204, "4")
    assert (server.media_root / "uploads/folder.bin").read_bytes() == b"abcd"


def check_patches_serialized(
    replica_a: ServerProcess, replica_b: ServerProcess, stored: Callable[[], bytes], settle: float
) -> None:
    """A PATCH on replica A holds the upload while its body trickles in (``settle`` s before B
    tries): B's PATCH gets 423 after the lock wait, B's retry waits and gets 409 at A's offset,
    and ``stored()`` (the completed object) holds A's bytes only."""
    body_a = bytes(range(256)) * 4096  # 1 MiB
    body_b = b"\xff" * len(body_a)
    location = create(replica_a, len(body_a), "uploads/race.bin")

    # A holds the lock while its body trickles in; B, on the other replica, waits 1 s: 423
    with socket.create_connection(("127.0.0.1", replica_a.port)) as slow:
        slow.sendall(patch_head(replica_a.port, location, 0, len(body_a)))
        slow.sendall(body_a[:1000])
        time.sleep(settle)
        started = time.monotonic()
        refused = patch(replica_b, location, 0, body_b)
        waited = time.monotonic() - started
        assert refused.status_code == 423, refused.text
        assert 0.9 <= waited < 5
        # B tries again and waits; A finishes within the wait: B then gets 409 at offset 0
        outcome: dict[str, httpx.Response] = {}
        waiter = threading.Thread(
            target=lambda: outcome.update(b=patch(replica_b, location, 0, body_b))
        )
        waiter.start()
        time.sleep(0.2)
        slow.sendall(body_a[1000:])
        status, offset = status_and_offset(read_head(slow))
        waiter.join(10)
    assert (status, offset) == (204, len(body_a))
    assert outcome["b"].status_code == 409
    assert outcome["b"].headers["upload-offset"] == str(len(body_a))
    assert stored() == body_a  # nothing of B's bytes


def test_concurrent_patches_are_serialized_across_replicas(
    start_server: Any, tmp_path: Path
) -> None:
    root = tmp_path / "media"
    replica_a: ServerProcess = start_server(media_root=root, env=JWT_ENV)
    replica_b: ServerProcess = start_server(media_root=root, env=JWT_ENV)
    check_patches_serialized(
        replica_a, replica_b, lambda: (root / "uploads/race.bin").read_bytes(), settle=0.3
    )


def test_checksums(start_server: Any, tmp_path: Path) -> None:
    server: ServerProcess = start_server(env=JWT_ENV)
    body = b"0123456789" * 1000
    location = create(server, 2 * len(body), "uploads/checked.bin")
    wrong = base64.b64encode(hashlib.sha1(b"something else").digest()).decode()
    mismatch = patch(server, location, 0, body, **{"Upload-Checksum": f"sha1 {wrong}"})
    assert mismatch.status_code == 460
    assert head(server, location).headers["upload-offset"] == "0"  # nothing kept
    unknown = patch(server, location, 0, body, **{"Upload-Checksum": f"crc32 {wrong}"})
    assert unknown.status_code == 400
    for algorithm, offset in (("md5", 0), ("sha256", len(body))):
        digest = base64.b64encode(hashlib.new(algorithm, body).digest()).decode()
        ok = patch(server, location, offset, body, **{"Upload-Checksum": f"{algorithm} {digest}"})
        assert ok.status_code == 204, ok.text
    assert (server.media_root / "uploads/checked.bin").read_bytes() == body * 2


def test_protocol_statuses(start_server: Any) -> None:
    server: ServerProcess = start_server(
        env={**JWT_ENV, "VOD_MAX_UPLOAD_BYTES": "100000", "VOD_CORS_ALLOWED_ORIGINS": "*"}
    )
    location = create(server, 1000, "uploads/statuses.bin")
    with server.client() as c:
        options = c.options("/tus/")
        assert options.status_code == 204
        assert options.headers["tus-version"] == "1.0.0"
        assert options.headers["tus-max-size"] == "100000"
        assert set(options.headers["tus-extension"].split(",")) == {
            "creation", "creation-with-upload", "termination", "expiration", "checksum"
        }  # fmt: skip
        assert "sha1" in options.headers["tus-checksum-algorithm"].split(",")
        preflight = c.options(
            location,
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PATCH"},
        )
        assert preflight.status_code == 204
        assert "PATCH" in preflight.headers["access-control-allow-methods"]
        assert "upload-offset" in preflight.headers["access-control-allow-headers"].lower()
        missing = c.head(location, headers=auth())
        assert missing.status_code == 412
        assert missing.headers["tus-version"] == "1.0.0"
        assert c.head(location, headers={**auth(), "Tus-Resumable": "0.2.2"}).status_code == 412
        headed = c.head(location, headers={**TUS, **auth(), "Origin": "https://app.example"})
        assert headed.headers["upload-length"] == "1000"
        assert headed.headers["cache-control"] == "no-store"
        assert "upload-offset" in headed.headers["access-control-expose-headers"].lower()
        assert c.head(location, headers=TUS).status_code == 401
        assert c.head("/tus/" + "0" * 32, headers={**TUS, **auth()}).status_code == 404
        too_big = c.post("/tus/", headers={**TUS, **auth(), "Upload-Length": "100001"})
        assert too_big.status_code == 413
        bad = c.post(
            "/tus/", headers={**TUS, **auth(), "Upload-Length": "1", "Upload-Metadata": "a !"}
        )
        assert bad.status_code == 400
        outside = c.post(
            "/tus/",
            headers={
                **TUS,
                **auth(),
                "Upload-Length": "1",
                "Upload-Metadata": metadata(path="../x"),
            },
        )
        assert outside.status_code == 400
    wrong_type = patch(server, location, 0, b"x", **{"Content-Type": "application/octet-stream"})
    assert wrong_type.status_code == 415
    assert patch(server, location, 0, b"x" * 10).status_code == 204
    conflict = patch(server, location, 0, b"x")
    assert (conflict.status_code, conflict.headers["upload-offset"]) == (409, "10")
    assert patch(server, location, 10, b"x" * 991).status_code == 413  # past Upload-Length
    assert head(server, location).headers["upload-offset"] == "10"
    assert not server.media_root.joinpath("uploads/statuses.bin").exists()


def test_creation_with_upload_and_upload_token(start_server: Any, tmp_path: Path) -> None:
    server: ServerProcess = start_server(env=JWT_ENV)
    (server.media_root.parent / "server0" / "keys" / KEY_ID).write_bytes(KEY)
    target = "uploads/tokened.bin"
    expires = int(time.time()) + 2  # the token outlives no more than the creation
    token = uploadtokens.sign(target, expires, KEY_ID, KEY)
    body = b"tus" * 5000
    with server.client() as c:
        created = c.post(
            "/tus/?" + urlencode(token),
            content=body[:6000],
            headers={
                **TUS,
                "Upload-Length": str(len(body)),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert created.status_code == 201, created.text
        assert created.headers["upload-offset"] == "6000"
        location = created.headers["location"]
        assert "sig=" in location  # the token travels with the upload
        time.sleep(max(0.0, expires + 1.1 - time.time()))  # now expired: creation refused,
        again = {**TUS, "Upload-Length": "1"}
        assert c.post("/tus/?" + urlencode(token), headers=again).status_code == 403
        rest = c.patch(
            location,
            content=body[6000:],
            headers={
                **TUS,
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": "6000",
            },
        )
        assert rest.status_code == 204  # but the upload it created goes on
        assert (server.media_root / target).read_bytes() == body
        other = uploadtokens.sign("uploads/other.bin", int(time.time()) + 300, KEY_ID, KEY)
        bare = location.split("?")[0]
        assert c.head(bare + "?" + urlencode(other), headers=TUS).status_code == 403
        playback = signing.sign_params("/" + target, int(time.time()) + 300, KEY_ID, KEY)
        post_with = {**TUS, "Upload-Length": "1"}
        assert (
            c.post(
                "/tus/?" + urlencode({"path": target, **playback}), headers=post_with
            ).status_code
            == 403
        )
        assert c.post("/tus/", headers=post_with).status_code == 401


def test_termination_removes_everything(start_server: Any) -> None:
    server: ServerProcess = start_server(env=JWT_ENV)
    location = create(server, 5000, "uploads/terminated.bin")
    assert patch(server, location, 0, b"y" * 2000).status_code == 204
    with server.client() as c:
        assert c.delete(location, headers={**TUS, **auth()}).status_code == 204
        assert c.delete(location, headers={**TUS, **auth()}).status_code == 404
    assert head(server, location).status_code == 404
    assert patch(server, location, 2000, b"y").status_code == 404
    assert no_upload_state(server.media_root)
    assert not (server.media_root / "uploads/terminated.bin").exists()


def test_expired_upload_is_cleaned_up(start_server: Any) -> None:
    server: ServerProcess = start_server(
        env={**JWT_ENV, "VOD_TUS_EXPIRY_SECONDS": "1", "VOD_TUS_CLEANUP_SECONDS": "1"}
    )
    location = create(server, 5000, "uploads/abandoned.bin")
    written = patch(server, location, 0, b"z" * 1000)
    assert written.status_code == 204
    assert "upload-expires" in written.headers
    assert wait_until(lambda: no_upload_state(server.media_root), timeout=10)
    assert head(server, location).status_code in (404, 410)
    assert not (server.media_root / "uploads/abandoned.bin").exists()
    assert server.wait_for_event("removed expired uploads")["count"] == 1


def test_uploads_left_expired_are_removed_when_a_replica_starts(
    start_server: Any, tmp_path: Path
) -> None:
    root = tmp_path / "media"
    root.mkdir()
    store = FileStore(str(root))
    stale = UploadInfo(new_id(), 10, "uploads/stale.bin", created=time.time() - 7200)
    asyncio.run(store.create(stale))
    live = UploadInfo(new_id(), 10, "uploads/live.bin", created=time.time())
    asyncio.run(store.create(live))
    old = time.time() - 7200
    for name in ("data", "info.json"):
        os.utime(root / ".vod-uploads" / stale.id / name, (old, old))
    server: ServerProcess = start_server(
        media_root=root, env={**JWT_ENV, "VOD_TUS_EXPIRY_SECONDS": "3600"}
    )
    assert server.wait_for_event("removed expired uploads")["count"] == 1
    assert asyncio.run(store.load(stale.id)) is None
    assert asyncio.run(store.load(live.id)) is not None
