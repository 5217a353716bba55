"""The main process: checks the settings, binds the port, runs the Python application on a
Unix socket, starts the data plane (which accepts on the port and proxies to that socket),
restarts it if it dies, and on SIGTERM drains it within its deadline, then exits 0.

SIGTERM order: the data plane fails /readyz at once, keeps accepting for
``VOD_DRAIN_DELAY_SECONDS``, closes the port, lets responses finish for at most
``VOD_SHUTDOWN_GRACE_SECONDS`` and cuts the rest; the Python application keeps serving what the
data plane proxies until the data plane has exited, then stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time

from aiohttp import web

from vod_stream import logs, tus
from vod_stream.config import ConfigError, Settings, dataplane_config
from vod_stream.dataplane import CONFIG_ENV, LISTEN_FD_ENV, READY_FD_ENV
from vod_stream.server import StreamApp
from vod_stream.storage import Origin, open_origin
from vod_stream.uploads import remove_stale_uploads

READY_TIMEOUT_SECONDS = 60
RESTART_DELAY_SECONDS = 1.0
BACKLOG = 1024
# Past the data plane's own deadline (drain delay + grace), the time it gets to exit by itself.
EXIT_MARGIN_SECONDS = 2.0

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


def listening_socket(host: str, port: int) -> socket.socket:
    """The listening TCP socket the data plane accepts on (inherited by it)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(address)
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, settings: Settings, origin: Origin | None = None) -> None:
        self.settings = settings
        self.origin = origin
        self.stopping = asyncio.Event()

    def _on_signal(self, signum: int) -> None:
        if not self.stopping.is_set():
            logs.event("shutting down", signal=signal.Signals(signum).name)
        self.stopping.set()

    async def _start_dataplane(
        self, listener: socket.socket, upstream: str
    ) -> asyncio.subprocess.Process | None:
        """Start the data plane on ``listener``; ``None`` when it did not get ready."""
        ready_read, ready_write = os.pipe()
        env = {
            **os.environ,
            CONFIG_ENV: dataplane_config(self.settings, upstream),
            LISTEN_FD_ENV: str(listener.fileno()),
            READY_FD_ENV: str(ready_write),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "vod_stream.dataplane",
            env=env,
            pass_fds=(listener.fileno(), ready_write),
        )
        os.close(ready_write)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                said = await loop.run_in_executor(None, os.read, ready_read, 16)
        except TimeoutError:
            said = b""
        finally:
            os.close(ready_read)
        if said.startswith(b"ready"):
            return process
        logs.event("the data plane did not start", pid=process.pid)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return None

    async def main(self) -> int:
        settings = self.settings
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        app = StreamApp(settings, self.origin)
        runtime = tempfile.mkdtemp(prefix="vod-stream-")
        upstream = os.path.join(runtime, "app.sock")
        server = web.Server(app.handle, access_log=None)
        unix = await loop.create_unix_server(server, upstream, backlog=BACKLOG)
        listener = listening_socket(settings.host, settings.port)
        port = listener.getsockname()[1]
        code = 0
        cleanup = (
            asyncio.ensure_future(tus.expire_periodically(app.uploads, settings))
            if app.uploads is not None
            else None
        )
        try:
            process = await self._start_dataplane(listener, upstream)
            if process is None:
                return 1
            logs.event(
                "listening",
                host=settings.host,
                port=port,
                workers=settings.worker_count,
                media_root=str(settings.media_root),
                dataplane_pid=process.pid,
            )
            while not self.stopping.is_set():
                exited = asyncio.ensure_future(process.wait())
                stopping = asyncio.ensure_future(self.stopping.wait())
                await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if self.stopping.is_set():
                    exited.cancel()
                    break
                logs.event("data plane died, restarting", exitcode=process.returncode)
                await asyncio.sleep(RESTART_DELAY_SECONDS)
                restarted = await self._start_dataplane(listener, upstream)
                if restarted is None:
                    return 1
                process = restarted
            # Only the data plane holds the port from here: once it closes it, connections
            # are refused.
            listener.close()
            app.draining = True
            await self._stop_dataplane(process)
        finally:
            if cleanup is not None:
                cleanup.cancel()
            listener.close()
            await server.shutdown(1.0)
            unix.close()
            await unix.wait_closed()
            shutil.rmtree(runtime, ignore_errors=True)
        logs.event("stopped")
        return code

    async def _stop_dataplane(self, process: asyncio.subprocess.Process) -> None:
        settings = self.settings
        deadline = (
            settings.drain_delay_seconds + settings.shutdown_grace_seconds + EXIT_MARGIN_SECONDS
        )
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(deadline):
                await process.wait()
        except TimeoutError:
            logs.event("the data plane overran its deadline", seconds=time.monotonic() - started)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def run(settings: Settings) -> int:
    logs.setup_logging(settings.log_level)
    if settings.origin == "file":  # a remote origin needs no media folder
        if not settings.media_root.is_dir():
            logs.event("media root is not a folder", path=str(settings.media_root))
            return 2
        removed = remove_stale_uploads(settings.tmp_dir, 2 * settings.body_timeout_seconds + 60)
        if removed:
            logs.event("removed stale uploads", count=removed)
    try:
        origin = open_origin(settings)  # reads the S3 credential files: a bad one stops here
    except ConfigError as exc:
        logs.event("bad settings", error=str(exc))
        return 2
    prepare_metrics_dir(settings)
    return asyncio.run(Supervisor(settings, origin).main())
