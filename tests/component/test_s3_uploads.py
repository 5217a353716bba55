"""PUT/DELETE into the S3 origin (VOD_ORIGIN=s3) against a real SeaweedFS: streamed, single PUT
or multipart, aborted on every failure (no object, no multipart upload left), errors as JSON."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from localcluster.s3server import S3Server
from tests.component.conftest import (
    JWT_SECRET,
    ServerProcess,
    make_token,
    raw_response_head,
    status_of,
)
from vod_stream.storage import S3_PART_BYTES

pytestmark = pytest.mark.component

PREFIX = "media/"
MiB = 1024 * 1024


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token()}"}


def s3_env(s3: S3Server, bucket: str, folder: Path, **extra: str) -> dict[str, str]:
    key_file, secret_file = s3.write_credentials(folder)
    return {
        "VOD_ORIGIN": "s3",
        "VOD_S3_ENDPOINT": s3.endpoint,
        "VOD_S3_BUCKET": bucket,
        "VOD_S3_PREFIX": PREFIX,
        "VOD_S3_REGION": s3.region,
        "VOD_S3_ACCESS_KEY_ID_FILE": str(key_file),
        "VOD_S3_SECRET_ACCESS_KEY_FILE": str(secret_file),
        "VOD_JWT_SECRET": JWT_SECRET,
        **extra,
    }


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.make_bucket(f"up-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def s3_stream(
    start_server: Callable[..., ServerProcess], s3_server: S3Server, bucket: str, tmp_path: Path
) -> Callable[..., ServerProcess]:
    """Start vod-stream on the S3 origin (``bucket``, prefix ``media/``); extra VOD_* as kwargs."""

    def start(**extra: str) -> ServerProcess:
        return start_server(env=s3_env(s3_server, bucket, tmp_path / "creds", **extra))

    return start


def ranged_get(s3: S3Server, bucket: str, key: str, first: int, last: int) -> bytes:
    """A ranged GET signed by the test's own S3 client (not the code under test)."""
    resp = s3.request("GET", f"/{bucket}/{key}", headers={"Range": f"bytes={first}-{last}"})
    assert resp.status == 206, resp.body[:300]
    return resp.body


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes that differ at every offset of interest (no repeated blocks)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 128
        counter += 1
    return bytes(out[:size])


def nothing_left(s3: S3Server, bucket: str, key: str) -> bool:
    return key not in s3.list_keys(bucket, PREFIX) and not s3.list_multipart_uploads(bucket)


def test_small_and_multipart_bodies_are_stored_byte_identical(
    s3_stream, s3_server: S3Server, bucket: str
) -> None:
    server: ServerProcess = s3_stream()
    small, large = pattern(1000, 1), pattern(2 * S3_PART_BYTES + 12345, 2)
    with server.client() as c:
        created = c.put("/a/small.mp4", content=small, headers=auth())
        assert created.status_code == 201, created.text
        assert created.json()["size"] == len(small)
        assert created.headers["location"] == "/a/small.mp4"
        big = c.put("/a/large.mp4", content=large, headers=auth())
        assert big.status_code == 201, big.text
    assert ranged_get(s3_server, bucket, "media/a/small.mp4", 0, 999) == small
    assert ranged_get(s3_server, bucket, "media/a/small.mp4", 10, 19) == small[10:20]
    for first in (0, S3_PART_BYTES - 5, 2 * S3_PART_BYTES, len(large) - 100):
        last = min(first + 65535, len(large) - 1)
        assert (
            ranged_get(s3_server, bucket, "media/a/large.mp4", first, last)
            == large[first : last + 1]
        )
    head = s3_server.request("HEAD", f"/{bucket}/media/a/large.mp4")
    assert int(head.headers["content-length"]) == len(large)
    assert head.headers["etag"].strip('"').endswith("-3")  # three parts: a multipart upload
    assert head.headers["etag"] == big.json()["etag"]
    assert not s3_server.list_multipart_uploads(bucket)


def test_replace_is_200_create_is_201_and_delete(s3_stream, s3_server: S3Server, bucket) -> None:
    server: ServerProcess = s3_stream()
    with server.client() as c:
        assert c.put("/clip.mp4", content=b"version one", headers=auth()).status_code == 201
        second = c.put("/clip.mp4", content=b"v2", headers=auth())
        assert second.status_code == 200
        assert second.json()["size"] == 2
        assert ranged_get(s3_server, bucket, "media/clip.mp4", 0, 1) == b"v2"
        assert c.delete("/clip.mp4", headers=auth()).status_code == 204
        assert "media/clip.mp4" not in s3_server.list_keys(bucket)
        gone = c.delete("/clip.mp4", headers=auth())
        assert gone.status_code == 404
        assert gone.json()["error"]["status"] == 404
        assert c.put("/clip.mp4", content=b"x").status_code in (401, 403)  # no JWT
        assert c.put("/.hidden", content=b"x", headers=auth()).status_code == 404


def test_over_the_limit_is_413_and_leaves_nothing(s3_stream, s3_server: S3Server, bucket) -> None:
    limit = S3_PART_BYTES + MiB
    server: ServerProcess = s3_stream(VOD_MAX_UPLOAD_BYTES=str(limit))
    declared = raw_response_head(
        server.port,
        f"PUT /big.mp4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {make_token()}\r\n"
        f"Content-Length: {limit + 1}\r\n\r\n".encode(),
    )
    assert status_of(declared) == 413

    # No Content-Length: the limit is found while counting, after the first part was uploaded.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            f"PUT /big.mp4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {make_token()}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"%x\r\n" % MiB + b"y" * MiB + b"\r\n"
        with contextlib.suppress(OSError):  # the server may close before the last chunk
            for _ in range(limit // MiB + 2):
                sock.sendall(chunk)
        try:
            head = sock.recv(65536)
        except ConnectionResetError:  # the unread rest of the body made the close a reset
            head = b""
    assert head == b"" or head.split(b" ", 2)[1] == b"413", head[:200]
    assert server.wait_for_event("upload failed")["reason"] == "too_large"
    assert nothing_left(s3_server, bucket, "media/big.mp4")


def test_a_client_gone_mid_body_leaves_no_object_and_no_multipart_upload(
    s3_stream, s3_server: S3Server, bucket
) -> None:
    server: ServerProcess = s3_stream()
    declared = 4 * S3_PART_BYTES
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            f"PUT /cut.mp4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {make_token()}\r\n"
            f"Content-Length: {declared}\r\n\r\n".encode()
        )
        block = pattern(MiB, 3)
        while sent < 2 * S3_PART_BYTES + MiB:  # two parts uploaded, a third begun
            sock.sendall(block)
            sent += len(block)
        deadline = time.monotonic() + 15  # the parts reach S3: the abort must undo them
        while s3_server.list_multipart_uploads(bucket) != ["media/cut.mp4"]:
            assert time.monotonic() < deadline, "no multipart upload was started"
            time.sleep(0.1)
    failed = server.wait_for_event("upload failed", timeout=20)
    assert failed["reason"] == "disconnected"
    deadline = time.monotonic() + 10
    while not nothing_left(s3_server, bucket, "media/cut.mp4") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert nothing_left(s3_server, bucket, "media/cut.mp4")


def test_bad_credentials_are_a_502_json_error_not_a_crash(
    start_server, s3_server: S3Server, bucket, tmp_path: Path
) -> None:
    env = s3_env(s3_server, bucket, tmp_path / "creds")
    Path(env["VOD_S3_SECRET_ACCESS_KEY_FILE"]).write_text("not-the-secret\n")
    server: ServerProcess = start_server(env=env)
    with server.client() as c:
        refused = c.put("/clip.mp4", content=b"data", headers=auth())
        assert refused.status_code == 502
        error = refused.json()["error"]
        assert error["status"] == 502
        assert "S3 origin" in error["message"]
        assert c.delete("/clip.mp4", headers=auth()).status_code == 502
        assert c.get("/ping").status_code == 200  # still serving
    assert s3_server.list_keys(bucket) == []


def test_an_unreachable_s3_endpoint_answers_502_quickly(start_server, s3_server, tmp_path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    env = s3_env(s3_server, "nowhere", tmp_path / "creds")
    env["VOD_S3_ENDPOINT"] = f"http://127.0.0.1:{closed_port}"
    env["VOD_ORIGIN_TIMEOUT_SECONDS"] = "2"
    server: ServerProcess = start_server(env=env)
    started = time.monotonic()
    with server.client() as c:
        answer = c.put("/clip.mp4", content=b"data", headers=auth())
    assert answer.status_code in (502, 504)
    assert answer.json()["error"]["status"] == answer.status_code
    assert time.monotonic() - started < 10


def test_https_endpoint_is_trusted_through_the_ca_file_only(
    start_server, s3_server: S3Server, bucket, tmp_path: Path
) -> None:
    env = s3_env(s3_server, bucket, tmp_path / "creds")
    env["VOD_S3_ENDPOINT"] = s3_server.https_endpoint
    untrusted: ServerProcess = start_server(env=env)
    with untrusted.client() as c:
        refused = c.put("/tls.mp4", content=b"over tls", headers=auth())
    assert refused.status_code == 502, refused.text
    assert s3_server.ca_file is not None
    trusted: ServerProcess = start_server(env={**env, "VOD_S3_CA_FILE": str(s3_server.ca_file)})
    with trusted.client() as c:
        assert c.put("/tls.mp4", content=b"over tls", headers=auth()).status_code == 201
    assert ranged_get(s3_server, bucket, "media/tls.mp4", 0, 7) == b"over tls"
    # reads go through the data plane's own client: the same CA file, the same refusal without it
    with trusted.client() as c:
        part = c.get("/tls.mp4", headers={"Range": "bytes=5-7"})
        assert part.status_code == 206, part.text
        assert part.content == b"tls"
    with untrusted.client() as c:
        unverified = c.get("/tls.mp4")
        assert unverified.status_code == 502, unverified.text
        assert unverified.json()["error"]["status"] == 502


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"VOD_S3_BUCKET": ""}, "VOD_S3_BUCKET"),
        ({"VOD_S3_ENDPOINT": "ftp://x"}, "VOD_S3_ENDPOINT"),
        ({"VOD_S3_ACCESS_KEY_ID_FILE": "/nonexistent/key"}, "VOD_S3_ACCESS_KEY_ID_FILE"),
        ({"VOD_S3_CA_FILE": "/nonexistent/ca.pem"}, "VOD_S3_CA_FILE"),
    ],
)
def test_settings_errors_name_the_setting(
    s3_server: S3Server, tmp_path: Path, settings: dict[str, str], named: str
) -> None:
    (tmp_path / "media").mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "VOD_MEDIA_ROOT": str(tmp_path / "media"),
        "VOD_PORT": "0",
        "VOD_HOST": "127.0.0.1",
        "VOD_METRICS_DIR": str(tmp_path / "metrics"),
        **s3_env(s3_server, "b", tmp_path / "creds"),
        **settings,
    }
    done = subprocess.run(
        [sys.executable, "-m", "vod_stream"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert named in done.stdout + done.stderr
