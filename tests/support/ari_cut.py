"""A TCP relay in front of Asterisk's ARI that a test can cut: the events
websocket alone (Asterisk's REST interface still answers), or everything (a
network partition between the controller and its node). While cut, the
connections it covers are closed and new ones are closed on arrival."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Pair:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    events: bool

    def close(self) -> None:
        for writer in (self.client, self.server):
            writer.close()


@dataclass
class AriCut:
    target_host: str
    target_port: int
    # What is cut now: None (nothing), "events" (the websocket) or "all".
    cut: str | None = None
    _pairs: set[_Pair] = field(default_factory=set)
    _server: asyncio.Server | None = None
    port: int = 0

    def url(self, ari_url: str) -> str:
        """``ari_url`` (the real one) through this relay."""
        parts = urllib.parse.urlsplit(ari_url)
        return parts._replace(netloc=f"127.0.0.1:{self.port}").geturl()

    def cut_events(self) -> None:
        self._cut("events")

    def partition(self) -> None:
        self._cut("all")

    def restore(self) -> None:
        self.cut = None

    def _cut(self, what: str) -> None:
        self.cut = what
        for pair in list(self._pairs):
            if self._covers(pair.events):
                pair.close()

    def _covers(self, events: bool) -> bool:
        return self.cut == "all" or (self.cut == "events" and events)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in list(self._pairs):
            pair.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut == "all":
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        pair = _Pair(writer, up_writer, events=False)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._requests(reader, pair), _pump(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            pair.close()

    async def _requests(self, reader: asyncio.StreamReader, pair: _Pair) -> None:
        """The client's side: a kept-alive REST connection may carry the
        websocket's upgrade request, so each request is looked at."""
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                # "GET /ari/events?app=..." opens the websocket.
                if data.startswith(b"GET ") and b"/events?" in data.partition(b"\r\n")[0]:
                    pair.events = True
                if self._covers(pair.events):
                    break
                pair.server.write(data)
                await pair.server.drain()
        pair.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def relay(ari_url: str) -> AsyncIterator[AriCut]:
    """A relay to the ARI at ``ari_url``, closed on exit."""
    parts = urllib.parse.urlsplit(ari_url)
    cut = AriCut(parts.hostname or "127.0.0.1", parts.port or 80)
    await cut.start()
    try:
        yield cut
    finally:
        await cut.close()
