"""The node's connection gauge, reconnect counter and Asterisk release,
against a local websocket that drops the first connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from ivr_auth import metrics, tasks
from ivr_auth.ari import node as ari_node
from ivr_auth.ari import release


async def _value(m: metrics.Metrics, name: str) -> float:
    text = (await m.exposition()).decode()
    return next(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.labels == {"node": "pbx1"}
    )


class FlakyAsterisk:
    """A local ARI whose events websocket drops its first connection when
    told to; GET /asterisk/info answers the version of the connection's turn
    (``versions``), or 404 when there are none."""

    def __init__(self, versions: tuple[str, ...] = ()) -> None:
        self.versions = versions
        self.accepted = 0
        self.drop_first = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _events(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.accepted += 1
        if self.accepted == 1:
            await self.drop_first.wait()
            await ws.close()
        else:
            with contextlib.suppress(asyncio.CancelledError):
                async for _ in ws:
                    pass
        return ws

    async def _info(self, request: web.Request) -> web.Response:
        if not self.versions:
            raise web.HTTPNotFound()
        version = self.versions[min(self.accepted, len(self.versions)) - 1]
        return web.json_response({"system": {"version": version}})

    async def __aenter__(self) -> FlakyAsterisk:
        app = web.Application()
        app.router.add_get("/ari/events", self._events)
        app.router.add_get("/ari/asterisk/info", self._info)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/ari"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def test_a_reconnect_is_counted_and_the_gauge_follows_the_websocket() -> None:
    m = metrics.Metrics(None)
    async with FlakyAsterisk() as asterisk, aiohttp.ClientSession() as session:
        node = ari_node.AriNode(session, asterisk.url, "u", "p", "app", name="pbx1", metrics=m)
        assert await _value(m, "ivr_auth_ari_connected") == 0
        task = asyncio.create_task(node.stream.run())
        try:
            await node.stream.wait_connected(5)
            assert await _value(m, "ivr_auth_ari_connected") == 1
            assert await _value(m, "ivr_auth_ari_reconnects_total") == 0
            # An Asterisk that does not say its version: the node goes on without it.
            assert node.release is None
            asterisk.drop_first.set()
            await _reconnected(node)
            assert await _value(m, "ivr_auth_ari_reconnects_total") == 1
            assert await _value(m, "ivr_auth_ari_connected") == 1
        finally:
            await tasks.cancel(task)
        assert await _value(m, "ivr_auth_ari_connected") == 0


async def test_the_node_reads_its_asterisk_at_each_connect(caplog: pytest.LogCaptureFixture) -> None:
    """An Asterisk that comes back upgraded is seen as such: the release, the
    features it gates, the info gauge's label; an ended one is warned of."""
    m = metrics.Metrics(None)
    connects = 0

    async def on_connect() -> None:
        nonlocal connects
        connects += 1

    versions = ("16.28.0~dfsg-0+deb11u10", "22.10.1+dfsg+~cs6.17.60671434-1")
    async with FlakyAsterisk(versions) as asterisk, aiohttp.ClientSession() as session:
        node = ari_node.AriNode(session, asterisk.url, "u", "p", "app", name="pbx1", metrics=m, on_connect=on_connect)
        assert node.release is None
        assert not node.has(release.Feature.REST_OVER_WEBSOCKET)
        task = asyncio.create_task(node.stream.run())
        try:
            with caplog.at_level(logging.INFO, logger="ivr_auth.ari.node"):
                await node.stream.wait_connected(5)
            assert node.release == release.Release((16, 28, 0), versions[0])
            assert not node.has(release.Feature.REST_OVER_WEBSOCKET)
            assert "Asterisk 16 reached its end of life in October 2023" in caplog.text
            assert await _info(m) == {"16.28.0": 1.0}
            caplog.clear()
            asterisk.drop_first.set()
            await _reconnected(node)
            assert node.release == release.Release((22, 10, 1), versions[1])
            assert node.has(release.Feature.STASIS_BROADCAST)
            assert "end of life" not in caplog.text
            assert await _info(m) == {"22.10.1": 1.0}
            # The caller's own on_connect still runs, after the version is read.
            assert connects == 2
        finally:
            await tasks.cancel(task)


async def _reconnected(node: ari_node.AriNode) -> None:
    async with asyncio.timeout(5):
        while node.stream.connects < 2 or not node.stream.connected:
            await asyncio.sleep(0.01)


async def _info(m: metrics.Metrics) -> dict[str, float]:
    text = (await m.exposition()).decode()
    return {
        s.labels["version"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ivr_auth_asterisk_info" and s.labels["node"] == "pbx1"
    }
