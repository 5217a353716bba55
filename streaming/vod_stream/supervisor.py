"""The main process: checks the settings, reserves the port, starts the workers, restarts any
that die, and on SIGTERM passes the signal on and waits for them to drain, then exits 0."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import signal
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from vod_stream import logs
from vod_stream.config import Settings
from vod_stream.uploads import remove_stale_uploads
from vod_stream.worker import listening_socket

READY_TIMEOUT_SECONDS = 60
RESTART_DELAY_SECONDS = 1.0


# prometheus_client's multiprocess files: ``<type>_<pid>.db`` (counter_12.db, gauge_livesum_12.db)
METRICS_FILE = re.compile(r"[a-z]+(?:_[a-z]+)*_\d+\.db")


def prepare_metrics_dir(settings: Settings) -> None:
    """A fresh multiprocess folder per server start: the previous run's metrics files are
    removed (they would skew the sums), and nothing else, so a ``VOD_METRICS_DIR`` pointed at
    the wrong folder (the media root) loses no files."""
    folder = settings.metrics_dir
    folder.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(folder):
        if METRICS_FILE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.stopping = False
        self.workers: list[BaseProcess] = []
        self.port = 0

    def _start_worker(self) -> tuple[BaseProcess, object]:
        from vod_stream import worker

        ready = self.context.Event()
        process = self.context.Process(
            target=worker.main, args=(self.settings, self.port, ready), daemon=False
        )
        process.start()
        return process, ready

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            logs.event("shutting down", signal=signal.Signals(signum).name)
        self.stopping = True
        for process in self.workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    def run(self) -> int:
        settings = self.settings
        if not settings.media_root.is_dir():
            logs.event("media root is not a folder", path=str(settings.media_root))
            return 2
        removed = remove_stale_uploads(settings.tmp_dir, 2 * settings.body_timeout_seconds + 60)
        if removed:
            logs.event("removed stale uploads", count=removed)
        prepare_metrics_dir(settings)
        # Bound but not listening: holds the port (SO_REUSEPORT) so every worker gets the same
        # one even when VOD_PORT=0 asks for any free port; receives no connections itself.
        reservation = listening_socket(settings.host, settings.port, listen=False)
        self.port = reservation.getsockname()[1]
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        started = [self._start_worker() for _ in range(settings.worker_count)]
        self.workers = [process for process, _ in started]
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        for process, ready in started:
            if not ready.wait(max(0.0, deadline - time.monotonic())):  # type: ignore[attr-defined]
                logs.event("a worker did not start", pid=process.pid)
                self._on_signal(signal.SIGTERM, None)
                break
        else:
            logs.event(
                "listening",
                host=settings.host,
                port=self.port,
                workers=len(self.workers),
                media_root=str(settings.media_root),
            )
        self._watch()
        reservation.close()
        logs.event("stopped")
        return 0

    def _watch(self) -> None:
        from vod_stream.metrics import mark_dead

        while True:
            alive = [p for p in self.workers if p.exitcode is None]
            if not alive:
                return
            wait([p.sentinel for p in alive], timeout=1.0)
            for index, process in enumerate(self.workers):
                if process.exitcode is None or self.stopping:
                    continue
                logs.event("worker died, restarting", pid=process.pid, exitcode=process.exitcode)
                if process.pid is not None:
                    mark_dead(process.pid)
                time.sleep(RESTART_DELAY_SECONDS)
                self.workers[index], _ = self._start_worker()


def run(settings: Settings) -> int:
    logs.setup_logging(settings.log_level)
    return Supervisor(settings).run()
