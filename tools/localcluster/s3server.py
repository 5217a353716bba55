"""A real S3-compatible server for tests and benchmarks: SeaweedFS's `weed server -filer -s3`.

One process (master, volume server, filer and S3 gateway) bound to 127.0.0.1 on ephemeral
ports, its data in a given folder, static credentials (one admin identity; an anonymous
identity with Read on the `public_buckets`), small volumes. `running_s3_server(folder)` starts
it, waits until it answers and stops it (no process left behind). The admin side (`request`,
`make_bucket`, `list_multipart_uploads`, `list_keys`) signs its own S3 calls (sigv4.py): it is
what a test checks with, beside the client the code under test uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from localcluster import binaries
from localcluster.sigv4 import sign

REGION = "us-east-1"
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
#: Volumes stay small and few: a test run writes megabytes, a benchmark a few hundred.
VOLUME_SIZE_LIMIT_MB = 64
VOLUME_MAX = 100
START_SECONDS = 60.0
STOP_SECONDS = 15.0
#: One volume per new bucket (SeaweedFS grows 7 at once by default: a test's buckets would
#: exhaust `-volume.max`).
MASTER_TOML = "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 2\ncopy_3 = 3\ncopy_other = 1\n"
#: Which ports `weed server` gets: http and gRPC of each component.
PORT_NAMES = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


class S3ServerError(RuntimeError):
    """The server did not start, or an admin call failed (the message says which)."""


@dataclass(frozen=True)
class S3Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


def free_ports(count: int) -> list[int]:
    """`count` distinct ports the kernel had free on 127.0.0.1 a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def identities(
    access_key: str, secret_key: str, public_buckets: Sequence[str]
) -> dict[str, object]:
    """SeaweedFS's `-s3.config`: an admin identity and an anonymous reader of public buckets."""
    admin = {
        "name": "admin",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    anonymous = {"name": "anonymous", "actions": [f"Read:{b}" for b in public_buckets]}
    return {"identities": [admin, anonymous]}


def weed_command(weed: Path, folder: Path, ports: Mapping[str, int]) -> list[str]:
    """The `weed server` command line: loopback only, small volumes, no extra services."""
    port_flags = [f"-{name}={ports[name]}" for name in PORT_NAMES]
    return [
        str(weed),
        f"-config_dir={folder}",
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={folder / 'data'}",
        "-filer",
        "-s3",
        f"-s3.config={folder / 's3.json'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.autoCreateBucket=false",  # as S3 itself: a PUT into a missing bucket is a 404
        f"-filer.localSocket={folder / 'filer.sock'}",
        f"-s3.localSocket={folder / 's3.sock'}",
        f"-volume.max={VOLUME_MAX}",
        f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
        "-master.telemetry=false",
        "-volume.preStopSeconds=0",
        *port_flags,
    ]


@dataclass
class S3Server:
    """A running SeaweedFS with its S3 endpoint, credentials and admin calls."""

    endpoint: str
    region: str
    access_key: str
    secret_key: str
    folder: Path
    process: subprocess.Popen[bytes]
    ports: dict[str, int] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        signed: bool = True,
    ) -> S3Response:
        """One S3 call (signed with the admin identity unless `signed` is False)."""
        import hashlib
        from urllib.parse import quote, urlencode

        query = dict(query or {})
        url = self.endpoint + quote(path, safe="/-_.~")
        all_headers = dict(headers or {})
        if signed:
            all_headers = sign(
                method,
                url,
                query,
                all_headers,
                access_key=self.access_key,
                secret_key=self.secret_key,
                region=self.region,
                payload_sha256=hashlib.sha256(body).hexdigest(),
            )
        full_url = url + ("?" + urlencode(query) if query else "")
        req = urllib.request.Request(
            full_url, data=body or None, method=method, headers=all_headers
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return S3Response(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            return S3Response(err.code, dict(err.headers), err.read())

    def make_bucket(self, name: str, public_read: bool = False) -> str:
        """Create bucket `name` (anyone may GET its objects when `public_read`); its name."""
        headers = {"x-amz-acl": "public-read"} if public_read else {}
        deadline = time.monotonic() + 30
        while True:
            resp = self.request("PUT", f"/{name}", headers=headers)
            if resp.status == 200 or b"BucketAlreadyOwnedByYou" in resp.body:
                return name
            if time.monotonic() > deadline:
                raise S3ServerError(f"CreateBucket {name}: {resp.status} {resp.body[:500]!r}")
            time.sleep(0.2)

    def write_credentials(self, folder: Path) -> tuple[Path, Path]:
        """Files for VOD_S3_ACCESS_KEY_ID_FILE and VOD_S3_SECRET_ACCESS_KEY_FILE."""
        folder.mkdir(parents=True, exist_ok=True)
        key_file, secret_file = folder / "access_key_id", folder / "secret_access_key"
        key_file.write_text(self.access_key + "\n")
        secret_file.write_text(self.secret_key + "\n")
        return key_file, secret_file

    def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys of the multipart uploads started and neither completed nor aborted."""
        resp = self._ok("GET", f"/{bucket}", {"uploads": "", "prefix": prefix})
        root = ET.fromstring(resp.body)
        return [el.findtext(f"{S3_NS}Key") or "" for el in root.iter(f"{S3_NS}Upload")]

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Object keys under `prefix` (first 1000)."""
        resp = self._ok("GET", f"/{bucket}", {"list-type": "2", "prefix": prefix})
        root = ET.fromstring(resp.body)
        return [el.findtext(f"{S3_NS}Key") or "" for el in root.iter(f"{S3_NS}Contents")]

    def _ok(self, method: str, path: str, query: Mapping[str, str]) -> S3Response:
        resp = self.request(method, path, query)
        if resp.status != 200:
            raise S3ServerError(f"{method} {path} {dict(query)}: {resp.status} {resp.body[:500]!r}")
        return resp

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log (for error messages)."""
        try:
            text = (self.folder / "weed.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_SECONDS; removes the gRPC sockets it registered."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_SECONDS)
        for name in ("master", "volume", "filer", "s3"):
            port = self.ports.get(f"{name}.port.grpc")
            with contextlib.suppress(OSError):
                os.unlink(f"/tmp/seaweedfs-{name}-grpc-{port}.sock")


def _master_has_volume_server(server: S3Server) -> bool:
    url = f"http://127.0.0.1:{server.ports['master.port']}/dir/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            status = json.load(resp)
    except (OSError, ValueError):
        return False
    return int(status.get("Topology", {}).get("Max", 0)) > 0


def _wait_ready(server: S3Server, timeout: float) -> None:
    """Until ListBuckets answers 200 and the master knows a volume server with free slots."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise S3ServerError(
                f"weed exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            listed = server.request("GET", "/").status == 200
        except OSError:
            listed = False
        if listed and _master_has_volume_server(server):
            return
        time.sleep(0.2)
    raise S3ServerError(f"weed did not answer within {timeout:.0f} s:\n{server.log_tail()}")


def start_s3_server(
    folder: Path,
    buckets: Sequence[str] = (),
    public_buckets: Sequence[str] = (),
    weed: Path | None = None,
    timeout: float = START_SECONDS,
) -> S3Server:
    """Start SeaweedFS in `folder` and create `buckets` and `public_buckets` (anonymous Read).

    Raises FileNotFoundError naming `make cluster-build` when weed is not built.
    """
    weed = weed or binaries.require("weed")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    (folder / "master.toml").write_text(MASTER_TOML)
    access_key, secret_key = "vod" + secrets.token_hex(8), secrets.token_hex(20)
    (folder / "s3.json").write_text(
        json.dumps(identities(access_key, secret_key, public_buckets), indent=1)
    )
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
    with (folder / "weed.log").open("ab") as log:
        process = subprocess.Popen(
            weed_command(weed, folder, ports),
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the test terminal reaches it through stop()
        )
    server = S3Server(
        endpoint=f"http://127.0.0.1:{ports['s3.port']}",
        region=REGION,
        access_key=access_key,
        secret_key=secret_key,
        folder=folder,
        process=process,
        ports=ports,
    )
    try:
        _wait_ready(server, timeout)
        for bucket in buckets:
            server.make_bucket(bucket)
        for bucket in public_buckets:
            server.make_bucket(bucket, public_read=True)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def running_s3_server(folder: Path, **kwargs: object) -> Iterator[S3Server]:
    """`start_s3_server(folder, ...)`, stopped on exit."""
    server = start_s3_server(folder, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
