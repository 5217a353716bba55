"""One worker process: its own SO_REUSEPORT listener, the app, and a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
from multiprocessing.synchronize import Event

from vod_stream import logs
from vod_stream.config import Settings
from vod_stream.protocol import StreamServer
from vod_stream.server import StreamApp

BACKLOG = 1024


def listening_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound with SO_REUSEPORT, so several processes share ``port``."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(address)
    if listen:
        sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


async def serve(settings: Settings, port: int, ready: Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    app = StreamApp(settings)
    server = StreamServer(
        app.handle,
        max_connections=settings.max_connections,
        header_timeout=settings.header_timeout_seconds,
        app=app if settings.fast_path else None,
        keepalive_timeout=settings.idle_timeout_seconds,
        access_log=None,
    )
    listener = await loop.create_server(
        server, sock=listening_socket(settings.host, port), backlog=BACKLOG
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    app.draining = True  # /readyz answers 503 from now on
    if settings.drain_delay_seconds:
        # still accepting, so requests routed before the endpoint is removed are served
        logs.event("drain delay", seconds=settings.drain_delay_seconds)
        await asyncio.sleep(settings.drain_delay_seconds)
    listener.close()  # no new connections; the kernel hands queued ones to no one here
    busy = sum(1 for c in server.connections if c._request_in_progress)
    logs.event("draining", in_flight=busy, grace_seconds=settings.shutdown_grace_seconds)
    await server.shutdown(settings.shutdown_grace_seconds)
    await listener.wait_closed()
    logs.event("worker stopped")


def main(settings: Settings, port: int, ready: Event | None = None) -> None:
    """Entry point of a worker process."""
    logs.setup_logging(settings.log_level)
    asyncio.run(serve(settings, port, ready))
