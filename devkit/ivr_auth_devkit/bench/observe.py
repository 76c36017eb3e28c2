"""What the bench watches from outside the service: every Asterisk event on
a subscribeAll ARI websocket (keys heard, the dialplan baseline's results,
channels alive), the webhooks the service sends, what Postgres was asked
(pg_stat_statements, pg_stat_database) and the ARI requests the service's
processes count on their /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import psycopg
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


# The bench's own statements name pg_stat_*: left out of the counts.
STATEMENTS = """
SELECT query, calls FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT LIKE '%pg_stat%'
ORDER BY calls DESC
"""
TRANSACTIONS = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
TOP_STATEMENTS = 15


@dataclass
class DatabaseCounters:
    """What every client asked the bench's Postgres, through a connection
    of the bench's own: top-level statements (BEGIN and COMMIT included) and
    transactions. The bench's few readings are transactions too (about 3 a
    window, left in)."""

    conn: psycopg.AsyncConnection[Any]
    # False where the server has no pg_stat_statements loaded
    statements_on: bool = False

    @classmethod
    async def connect(cls, url: str) -> DatabaseCounters:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        counters = cls(conn)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.execute("SELECT count(*) FROM pg_stat_statements")
            counters.statements_on = True
        except psycopg.Error as exc:
            logger.warning("bench: no statement counts (pg_stat_statements): %s", exc)
        return counters

    async def close(self) -> None:
        await self.conn.close()

    async def requests_today(self) -> int:
        cur = await self.conn.execute("SELECT count(*) FROM verifications WHERE created_at >= now() - interval '1 day'")
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def transactions(self) -> int:
        cur = await self.conn.execute(TRANSACTIONS)
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def reset_statements(self) -> None:
        if self.statements_on:
            await self.conn.execute("SELECT pg_stat_statements_reset()")

    async def statements(self) -> tuple[int | None, list[dict[str, Any]]]:
        """Statements since the reset, and the most called."""
        if not self.statements_on:
            return None, []
        cur = await self.conn.execute(STATEMENTS)
        rows = await cur.fetchall()
        top = [{"query": " ".join(str(q).split())[:200], "calls": int(n)} for q, n in rows[:TOP_STATEMENTS]]
        return sum(int(n) for _, n in rows), top


ARI_REQUESTS = re.compile(r'^ivr_auth_ari_requests_total\{method="(\w+)"\} (\S+)$', re.MULTILINE)


async def ari_requests(
    session: aiohttp.ClientSession, metrics_urls: dict[str, str]
) -> dict[str, dict[str, int]] | None:
    """Each process's ARI requests so far by HTTP method, from its /metrics;
    None when one of them does not count them."""
    out: dict[str, dict[str, int]] = {}
    for name, url in metrics_urls.items():
        try:
            async with session.get(url) as resp:
                text = await resp.text()
        except aiohttp.ClientError as exc:
            logger.warning("bench: %s: %s", url, exc)
            return None
        if "ivr_auth_ari_requests_total" not in text:
            return None
        out[name] = {method: int(float(n)) for method, n in ARI_REQUESTS.findall(text)}
    return out


def difference(
    after: dict[str, dict[str, int]] | None, before: dict[str, dict[str, int]] | None
) -> dict[str, dict[str, int]] | None:
    if after is None or before is None:
        return None
    return {
        name: {method: n - before.get(name, {}).get(method, 0) for method, n in by.items()}
        for name, by in after.items()
    }
