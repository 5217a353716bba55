"""Resumable uploads (tus 1.0.0) on the S3 origin: real vod-stream processes sharing one bucket
and prefix of a real SeaweedFS. The upload's state is in the bucket (``.vod-uploads/<id>/``),
its bytes a multipart upload of the target key; after completion, termination or expiry the test
lists the bucket's objects AND its in-progress multipart uploads.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tusclient.client import TusClient

from localcluster.s3server import S3Server
from tests.component.conftest import ServerProcess
from tests.component.test_s3_uploads import PREFIX, pattern, s3_env
from tests.component.test_tus import (
    TUS,
    auth,
    check_patches_serialized,
    create,
    head,
    patch,
    patch_head,
    wait_until,
)
from vod_stream.tuss3 import PART_BYTES

pytestmark = pytest.mark.component

UPLOADS = f"{PREFIX}.vod-uploads/"
LOCK_WAIT = {"VOD_TUS_LOCK_WAIT_SECONDS": "1"}


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.make_bucket(f"tus-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def s3_replica(
    start_server: Callable[..., ServerProcess], s3_server: S3Server, bucket: str, tmp_path: Path
) -> Callable[..., ServerProcess]:
    """Start a vod-stream replica on the S3 origin (all share ``bucket`` and ``media/``)."""

    def start(**extra: str) -> ServerProcess:
        env = s3_env(s3_server, bucket, tmp_path / "creds", **{**LOCK_WAIT, **extra})
        return start_server(env=env)

    return start


def stored(s3: S3Server, bucket: str, target: str) -> bytes:
    """The object as the bucket has it (read by the test's own S3 client)."""
    response = s3.request("GET", f"/{bucket}/{PREFIX}{target}")
    assert response.status == 200, response.body[:300]
    return response.body


def upload_objects(s3: S3Server, bucket: str) -> list[str]:
    return s3.list_keys(bucket, UPLOADS)


def upload_id(location: str) -> str:
    return urlsplit(location).path.rsplit("/", 1)[1]


def sha1_header(body: bytes) -> dict[str, str]:
    return {"Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(body).digest()).decode()}


def test_cut_upload_resumes_on_another_replica_byte_identical(
    s3_replica: Any, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    replica_a: ServerProcess = s3_replica()
    replica_b: ServerProcess = s3_replica()
    data = pattern(2 * PART_BYTES + 3 * 1024 * 1024 + 12345, 7)  # 2 whole parts and a tail
    source = tmp_path / "generated.bin"
    source.write_bytes(data)
    size, chunk = len(data), 1024 * 1024
    target = "uploads/resumed/generated.bin"

    # 1. tuspy on replica A: chunks of 1 MiB with sha1 checksums, up to about 40 %
    uploader = TusClient(f"{replica_a.url}/tus/", headers=auth()).uploader(
        str(source),
        chunk_size=chunk,
        metadata={"filename": "generated.bin", "path": target},
        upload_checksum=True,
        retries=0,
    )
    first_stop = (size * 2 // 5) // chunk * chunk
    uploader.upload(stop_at=first_stop)
    location = str(urlsplit(str(uploader.url)).path)
    print(f"\nreplica A (port {replica_a.port}) {location}: tuspy sent 0..{uploader.offset}")
    assert uploader.offset == first_stop
    assert s3_server.list_multipart_uploads(bucket) == [f"{PREFIX}{target}"]

    # 2. a PATCH to replica A cut mid-body: 3 MiB declared, 1.5 MiB sent, connection gone
    declared, sent = 3 * 1024 * 1024, 1536 * 1024
    with socket.create_connection(("127.0.0.1", replica_a.port)) as sock:
        sock.sendall(patch_head(replica_a.port, location, first_stop, declared))
        sock.sendall(data[first_stop : first_stop + sent])
        time.sleep(0.5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    kept = first_stop + sent
    assert wait_until(lambda: int(head(replica_a, location).headers["upload-offset"]) == kept)
    print(f"replica A: PATCH at {first_stop} cut after {sent} of {declared} bytes: offset {kept}")
    replica_a.kill()
    print(f"replica A killed (exit {replica_a.process.returncode})")

    # 3. tuspy resumes against replica B: HEAD for the offset, then PATCHes of the rest
    resumed = TusClient(f"{replica_b.url}/tus/", headers=auth()).uploader(
        str(source), chunk_size=chunk, url=f"{replica_b.url}{location}", upload_checksum=True
    )
    print(f"replica B (port {replica_b.port}) HEAD {location}: Upload-Offset {resumed.offset}")
    assert resumed.offset == kept
    resumed.upload()
    assert resumed.offset == size
    in_bucket = stored(s3_server, bucket, target)
    assert hashlib.sha256(in_bucket).hexdigest() == hashlib.sha256(data).hexdigest()
    print(f"object {PREFIX}{target} in the bucket: {len(in_bucket)} bytes, sha256 identical")
    assert not s3_server.list_multipart_uploads(bucket)
    assert upload_objects(s3_server, bucket) == [f"{UPLOADS}{upload_id(location)}/info.json"]
    with replica_b.client() as c:
        assert c.get("/" + target).content == data  # served by the data plane
        marker = f"/.vod-uploads/{upload_id(location)}/info.json"
        assert c.get(marker).status_code == 404  # the upload's state is never served
    completed = head(replica_b, location)
    assert (completed.status_code, completed.headers["upload-offset"]) == (200, str(size))
    assert patch(replica_b, location, size, b"").status_code == 204  # a lost answer, retried
    assert patch(replica_b, location, size, b"x").status_code == 413


def test_a_wrong_checksum_is_460_and_commits_nothing(
    s3_replica: Any, s3_server: S3Server, bucket: str
) -> None:
    server: ServerProcess = s3_replica()
    body = pattern(PART_BYTES + 4321, 3)  # a whole part is uploaded before the digest is known
    location = create(server, len(body), "uploads/checked.bin")
    wrong = {"Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(b"x").digest()).decode()}
    mismatch = patch(server, location, 0, body, **wrong)
    assert mismatch.status_code == 460, mismatch.text
    assert head(server, location).headers["upload-offset"] == "0"
    ok = patch(server, location, 0, body, **sha1_header(body))
    assert (ok.status_code, ok.headers["upload-offset"]) == (204, str(len(body)))
    assert stored(s3_server, bucket, "uploads/checked.bin") == body  # part 1 was replaced
    assert not s3_server.list_multipart_uploads(bucket)


def test_concurrent_patches_are_serialized_across_replicas(
    s3_replica: Any, s3_server: S3Server, bucket: str
) -> None:
    replica_a: ServerProcess = s3_replica()
    replica_b: ServerProcess = s3_replica()
    check_patches_serialized(
        replica_a, replica_b, lambda: stored(s3_server, bucket, "uploads/race.bin"), settle=0.5
    )


def test_an_expired_upload_leaves_nothing(
    s3_replica: Any, s3_server: S3Server, bucket: str
) -> None:
    server: ServerProcess = s3_replica(VOD_TUS_EXPIRY_SECONDS="1", VOD_TUS_CLEANUP_SECONDS="1")
    location = create(server, 3 * PART_BYTES, "uploads/abandoned.bin")
    written = patch(server, location, 0, pattern(PART_BYTES + 1000, 4))  # a part and a tail
    assert written.status_code == 204, written.text
    assert "upload-expires" in written.headers
    assert len(upload_objects(s3_server, bucket)) == 2  # info.json and the tail
    assert s3_server.list_multipart_uploads(bucket) == [f"{PREFIX}uploads/abandoned.bin"]

    def nothing_left() -> bool:
        return not upload_objects(s3_server, bucket) and not s3_server.list_multipart_uploads(
            bucket
        )

    assert wait_until(nothing_left, timeout=15)
    assert head(server, location).status_code in (404, 410)
    assert s3_server.list_keys(bucket) == []
    assert server.wait_for_event("removed expired uploads")["count"] == 1


def test_termination_removes_everything(s3_replica: Any, s3_server: S3Server, bucket: str) -> None:
    server: ServerProcess = s3_replica()
    location = create(server, 3 * PART_BYTES, "uploads/terminated.bin")
    assert patch(server, location, 0, pattern(PART_BYTES + 2000, 5)).status_code == 204
    with server.client() as c:
        assert c.delete(location, headers={**TUS, **auth()}).status_code == 204
        assert c.delete(location, headers={**TUS, **auth()}).status_code == 404
    assert head(server, location).status_code == 404
    assert patch(server, location, PART_BYTES + 2000, b"y").status_code == 404
    assert s3_server.list_keys(bucket) == []
    assert not s3_server.list_multipart_uploads(bucket)


def test_creation_with_upload_small_and_zero_length(
    s3_replica: Any, s3_server: S3Server, bucket: str
) -> None:
    server: ServerProcess = s3_replica()
    body = pattern(300_000, 6)  # smaller than a part: one PUT at completion
    with server.client() as c:
        created = c.post(
            "/tus/",
            content=body,
            headers={
                **TUS,
                **auth(),
                "Upload-Length": str(len(body)),
                "Upload-Metadata": "path " + base64.b64encode(b"uploads/small.bin").decode(),
                "Content-Type": "application/offset+octet-stream",
                **sha1_header(body),
            },
        )
        assert created.status_code == 201, created.text
        assert created.headers["upload-offset"] == str(len(body))
        empty = c.post(
            "/tus/",
            headers={
                **TUS,
                **auth(),
                "Upload-Length": "0",
                "Upload-Metadata": "path " + base64.b64encode(b"uploads/empty.bin").decode(),
            },
        )
        assert empty.status_code == 201, empty.text
        assert empty.headers["upload-offset"] == "0"
    assert stored(s3_server, bucket, "uploads/small.bin") == body
    assert stored(s3_server, bucket, "uploads/empty.bin") == b""
    assert not s3_server.list_multipart_uploads(bucket)
    markers = {f"{UPLOADS}{upload_id(r.headers['location'])}/info.json" for r in (created, empty)}
    assert set(upload_objects(s3_server, bucket)) == markers  # only the completed markers


def test_an_upload_ending_in_a_tail_completes_across_patches(
    s3_replica: Any, s3_server: S3Server, bucket: str
) -> None:
    server: ServerProcess = s3_replica()
    body = pattern(PART_BYTES + 777_777, 8)
    location = create(server, len(body), "uploads/tailed.bin")
    cuts = [0, 1_000_000, 1_000_001, PART_BYTES + 5, len(body)]  # tails prepended each time
    for start, end in itertools.pairwise(cuts):
        answer = patch(server, location, start, body[start:end])
        assert (answer.status_code, answer.headers["upload-offset"]) == (204, str(end))
    assert stored(s3_server, bucket, "uploads/tailed.bin") == body
    assert not s3_server.list_multipart_uploads(bucket)


def test_the_read_only_http_origin_refuses_tus(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(env={"VOD_ORIGIN": "http", "VOD_HTTP_ORIGIN_URL": "http://127.0.0.1:9/"})
    with server.client() as c:
        refused = c.post("/tus/", headers={**TUS, **auth(), "Upload-Length": "1"})
    assert refused.status_code == 405
    assert "read-only" in refused.json()["error"]["message"]


def test_the_lock_of_a_crashed_replica_is_taken_over_after_its_lease(
    s3_replica: Any, s3_server: S3Server, bucket: str
) -> None:
    lease = {"VOD_TUS_LOCK_LEASE_SECONDS": "2"}
    replica_a: ServerProcess = s3_replica(**lease)
    replica_b: ServerProcess = s3_replica(**lease)
    body = pattern(200_000, 9)
    location = create(replica_a, len(body), "uploads/orphaned-lock.bin")
    with socket.create_connection(("127.0.0.1", replica_a.port)) as slow:
        slow.sendall(patch_head(replica_a.port, location, 0, len(body)))
        slow.sendall(body[:1000])
        time.sleep(1.5)  # A holds the lock and has renewed its lease
        replica_a.kill()  # the lock object stays behind in the bucket
    killed = time.monotonic()
    lock = f"{UPLOADS}{upload_id(location)}/lock"
    assert lock in upload_objects(s3_server, bucket)
    assert patch(replica_b, location, 0, body).status_code == 423  # the lease is not over
    answers = []
    while time.monotonic() - killed < 10:
        answer = patch(replica_b, location, 0, body)
        answers.append(answer.status_code)
        if answer.status_code != 423:
            break
    print(f"\nafter the holder was killed, replica B got {answers} within the lease and after")
    assert answers[-1] == 204, answers
    assert time.monotonic() - killed >= 1.0
    assert stored(s3_server, bucket, "uploads/orphaned-lock.bin") == body
    assert lock not in upload_objects(s3_server, bucket)
