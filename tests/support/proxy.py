"""A loopback TCP proxy that can cut, stall or freeze a real server, to test outages for real."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal

from app.platform.settings import Settings
from tests.support.app import host_port, make_settings

# open: forward. refuse: drop every stream, reset new ones. stall: drop every stream, accept
# new ones and never answer. freeze: as a paused server (SIGSTOP) looks from outside: live
# streams stay open but carry nothing until thawed, new ones are accepted and never answered.
Mode = Literal["open", "refuse", "stall", "freeze"]


class FaultProxy:
    """Forwards 127.0.0.1:<port> to a target; ``mode`` decides what new and live streams see."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "open"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._thawed = asyncio.Event()
        self._thawed.set()

    async def start(self) -> FaultProxy:
        """Listen on an ephemeral port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def set_mode(self, mode: Mode) -> None:
        """Change behaviour; ``refuse`` and ``stall`` drop every live stream."""
        self.mode = mode
        if mode == "freeze":
            self._thawed.clear()
            return
        self._thawed.set()
        if mode != "open":
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

    async def close(self) -> None:
        """Stop listening and drop everything."""
        self.set_mode("refuse")
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            writer.transport.abort()
            return
        if self.mode in ("stall", "freeze"):
            self._writers.add(writer)
            # Accept and say nothing: the client's own timeouts must fire.
            with contextlib.suppress(Exception):
                await reader.read()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                # Frozen: hold what arrived, as the kernel would for a paused process.
                await self._thawed.wait()
                if self.mode != "open":
                    break
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.transport.abort()
            self._writers.discard(dst)


def via_proxy(settings: Settings, proxy: FaultProxy, **overrides: Any) -> Settings:
    """The session's servers with PostgreSQL reached through ``proxy``; connections are cached
    for a minute unless ``overrides`` say otherwise, so an outage hits the intake itself."""
    port = host_port(str(settings.database_url))[1]
    url = str(settings.database_url).replace(f":{port}/", f":{proxy.port}/")
    return make_settings(
        url, str(settings.redis_url), **{"connection_cache_ttl_s": 60, **overrides}
    )
