"""ARI's events websocket, kept connected, and routing of events to calls.

Events produced while the socket is down are lost (Asterisk does not queue
them), so every (re)connect first runs ``on_connect``, where the owner
rebuilds what it knows from ``GET /channels``. A second socket for the same
application name replaces the first (``ApplicationReplaced``, and the first
socket stays open, deaf to that app): every controller instance needs an app
name of its own. A stream given ``choose_app`` picks its app name before
each connect and, when replaced, reconnects under a name chosen anew (the
inbound slots).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp

from ivr_auth import ari, errors

logger = logging.getLogger(__name__)


def channel_ids(event: ari.Event) -> list[str]:
    """The channels an event concerns, for routing it to their calls."""
    ids: list[str] = []
    channel = event.get("channel")
    if isinstance(channel, dict) and isinstance(channel.get("id"), str):
        ids.append(channel["id"])
    for key in ("playback", "recording"):
        target = event.get(key, {}).get("target_uri", "") if isinstance(event.get(key), dict) else ""
        if isinstance(target, str) and target.startswith("channel:"):
            ids.append(target.removeprefix("channel:"))
    return ids


def events_url(base_url: str, app: str) -> str:
    ws_base = "ws" + base_url.rstrip("/").removeprefix("http")
    return f"{ws_base}/events?{urlencode({'app': app, 'subscribeAll': 'false'})}"


# Chooses the app name before a connect, told whether another websocket took
# the last one over; None: none to be had now (try later).
AppChooser = Callable[[bool], Awaitable[str | None]]


class EventStream:
    """One websocket to one Asterisk for one app name, reconnecting with backoff."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        headers: Mapping[str, str],
        app: str,
        handler: ari.EventHandler,
        *,
        on_connect: ari.ConnectHandler | None = None,
        on_status: Callable[[bool], None] | None = None,
        choose_app: AppChooser | None = None,
        min_backoff: float = 0.2,
        max_backoff: float = 10.0,
        heartbeat: float = 10.0,
    ) -> None:
        self._session = session
        self._base_url = base_url
        self.url = events_url(base_url, app)
        self._headers = dict(headers)
        self.app = app
        self._handler = handler
        self.on_connect = on_connect
        # Told True once connected (after on_connect), False when lost.
        self.on_status = on_status
        self._choose_app = choose_app
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._heartbeat = heartbeat
        self._connected = asyncio.Event()
        self.connects = 0
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            raise errors.AriUnavailable(
                f"ARI events websocket for app {self.app!r} not connected within {timeout:.0f}s"
                + (f" ({self.last_error})" if self.last_error else "")
            ) from None

    async def run(self) -> None:
        """Connect, read, dispatch; on any loss reconnect. Runs until cancelled."""
        backoff = self._min_backoff
        replaced = False
        while True:
            try:
                if self._choose_app is not None:
                    await self._rechoose(replaced)
                replaced = False
                async with self._session.ws_connect(self.url, headers=self._headers, heartbeat=self._heartbeat) as ws:
                    self.connects += 1
                    self.last_error = None
                    backoff = self._min_backoff
                    logger.info("ari events connected", extra={"app": self.app, "connects": self.connects})
                    if self.on_connect is not None:
                        await self.on_connect()
                    self._connected.set()
                    if self.on_status is not None:
                        self.on_status(True)
                    replaced = await self._read(ws)
                    self.last_error = f"websocket closed (code {ws.close_code})"
            except _NoApp:
                pass
            except errors.AriError as exc:  # from choose_app
                self.last_error = str(exc)
            except aiohttp.WSServerHandshakeError as exc:
                self.last_error = f"handshake refused: HTTP {exc.status}"
                if exc.status == 401:
                    self.last_error = "ARI refused the credentials (HTTP 401)"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.last_error = str(exc) or type(exc).__name__
            finally:
                if self._connected.is_set() and self.on_status is not None:
                    self.on_status(False)
                self._connected.clear()
            if replaced:
                logger.info("ari app %s taken over by another websocket; choosing another", self.app)
                # Jittered, so that two streams that chose alike choose apart.
                await asyncio.sleep(self._min_backoff * random.random())
                continue
            logger.warning("ari events disconnected: %s; retrying in %.1fs", self.last_error, backoff)
            await asyncio.sleep(backoff * (0.8 + 0.4 * random.random()))
            backoff = min(backoff * 2, self._max_backoff)

    async def _rechoose(self, replaced: bool) -> None:
        assert self._choose_app is not None
        chosen = await self._choose_app(replaced)
        if chosen is None:
            self.last_error = "no app name free"
            raise _NoApp
        self.app = chosen
        self.url = events_url(self._base_url, chosen)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Read until the socket closes (False) or, for a stream that
        chooses its app, until another socket takes the app over (True)."""
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                if msg.type == aiohttp.WSMsgType.ERROR:
                    self.last_error = str(ws.exception())
                    return False
                continue
            try:
                event: Any = json.loads(msg.data)
            except ValueError:
                logger.warning("ari events: undecodable message skipped")
                continue
            if not isinstance(event, dict):
                continue
            if event.get("type") == "ApplicationReplaced":
                if self._choose_app is not None:
                    return True
                logger.error(
                    "ari app %r was taken over by another websocket; each controller needs its own app name",
                    event.get("application", self.app),
                )
            try:
                await self._handler(event)
            except Exception:
                # One call's broken handler must not stop the events of all others.
                logger.exception("ari event handler failed for %s", event.get("type"))
        return False


class _NoApp(Exception):
    """``choose_app`` found no app name to connect with."""


class Dispatcher:
    """Routes events to a queue per channel; the rest go to ``fallback``."""

    def __init__(self, fallback: ari.EventHandler | None = None) -> None:
        self._queues: dict[str, asyncio.Queue[ari.Event]] = {}
        self.fallback = fallback

    def subscribe(self, channel_id: str) -> asyncio.Queue[ari.Event]:
        queue: asyncio.Queue[ari.Event] = asyncio.Queue()
        self._queues[channel_id] = queue
        return queue

    def unsubscribe(self, channel_id: str) -> None:
        self._queues.pop(channel_id, None)

    def __contains__(self, channel_id: object) -> bool:
        return channel_id in self._queues

    def channels(self) -> list[str]:
        """Every channel a call is waiting on events for."""
        return list(self._queues)

    async def __call__(self, event: ari.Event) -> None:
        routed = False
        for channel_id in channel_ids(event):
            queue = self._queues.get(channel_id)
            if queue is not None:
                queue.put_nowait(event)
                routed = True
        if not routed and self.fallback is not None:
            await self.fallback(event)
