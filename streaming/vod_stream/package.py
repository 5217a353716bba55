"""`vod-stream package`: one VideoAsset's source -> an HLS ladder, poster and storyboard in the
origin, published so that no reader ever sees half of it.

Run by the operator's Job (one per asset revision). Steps: resolve the source (a file in the
origin, or an HTTP(S) download into scratch space), ffprobe, plan (`vod_stream.ladder`), one
ffmpeg run for the whole ladder, publish, poster, storyboard, result.

Publishing (filesystem origin): the ladder is written into `PREFIX/.staging-REV/` (dot folders
are never served), renamed to `PREFIX/REV/` when complete, and only then is `PREFIX/master.m3u8`
replaced (write to a dot file, rename: atomic). So the master always lists a complete ladder,
the playback URL stays the same across re-packaging, and the previous ladder stays playable
until the new master replaces it. Of older revisions, only the one the new master replaced is
kept (players that loaded it moments ago can finish); earlier ones are removed.

Publishing (S3 origin, `VOD_ORIGIN=s3` and the streaming pods' `VOD_S3_*` settings): a
`--source-path` object is streamed into scratch space, ffmpeg writes there, then every object of
`PREFIX/REV/` is uploaded, the master last, the poster and storyboard after it, and older
revisions are pruned by the same rule (`vod_stream.publish`). A failed upload leaves the
published master as it was and removes the partial revision.

Reporting: a JSON line on stdout (`{"vodPackage": "progress", ...}`) at least every
`report_seconds`, a snapshot of the stage, the overall percentage, the probed media and whether
the ladder is published; the operator reads the newest one from the pod's log. The final result
(or the failure, with ffmpeg's own words) goes to `--result-file` (the Job sets the container's
termination message path) and stdout. Exit codes: 0 done; 3 the input can never work (the Job's
podFailurePolicy fails the Job at once); 1 anything else (the Job may retry it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from vod_stream import ladder, paths
from vod_stream.ladder import Ladder, Rendition, Source
from vod_stream.probe import ProbeError, probe
from vod_stream.signing import player_path
from vod_stream.storage import OriginError

if TYPE_CHECKING:
    from vod_stream.publish import ObjectStore
    from vod_stream.storage import S3Origin

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REJECTED = 3

#: The Kubernetes termination message holds at most 4096 bytes.
RESULT_LIMIT = 4096
MESSAGE_LIMIT = 1024
REVISION = re.compile(r"^[0-9a-f]{8,64}$")
DOWNLOAD_CHUNK = 1 << 20


class PackageFailure(Exception):
    """Why packaging stopped: a CamelCase reason, a message a person can act on, and whether
    retrying can help (`permanent`: no)."""

    def __init__(self, reason: str, message: str, *, permanent: bool) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message[:MESSAGE_LIMIT]
        self.permanent = permanent


@dataclass(frozen=True)
class Request:
    """Everything one packaging run needs (the command line, parsed)."""

    media_root: Path
    prefix: str
    revision: str
    renditions: tuple[Rendition, ...]
    source_path: str | None = None
    source_url: str | None = None
    headers_dir: Path | None = None
    work_dir: Path = Path("/tmp")
    segment_seconds: int = 4
    preset: str = ladder.DEFAULT_PRESET
    poster_at: float | None = 1.0
    storyboard_interval: float | None = None
    result_file: Path | None = None
    report_seconds: float = 2.0
    #: an object store origin (VOD_ORIGIN=s3); None: the file origin at `media_root`
    origin: S3Origin | None = None


def media_json(source: Source) -> dict[str, Any]:
    """The probed source as VideoAsset status.media shows it."""
    rate = source.frame_rate
    return {
        "duration": round(source.duration, 3),
        "width": source.width,
        "height": source.height,
        "frameRate": f"{rate.numerator}/{rate.denominator}" if rate else "0/1",
        "codecs": [c for c in (source.video_codec, source.audio_codec) if c],
        "bitrate": source.bitrate,
        "bytes": source.size,
    }


@dataclass
class Reporter:
    """Progress snapshots as JSON lines, at most one per `every` seconds unless forced."""

    out: IO[str]
    every: float
    clock: Callable[[], float] = time.monotonic
    weights: ladder.Weights = field(default_factory=lambda: ladder.Weights.of(False, True))
    stage: str = "probing"
    progress: int = 0
    media: dict[str, Any] | None = None
    playable: bool = False
    _last: float | None = None

    def update(self, stage: str, fraction: float = 0.0, *, force: bool = False) -> None:
        changed = stage != self.stage
        self.stage = stage
        self.progress = max(self.progress, ladder.percent(self.weights, stage, fraction))
        now = self.clock()
        if force or changed or self._last is None or now - self._last >= self.every:
            self._last = now
            self.emit()

    def emit(self) -> None:
        line: dict[str, Any] = {
            "vodPackage": "progress",
            "stage": self.stage,
            "progress": self.progress,
            "playable": self.playable,
        }
        if self.media is not None:
            line["media"] = self.media
        self.out.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.out.flush()


def resolve_path(media_root: Path, relative: str) -> Path:
    """The source file inside the origin; refuses anything that would leave it."""
    inside = paths.media_path("/" + relative)
    if inside is None:
        raise PackageFailure(
            "SourceOutsideOrigin",
            f"spec.source.path {relative!r} is not a path inside the origin",
            permanent=True,
        )
    root = os.path.realpath(media_root)
    candidate = os.path.join(root, inside)
    if not os.path.lexists(candidate):
        raise PackageFailure(
            "SourceNotFound", f"spec.source.path {relative!r} does not exist", permanent=True
        )
    opened = paths.open_regular_file(root, inside)
    if opened is None:
        raise PackageFailure(
            "SourceOutsideOrigin",
            f"spec.source.path {relative!r} is not a regular file inside the origin",
            permanent=True,
        )
    os.close(opened)
    return Path(candidate)


def read_headers(headers_dir: Path | None) -> dict[str, str]:
    """HTTP headers from a mounted Secret: each file name is a header, its content the value."""
    if headers_dir is None or not headers_dir.is_dir():
        return {}
    headers = {}
    for entry in sorted(headers_dir.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue  # the Secret volume's ..data links
        headers[entry.name] = entry.read_text().strip()
    return headers


def download(
    url: str,
    target: Path,
    headers: dict[str, str],
    on_progress: Callable[[float], None],
    timeout: float = 30.0,
) -> None:
    """GET `url` into `target`; 4xx answers are permanent failures, the rest may be retried.

    `timeout` bounds each wait: for the connection and the answer's head, then for each
    read of the body; the message says which one ran out.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "vod-stream-package", **headers})
    done = 0
    answered = False
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, target.open("wb") as fh:
            answered = True
            total = int(response.headers.get("Content-Length") or 0)
            while chunk := response.read1(DOWNLOAD_CHUNK):  # what has come, not a full chunk
                fh.write(chunk)
                done += len(chunk)
                if total:
                    on_progress(done / total)
    except urllib.error.HTTPError as exc:
        raise PackageFailure(
            "SourceDownloadFailed",
            f"GET {url} answered {exc.code} {exc.reason}",
            permanent=400 <= exc.code < 500 and exc.code not in (408, 429),
        ) from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            reason = (
                f"the body stalled for {timeout:g} s after {done} bytes"
                if answered
                else f"no answer within {timeout:g} s (connecting, or waiting for the head)"
            )
        raise PackageFailure(
            "SourceDownloadFailed", f"GET {url} failed: {reason}", permanent=False
        ) from exc


def _tail(lines: Sequence[str], limit: int = MESSAGE_LIMIT) -> str:
    text = "; ".join(line.strip() for line in lines if line.strip())
    return text[-limit:]


def run_ffmpeg(
    args: Sequence[str], duration: float, on_progress: Callable[[float], None], stderr_path: Path
) -> None:
    """Run ffmpeg with `-progress pipe:1`; on failure raise with the last lines it printed."""
    with stderr_path.open("w+") as err:
        process = subprocess.Popen(
            list(args), stdout=subprocess.PIPE, stderr=err, text=True, stdin=subprocess.DEVNULL
        )
        assert process.stdout is not None
        for line in process.stdout:
            key, _, value = line.strip().partition("=")
            if key == "out_time_us" and value.isdigit() and duration > 0:
                on_progress(int(value) / 1e6 / duration)
        code = process.wait()
        err.seek(0)
        lines = deque(err, maxlen=8)
    if code != 0:
        message = _tail(lines) or f"ffmpeg exited with {code}"
        # Killed by a signal (OOM, eviction): another attempt may well work.
        raise PackageFailure("TranscodeFailed", message, permanent=code > 0)


def previous_revision(text: str | None) -> str | None:
    """The revision folder a published master playlist (its text) points into, if any."""
    if text is None:
        return None
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head = line.split("/", 1)[0]
            return head if REVISION.match(head) else None
    return None


def _replace_file(target: Path, write: Callable[[Path], object]) -> None:
    """Write through a dot-named temporary file, then rename over `target` (atomic)."""
    temporary = target.with_name(f".{target.name}.tmp")
    write(temporary)
    os.replace(temporary, target)


def _run_quiet(args: Sequence[str], what: str) -> None:
    result = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if result.returncode == 0 and not Path(args[-1]).is_file():
        raise PackageFailure("TranscodeFailed", f"{what}: ffmpeg wrote no image", permanent=True)
    if result.returncode != 0:
        message = _tail(result.stderr.splitlines()[-8:]) or f"exit {result.returncode}"
        raise PackageFailure("TranscodeFailed", f"{what}: {message}", permanent=True)


def prune(asset_dir: Path, keep: set[str]) -> list[str]:
    """Remove revision folders (and stale staging folders) not in `keep`."""
    removed = []
    for entry in sorted(asset_dir.iterdir()):
        name = entry.name
        stale = (REVISION.match(name) and name not in keep) or name.startswith(".staging-")
        if stale and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(name)
    return removed


def asset_dir_of(media_root: Path, prefix: str) -> Path:
    inside = paths.media_path("/" + prefix)
    if inside is None:
        raise PackageFailure(
            "InvalidPrefix", f"prefix {prefix!r} is not inside the origin", permanent=True
        )
    root = os.path.realpath(media_root)
    target = os.path.join(root, inside)
    deepest = target
    while not os.path.lexists(deepest) and deepest != root:
        deepest = os.path.dirname(deepest)
    real = os.path.realpath(deepest)
    if real != root and not real.startswith(root + "/"):
        raise PackageFailure(
            "InvalidPrefix", f"prefix {prefix!r} resolves outside the origin", permanent=True
        )
    return Path(target)


def package(request: Request, out: IO[str] = sys.stdout) -> dict[str, Any]:
    """Do the whole job; return the result (raise PackageFailure when it cannot be done)."""
    if not REVISION.match(request.revision):
        raise PackageFailure("InvalidRevision", f"revision {request.revision!r}", permanent=True)
    extras = request.poster_at is not None or request.storyboard_interval is not None
    fetched = request.source_url is not None or request.origin is not None
    reporter = Reporter(out, request.report_seconds, weights=ladder.Weights.of(fetched, extras))
    request.work_dir.mkdir(parents=True, exist_ok=True)
    if request.origin is not None:
        from vod_stream.publish import ObjectStore

        store = ObjectStore(request.origin)
        try:
            return _package_into_store(request, reporter, store)
        except OriginError as exc:
            raise PackageFailure("OriginWriteFailed", exc.message, permanent=False) from exc
        finally:
            store.close()
    asset_dir = asset_dir_of(request.media_root, request.prefix)
    if request.source_url is not None:
        source_file = _download_url(request, reporter)
    elif request.source_path is not None:
        source_file = resolve_path(request.media_root, request.source_path)
    else:
        raise PackageFailure("NoSource", "neither a source path nor a URL", permanent=True)
    source, plan = _probe_and_plan(request, reporter, source_file)

    asset_dir.mkdir(parents=True, exist_ok=True)
    staging = asset_dir / f".staging-{request.revision}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        master_text = _transcode(request, reporter, source_file, source, plan, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    # Publish: the complete revision folder first, the master playlist last.
    final = asset_dir / request.revision
    master = asset_dir / "master.m3u8"
    previous = previous_revision(master.read_text() if master.is_file() else None)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(staging, final)
    published = ladder.published_master(master_text, request.revision)
    _replace_file(master, lambda p: p.write_text(published))
    reporter.playable = True
    reporter.update("extras", 0.0, force=True)

    base = "/" + asset_dir.relative_to(Path(os.path.realpath(request.media_root))).as_posix()
    playback = _make_extras(request, reporter, source_file, source, plan, final, base)
    prune(asset_dir, {request.revision} | ({previous} if previous else set()))
    return _result(request, reporter, plan, playback)


def _package_into_store(request: Request, reporter: Reporter, store: ObjectStore) -> dict[str, Any]:
    """The same steps for an object store: package into scratch space, then upload the
    revision's objects, the master last, the extras, and prune (see `vod_stream.publish`)."""
    from vod_stream.publish import publish_revision, stale_revisions

    asset = paths.media_path("/" + request.prefix)
    if not asset:
        raise PackageFailure(
            "InvalidPrefix", f"prefix {request.prefix!r} is not inside the origin", permanent=True
        )
    if request.source_url is not None:
        source_file = _download_url(request, reporter)
    elif request.source_path is not None:
        source_file = _fetch_source(request, reporter, store)
    else:
        raise PackageFailure("NoSource", "neither a source path nor a URL", permanent=True)
    source, plan = _probe_and_plan(request, reporter, source_file)

    final = request.work_dir / "out" / request.revision
    shutil.rmtree(final, ignore_errors=True)
    final.mkdir(parents=True)
    master_text = _transcode(request, reporter, source_file, source, plan, final)

    previous = previous_revision(store.read_text(f"{asset}/master.m3u8"))
    published = ladder.published_master(master_text, request.revision)
    publish_revision(store, asset, request.revision, final, published, previous)
    prefix = f"{asset}/{request.revision}"
    reporter.playable = True
    reporter.update("extras", 0.0, force=True)

    made = _make_extras(request, reporter, source_file, source, plan, final, "/" + asset)
    extras = ("poster.jpg", "storyboard.jpg", "storyboard.vtt")
    store.put_files((f"{prefix}/{n}", final / n) for n in extras if (final / n).is_file())
    keep = {request.revision} | ({previous} if previous else set())
    for revision in stale_revisions(asset, store.list(asset), keep):
        store.delete_prefix(f"{asset}/{revision}")
    return _result(request, reporter, plan, made)


def _download_url(request: Request, reporter: Reporter) -> Path:
    assert request.source_url is not None
    reporter.update("downloading", 0.0, force=True)
    source_file = request.work_dir / "source"
    download(
        request.source_url,
        source_file,
        read_headers(request.headers_dir),
        lambda f: reporter.update("downloading", f),
    )
    return source_file


def _fetch_source(request: Request, reporter: Reporter, store: ObjectStore) -> Path:
    """The source object, streamed into scratch space (checked as the file origin checks)."""
    assert request.source_path is not None
    relative = paths.media_path("/" + request.source_path)
    if not relative:
        raise PackageFailure(
            "SourceOutsideOrigin",
            f"spec.source.path {request.source_path!r} is not a path inside the origin",
            permanent=True,
        )
    try:
        found = store.exists(relative)
    except OriginError as exc:
        raise PackageFailure("SourceDownloadFailed", exc.message, permanent=False) from exc
    if not found:
        raise PackageFailure(
            "SourceNotFound",
            f"spec.source.path {request.source_path!r} does not exist",
            permanent=True,
        )
    reporter.update("downloading", 0.0, force=True)
    source_file = request.work_dir / "source"
    try:
        store.fetch(relative, source_file, lambda f: reporter.update("downloading", f))
    except OriginError as exc:
        raise PackageFailure("SourceDownloadFailed", exc.message, permanent=False) from exc
    return source_file


def _probe_and_plan(
    request: Request, reporter: Reporter, source_file: Path
) -> tuple[Source, Ladder]:
    reporter.update("probing", 0.0, force=True)
    try:
        source = probe(str(source_file))
    except ProbeError as exc:
        raise PackageFailure(
            "SourceNotVideo", f"the source is not a video ffprobe can read: {exc}", permanent=True
        ) from exc
    reporter.media = media_json(source)
    try:
        plan: Ladder = ladder.plan(source, request.renditions, request.segment_seconds)
    except ladder.PlanError as exc:
        raise PackageFailure("PlanFailed", str(exc), permanent=True) from exc
    reporter.update("transcoding", 0.0, force=True)
    return source, plan


def _transcode(
    request: Request,
    reporter: Reporter,
    source_file: Path,
    source: Source,
    plan: Ladder,
    folder: Path,
) -> str:
    """One ffmpeg run writes the ladder into `folder`; its master playlist's text."""
    run_ffmpeg(
        ladder.ladder_command(plan, str(source_file), str(folder), request.preset),
        source.duration,
        lambda f: reporter.update("transcoding", f),
        request.work_dir / "ffmpeg.stderr",
    )
    master_text = (folder / "master.m3u8").read_text()
    codecs = ladder.master_codecs(master_text)
    if len(codecs) != len(plan.rungs) or not all(codecs):
        raise PackageFailure(
            "TranscodeFailed", f"ffmpeg's master playlist lacks CODECS: {codecs}", permanent=True
        )
    return master_text


def _make_extras(
    request: Request,
    reporter: Reporter,
    source_file: Path,
    source: Source,
    plan: Ladder,
    final: Path,
    base: str,
) -> dict[str, str]:
    """Poster and storyboard into the revision folder `final`; the playback paths."""
    # the player page plays the master (on a signed platform: /play/t/<token>/...;
    # see docs/playback.md)
    playback = {"master": f"{base}/master.m3u8", "player": player_path(f"{base}/master.m3u8")}
    if request.poster_at is not None:
        at = ladder.poster_time(request.poster_at, source.duration)
        _replace_file(
            final / "poster.jpg",
            lambda p: _run_quiet(
                ladder.poster_command(str(source_file), at, str(p), plan), "poster"
            ),
        )
        playback["poster"] = f"{base}/{request.revision}/poster.jpg"
        reporter.update("extras", 0.3)
    if request.storyboard_interval is not None:
        board = ladder.plan_storyboard(source, request.storyboard_interval)
        _replace_file(
            final / "storyboard.jpg",
            lambda p: _run_quiet(
                ladder.storyboard_command(
                    str(final / plan.rungs[-1].name / "index.m3u8"), board, str(p)
                ),
                "storyboard",
            ),
        )
        vtt = ladder.storyboard_vtt(board, source.duration, "storyboard.jpg")
        _replace_file(final / "storyboard.vtt", lambda p: p.write_text(vtt))
        playback["storyboard"] = f"{base}/{request.revision}/storyboard.vtt"
    return playback


def _result(
    request: Request, reporter: Reporter, plan: Ladder, playback: dict[str, str]
) -> dict[str, Any]:
    reporter.update("done", 1.0, force=True)
    return {
        "vodPackage": "result",
        "result": "Succeeded",
        "revision": request.revision,
        "media": reporter.media,
        "renditions": [
            {"name": r.name, "resolution": r.resolution, "bitrate": r.video_kbps * 1000}
            for r in plan.rungs
        ],
        "skipped": list(plan.skipped),
        "playback": playback,
    }


def failure_result(failure: PackageFailure, revision: str) -> dict[str, Any]:
    return {
        "vodPackage": "result",
        "result": "Failed",
        "revision": revision,
        "reason": failure.reason,
        "message": failure.message,
        "permanent": failure.permanent,
    }


def encode_result(result: dict[str, Any]) -> str:
    """Compact JSON that fits a termination message (the message is cut if need be)."""
    text = json.dumps(result, separators=(",", ":"))
    if len(text.encode()) <= RESULT_LIMIT:
        return text
    slim = {k: v for k, v in result.items() if k not in ("media", "skipped")}
    slim["message"] = str(result.get("message", ""))[:256]
    return json.dumps(slim, separators=(",", ":"))[:RESULT_LIMIT]


def run(request: Request, out: IO[str] = sys.stdout) -> int:
    """`package` with its result written out; the process exit code."""
    try:
        result = package(request, out)
        code = EXIT_OK
    except PackageFailure as failure:
        result = failure_result(failure, request.revision)
        code = EXIT_REJECTED if failure.permanent else EXIT_FAILED
    except OSError as exc:  # the origin or scratch space: full, read-only, gone
        result = failure_result(
            PackageFailure("OriginWriteFailed", str(exc), permanent=False), request.revision
        )
        code = EXIT_FAILED
    text = encode_result(result)
    out.write(text + "\n")
    out.flush()
    if request.result_file is not None:
        try:
            request.result_file.write_text(text)
        except OSError as exc:
            print(f"vod-stream package: cannot write {request.result_file}: {exc}", file=sys.stderr)
    return code


def remove(media_root: Path, prefix: str, origin: S3Origin | None = None) -> int:
    """`vod-stream unpublish`: delete an asset's outputs (idempotent); from the object store
    `origin` when given (every object under the prefix)."""
    if origin is not None:
        return _remove_objects(origin, prefix)
    try:
        asset_dir = asset_dir_of(media_root, prefix)
    except PackageFailure as failure:
        print(f"vod-stream unpublish: {failure.message}", file=sys.stderr)
        return EXIT_REJECTED
    if asset_dir.is_symlink():
        asset_dir.unlink()
    else:
        shutil.rmtree(asset_dir, ignore_errors=True)
    print(json.dumps({"vodPackage": "removed", "prefix": prefix, "gone": not asset_dir.exists()}))
    return EXIT_OK if not asset_dir.exists() else EXIT_FAILED


def _remove_objects(origin: S3Origin, prefix: str) -> int:
    from vod_stream.publish import ObjectStore
    from vod_stream.storage import NotWritable

    store = ObjectStore(origin)
    try:
        removed = store.delete_prefix(prefix)
        left = store.list(prefix)
    except NotWritable as exc:
        print(f"vod-stream unpublish: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    except OriginError as exc:
        print(f"vod-stream unpublish: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()
    print(
        json.dumps(
            {"vodPackage": "removed", "prefix": prefix, "gone": not left, "objects": removed}
        )
    )
    return EXIT_OK if not left else EXIT_FAILED
