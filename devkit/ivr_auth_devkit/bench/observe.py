"""What the bench watches from outside the service: every Asterisk event on
a subscribeAll ARI websocket (keys heard, the dialplan baseline's results,
channels alive), and the webhooks the service sends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from ivr_auth import signature
from ivr_auth.ari import client as ari_client

logger = logging.getLogger(__name__)


@dataclass
class AriObserver:
    """One websocket with subscribeAll=true: Asterisk's view of every call."""

    session: aiohttp.ClientSession
    ari_url: str
    username: str
    password: str
    app: str = "ivr-auth-bench-observer"
    # request key (request_key()) -> when each key was heard (time.time())
    keys: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # request key -> when its first channel appeared: the call is being dialled
    created: dict[str, float] = field(default_factory=dict)
    # baseline channel id -> (result, when its dialplan set it)
    baseline: dict[str, tuple[str, float]] = field(default_factory=dict)
    channels: int = 0
    peak_channels: int = 0
    # Called with the request key and its keys so far on each key (the bench wakes a request's poller).
    on_key: Callable[[str, int], None] | None = None
    _task: asyncio.Task[None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def reset_peak(self) -> None:
        self.peak_channels = self.channels

    async def _run(self) -> None:
        ws_base = "ws" + self.ari_url.rstrip("/").removeprefix("http")
        url = f"{ws_base}/events?{urlencode({'app': self.app, 'subscribeAll': 'true'})}"
        headers = {"Authorization": ari_client.authorization(self.username, self.password)}
        async with self.session.ws_connect(url, headers=headers, heartbeat=10) as ws:
            self._ready.set()
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self._handle(json.loads(msg.data), time.time())

    def _handle(self, event: dict[str, Any], now: float) -> None:
        kind = event.get("type")
        channel = event.get("channel") or {}
        channel_id = str(channel.get("id", ""))
        if kind == "ChannelCreated":
            self.created.setdefault(request_key(channel_id), now)
            self.channels += 1
            self.peak_channels = max(self.peak_channels, self.channels)
        elif kind == "ChannelDestroyed":
            self.channels = max(self.channels - 1, 0)
        elif kind == "ChannelDtmfReceived":
            key = request_key(channel_id)
            heard = self.keys[key]
            heard.append(now)
            if self.on_key is not None:
                self.on_key(key, len(heard))
        elif kind == "ChannelVarset" and event.get("variable") == "IVRAUTH_BENCH_RESULT":
            self.baseline.setdefault(channel_id, (str(event.get("value", "")), now))


def request_key(channel_id: str) -> str:
    """The request a channel belongs to: the id in hex of an ivr-auth
    channel (flows.channel_id_for: ivrauth-<hex>-<attempt>[-<failover>]),
    a baseline channel's own id."""
    parts = channel_id.split("-")
    return parts[1] if len(parts) >= 3 and parts[0] == "ivrauth" else channel_id


@dataclass
class WebhookReceiver:
    """A tenant's webhook endpoint on loopback: checks each signature and
    notes when each request's terminal event came."""

    secret: str
    host: str = "127.0.0.1"
    port: int = 8095
    # verification id -> (status, when received)
    received: dict[str, tuple[str, float]] = field(default_factory=dict)
    bad_signatures: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        now = time.time()
        body = await request.read()
        try:
            signature.verify(self.secret, request.headers.get(signature.HEADER), body)
        except signature.InvalidSignature:
            self.bad_signatures += 1
            return web.Response(status=400)
        event = json.loads(body)
        self.received.setdefault(str(event["id"]), (str(event["status"]), now))
        return web.Response(status=204)
