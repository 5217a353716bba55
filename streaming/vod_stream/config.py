"""Settings: ``VOD_*`` environment variables, optionally preceded by a ``KEY=VALUE`` file.

Every setting is declared once in ``SPECS`` (name, default, meaning): ``vod-stream serve --help``
and the documentation's settings page (docs/streaming-settings.md, written by ``make reference``)
are generated from it, and a unit test fails when that page is stale.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

PREFIX = "VOD_"


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names it."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return number


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"expected an integer >= 0, got {value!r}")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"expected a port 0-65535, got {value!r}")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ValueError(f"expected seconds >= 0, got {value!r}")
    return number


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _optional(value: str) -> str | None:
    return value or None


def _optional_path(value: str) -> Path | None:
    return Path(value) if value else None


def _origin(value: str) -> str:
    kind = value.strip().lower()
    if kind not in ("file", "s3", "http"):
        raise ValueError(f"expected file, s3 or http, got {value!r}")
    return kind


def _url(value: str) -> str | None:
    url = value.strip()
    if url and not url.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return url or None


def _level(value: str) -> str:
    level = value.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"expected debug, info, warning or error, got {value!r}")
    return level


@dataclass(frozen=True)
class Spec:
    name: str  # without the VOD_ prefix
    default: str
    parse: Callable[[str], Any]
    meaning: str


def flag_of(spec: Spec) -> str:
    """The ``vod-stream serve`` flag of a setting: ``MAX_RANGES`` is ``--max-ranges``."""
    return "--" + spec.name.lower().replace("_", "-")


SPECS: tuple[Spec, ...] = (
    Spec("CONFIG_FILE", "", _optional_path, "optional KEY=VALUE file read before the environment"),
    Spec("HOST", "0.0.0.0", str, "bind address"),
    Spec(
        "PORT",
        "8080",
        _port,
        "HTTP port for media, /ping, /healthz, /readyz, /metrics (0 = any free port, logged)",
    ),
    Spec(
        "WORKERS",
        "0",
        int,
        "data plane worker threads; 0 = the CPUs available (affinity, capped by the cgroup CPU "
        "limit)",
    ),
    Spec(
        "MEDIA_ROOT",
        "/media",
        Path,
        "the origin folder that is served; uploads are staged in `<root>/.vod-tmp/`",
    ),
    Spec(
        "ORIGIN",
        "file",
        _origin,
        "where media is read from: `file` (`VOD_MEDIA_ROOT`), `s3` or `http`",
    ),
    Spec(
        "S3_ENDPOINT",
        "",
        _url,
        "S3-compatible endpoint URL, e.g. `http://seaweedfs:8333` (required for `s3`)",
    ),
    Spec("S3_BUCKET", "", _optional, "bucket (required for `s3`)"),
    Spec("S3_PREFIX", "", str, "key prefix inside the bucket, e.g. `media/`"),
    Spec("S3_REGION", "us-east-1", str, "region used for request signing"),
    Spec("S3_PATH_STYLE", "true", _bool, "path-style requests (`false`: virtual-hosted style)"),
    Spec(
        "S3_ACCESS_KEY_ID_FILE",
        "",
        _optional_path,
        "file holding the access key id (unset with the next: anonymous requests)",
    ),
    Spec("S3_SECRET_ACCESS_KEY_FILE", "", _optional_path, "file holding the secret access key"),
    Spec("S3_CA_FILE", "", _optional_path, "PEM CA bundle trusted for the S3 endpoint"),
    Spec(
        "HTTP_ORIGIN_URL",
        "",
        _url,
        "base URL of an HTTP(S) origin that answers Range (required for `http`)",
    ),
    Spec("HTTP_ORIGIN_CA_FILE", "", _optional_path, "PEM CA bundle trusted for the HTTP origin"),
    Spec(
        "ORIGIN_CONNECT_TIMEOUT_SECONDS",
        "2",
        _seconds,
        "time to connect to the origin (then 502)",
    ),
    Spec("ORIGIN_TIMEOUT_SECONDS", "10", _seconds, "longest wait for origin bytes (then 504)"),
    Spec(
        "ORIGIN_STAT_TTL_SECONDS",
        "5",
        _seconds,
        "an object's size, ETag and Last-Modified are reused this long",
    ),
    Spec("CACHE_DIR", "", _optional_path, "slice cache folder (unset: no cache)"),
    Spec("CACHE_MAX_BYTES", "1073741824", _positive_int, "the slice cache's size bound"),
    Spec("CACHE_SLICE_BYTES", "1048576", _positive_int, "slice size of the cache"),
    Spec(
        "MAX_UPLOAD_BYTES",
        "10737418240",
        _positive_int,
        "PUT and tus size limit (413 above it; tus advertises it as `Tus-Max-Size`)",
    ),
    Spec(
        "TUS_EXPIRY_SECONDS",
        "86400",
        _positive_int,
        "a tus upload that receives no bytes this long expires (410), and its state is removed",
    ),
    Spec(
        "TUS_CLEANUP_SECONDS",
        "300",
        _positive_int,
        "how often each replica removes expired tus uploads (also once at start)",
    ),
    Spec(
        "TUS_LOCK_WAIT_SECONDS",
        "5",
        _seconds,
        "a PATCH waits this long for another request's lock on the same upload (then 423)",
    ),
    Spec(
        "TUS_LOCK_LEASE_SECONDS",
        "30",
        _seconds,
        "S3 origin: the lease of a tus upload's lock in the bucket (renewed every third of it by "
        "its holder; a crashed replica's lock is taken over after it)",
    ),
    Spec(
        "MAX_RANGES",
        "16",
        _positive_int,
        "most range-specs in one request (more: the whole file, 200)",
    ),
    Spec(
        "MAX_CONNECTIONS",
        "1024",
        _positive_int,
        "concurrent client connections of the data plane (more: 503 and close)",
    ),
    Spec(
        "OPEN_FILE_CACHE_SIZE",
        "0",
        _count,
        "open media files the data plane keeps (nginx's `open_file_cache max=`); 0: a quarter of "
        "the descriptor limit left after 64, at most 4096 (240 with a limit of 1024). The data "
        "plane raises its soft `RLIMIT_NOFILE` to the hard limit at start and logs both "
        "(`descriptors` event)",
    ),
    Spec(
        "OPEN_FILE_CACHE_VALID_SECONDS",
        "1",
        _seconds,
        "how long a kept file is served without checking that its path still names it (nginx's "
        "`open_file_cache_valid`); 0: checked on every request. An upload or delete through this "
        "replica is seen at once; a change made beside it (another replica, a packaging Job, a "
        "shell) within this time",
    ),
    Spec("HEADER_TIMEOUT_SECONDS", "10", _seconds, "time to receive a request's headers"),
    Spec(
        "BODY_TIMEOUT_SECONDS",
        "60",
        _seconds,
        "longest pause while receiving a request body (408)",
    ),
    Spec(
        "IDLE_TIMEOUT_SECONDS",
        "75",
        _seconds,
        "keep-alive idle time before a connection is closed",
    ),
    Spec(
        "SEND_TIMEOUT_SECONDS",
        "60",
        _seconds,
        "longest time a response waits while the client takes nothing (no progress, however "
        "slow); then the connection is closed (0 = no limit)",
    ),
    Spec("SHUTDOWN_GRACE_SECONDS", "25", _seconds, "time in-flight requests get after SIGTERM"),
    Spec(
        "DRAIN_DELAY_SECONDS",
        "0",
        _seconds,
        "after SIGTERM, /readyz fails but new connections are still served this long",
    ),
    Spec("SIGNED_URLS", "false", _bool, "GET/HEAD of media need a valid signature"),
    Spec(
        "SIGNING_KEYS_DIR",
        "/etc/vod/signing",
        Path,
        "key id = file name, key = its bytes (trailing newline stripped)",
    ),
    Spec(
        "SIGNING_ACTIVE_KEY_ID",
        "",
        _optional,
        "key id `sign` and `/admin/sign` use (default: the last id in sorted order)",
    ),
    Spec(
        "SIGNED_URL_TTL_SECONDS",
        "3600",
        _positive_int,
        "default ttl of `vod-stream sign` and `/admin/sign`",
    ),
    Spec("SIGNED_URL_BIND_IP", "false", _bool, "signatures include the client IP"),
    Spec(
        "CLIENT_IP_HEADER",
        "",
        _optional,
        "header carrying the client IP (its first entry); unset: the peer address",
    ),
    Spec("JWT_SECRET", "", _optional, "HS256 shared secret"),
    Spec("JWT_SECRET_FILE", "", _optional_path, "file holding the HS256 shared secret"),
    Spec("JWT_PUBLIC_KEY_FILE", "", _optional_path, "PEM public key (RSA, EC or Ed25519/Ed448)"),
    Spec(
        "JWT_ALGORITHMS",
        "",
        _csv,
        "accepted algorithms, comma-separated; empty: by the key (HS256 with a secret; RS256, "
        "ES256/ES384/ES512 or EdDSA by the public key's type)",
    ),
    Spec("JWT_ISSUER", "", _optional, "required `iss` claim"),
    Spec("JWT_AUDIENCE", "", _optional, "required `aud` claim"),
    Spec("JWT_LEEWAY_SECONDS", "30", _seconds, "clock skew allowed for exp/nbf/iat"),
    Spec("CORS_ALLOWED_ORIGINS", "", _csv, "comma-separated origins allowed by CORS (`*` for any)"),
    Spec("LOG_LEVEL", "info", _level, "debug, info, warning or error"),
    Spec("ACCESS_LOG", "true", _bool, "one JSON access-log line per request"),
    Spec(
        "METRICS_DIR",
        "/tmp/vod-stream-metrics",
        Path,
        "Prometheus multiprocess folder (its `<type>_<pid>.db` files are removed at start, "
        "nothing else)",
    ),
)


@dataclass(frozen=True)
class Settings:
    """The parsed settings; field names are the spec names in lower case."""

    config_file: Path | None
    host: str
    port: int
    workers: int
    media_root: Path
    origin: str
    s3_endpoint: str | None
    s3_bucket: str | None
    s3_prefix: str
    s3_region: str
    s3_path_style: bool
    s3_access_key_id_file: Path | None
    s3_secret_access_key_file: Path | None
    s3_ca_file: Path | None
    http_origin_url: str | None
    http_origin_ca_file: Path | None
    origin_connect_timeout_seconds: float
    origin_timeout_seconds: float
    origin_stat_ttl_seconds: float
    cache_dir: Path | None
    cache_max_bytes: int
    cache_slice_bytes: int
    max_upload_bytes: int
    tus_expiry_seconds: int
    tus_cleanup_seconds: int
    tus_lock_wait_seconds: float
    tus_lock_lease_seconds: float
    max_ranges: int
    max_connections: int
    open_file_cache_size: int
    open_file_cache_valid_seconds: float
    header_timeout_seconds: float
    body_timeout_seconds: float
    idle_timeout_seconds: float
    send_timeout_seconds: float
    shutdown_grace_seconds: float
    drain_delay_seconds: float
    signed_urls: bool
    signing_keys_dir: Path
    signing_active_key_id: str | None
    signed_url_ttl_seconds: int
    signed_url_bind_ip: bool
    client_ip_header: str | None
    jwt_secret: str | None
    jwt_secret_file: Path | None
    jwt_public_key_file: Path | None
    jwt_algorithms: tuple[str, ...]
    jwt_issuer: str | None
    jwt_audience: str | None
    jwt_leeway_seconds: float
    cors_allowed_origins: tuple[str, ...]
    log_level: str
    access_log: bool
    metrics_dir: Path

    @property
    def worker_count(self) -> int:
        return self.workers if self.workers > 0 else available_cpus()

    @property
    def tmp_dir(self) -> Path:
        """Where uploads are staged: inside the root (same filesystem), never served."""
        return self.media_root / ".vod-tmp"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        config_file = env.get(PREFIX + "CONFIG_FILE")
        values = {**(read_env_file(Path(config_file)) if config_file else {}), **env}
        parsed: dict[str, Any] = {}
        for spec in SPECS:
            raw = values.get(PREFIX + spec.name, spec.default)
            try:
                parsed[spec.name.lower()] = spec.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{PREFIX}{spec.name}: {exc}") from None
        assert {f.name for f in fields(cls)} == set(parsed)
        _check_origin(parsed)
        return cls(**parsed)


def _check_origin(parsed: Mapping[str, Any]) -> None:
    """The chosen origin has what it needs (named in the error)."""
    required = {"s3": ("s3_endpoint", "s3_bucket"), "http": ("http_origin_url",)}
    for name in required.get(parsed["origin"], ()):
        if not parsed[name]:
            origin = parsed["origin"]
            raise ConfigError(f"{PREFIX}{name.upper()}: required when {PREFIX}ORIGIN={origin}")
    key_files = (parsed["s3_access_key_id_file"], parsed["s3_secret_access_key_file"])
    if (key_files[0] is None) != (key_files[1] is None):
        names = f"{PREFIX}S3_ACCESS_KEY_ID_FILE and {PREFIX}S3_SECRET_ACCESS_KEY_FILE"
        raise ConfigError(f"{names}: set both or neither")


def dataplane_config(settings: Settings, upstream_socket: str) -> str:
    """The data plane's settings as JSON (``vod_stream._dataplane.serve`` reads them)."""
    from vod_stream.mediatypes import DEFAULT_TYPE, content_type_table

    return json.dumps(
        {
            "media_root": str(settings.media_root),
            "workers": settings.worker_count,
            "max_ranges": settings.max_ranges,
            "max_connections": settings.max_connections,
            "open_file_cache_size": settings.open_file_cache_size,
            "open_file_cache_valid_seconds": settings.open_file_cache_valid_seconds,
            "header_timeout_seconds": settings.header_timeout_seconds,
            "body_timeout_seconds": settings.body_timeout_seconds,
            "idle_timeout_seconds": settings.idle_timeout_seconds,
            "send_timeout_seconds": settings.send_timeout_seconds,
            "shutdown_grace_seconds": settings.shutdown_grace_seconds,
            "drain_delay_seconds": settings.drain_delay_seconds,
            "signed_urls": settings.signed_urls,
            "signing_keys_dir": str(settings.signing_keys_dir),
            "signed_url_bind_ip": settings.signed_url_bind_ip,
            "client_ip_header": settings.client_ip_header,
            "cors_allowed_origins": list(settings.cors_allowed_origins),
            "access_log": settings.access_log,
            "log_level": settings.log_level,
            "upstream_socket": upstream_socket,
            "content_types": content_type_table(),
            "default_content_type": DEFAULT_TYPE,
            "parent_pid": os.getpid(),  # the data plane stops when this process dies
            **origin_config(settings),
        }
    )


def origin_config(settings: Settings) -> dict[str, Any]:
    """The origin and slice-cache settings, as the data plane's ``OriginConfig`` names them."""

    def path(value: Path | None) -> str | None:
        return None if value is None else str(value)

    return {
        "origin": settings.origin,
        "s3_endpoint": settings.s3_endpoint,
        "s3_bucket": settings.s3_bucket,
        "s3_prefix": settings.s3_prefix,
        "s3_region": settings.s3_region,
        "s3_path_style": settings.s3_path_style,
        "s3_access_key_id_file": path(settings.s3_access_key_id_file),
        "s3_secret_access_key_file": path(settings.s3_secret_access_key_file),
        "s3_ca_file": path(settings.s3_ca_file),
        "http_origin_url": settings.http_origin_url,
        "http_origin_ca_file": path(settings.http_origin_ca_file),
        "origin_connect_timeout_seconds": settings.origin_connect_timeout_seconds,
        "origin_timeout_seconds": settings.origin_timeout_seconds,
        "origin_stat_ttl_seconds": settings.origin_stat_ttl_seconds,
        "cache_dir": path(settings.cache_dir),
        "cache_max_bytes": settings.cache_max_bytes,
        "cache_slice_bytes": settings.cache_slice_bytes,
    }


def available_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may use: its affinity set, capped by a cgroup v2 CPU quota (a
    container's CPU limit), rounded up; at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = cpus or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return count


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments are skipped."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{PREFIX}CONFIG_FILE: cannot read {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        values[key.strip()] = value.strip().strip("\"'")
    return values
