"""A TCP relay on loopback between the controllers and Asterisk's HTTP
server (ARI), through which the websocket drill drops the events websocket:
every connection that carries ``GET /ari/events`` is cut (both sides reset)
and new ones are refused for a while, while REST requests pass. The same on
every Asterisk release, and nothing in Asterisk or the service is touched."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

EVENTS_REQUEST = b" /ari/events"
CHUNK = 65536


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    events: bool = False

    def cut(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


@dataclass
class AriProxy:
    host: str
    port: int
    target_host: str
    target_port: int
    # Events connections cut and refused so far.
    dropped: int = 0
    refused: int = 0
    _links: set[_Link] = field(default_factory=set, init=False, repr=False)
    _refuse_until: float = field(default=0.0, init=False, repr=False)
    _server: asyncio.Server | None = field(default=None, init=False, repr=False)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.cut()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    def drop_events(self, seconds: float) -> int:
        """Cut every events websocket now and refuse new ones for
        ``seconds``; the number cut."""
        self._refuse_until = time.monotonic() + seconds
        doomed = [link for link in self._links if link.events]
        for link in doomed:
            link.cut()
        self.dropped += len(doomed)
        return len(doomed)

    @property
    def events_connected(self) -> int:
        return sum(link.events for link in self._links)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(self._pipe(reader, up_writer, link, True), self._pipe(up_reader, writer, link, False))
        finally:
            self._links.discard(link)
            link.cut()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link, from_client: bool
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                # A pooled keep-alive connection may carry the websocket's
                # upgrade after REST requests: every request is looked at.
                if from_client and not link.events and EVENTS_REQUEST in data:
                    link.events = True
                    if time.monotonic() < self._refuse_until:
                        self.refused += 1
                        link.cut()
                        return
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            link.cut()
