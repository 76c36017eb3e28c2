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

from ivr_auth import metrics
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


async def test_a_reconnect_is_counted_and_the_gauge_follows_the_websocket() -> None:
    accepted = 0
    drop_first = asyncio.Event()

    async def events(request: web.Request) -> web.WebSocketResponse:
        nonlocal accepted
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        accepted += 1
        if accepted == 1:
            await drop_first.wait()
            await ws.close()
        else:
            with contextlib.suppress(asyncio.CancelledError):
                async for _ in ws:
                    pass
        return ws

    app = web.Application()
    app.router.add_get("/ari/events", events)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    m = metrics.Metrics(None)
    async with aiohttp.ClientSession() as session:
        node = ari_node.AriNode(session, f"http://127.0.0.1:{port}/ari", "u", "p", "app", name="pbx1", metrics=m)
        assert await _value(m, "ivr_auth_ari_connected") == 0
        task = asyncio.create_task(node.stream.run())
        try:
            await node.stream.wait_connected(5)
            assert await _value(m, "ivr_auth_ari_connected") == 1
            assert await _value(m, "ivr_auth_ari_reconnects_total") == 0
            drop_first.set()
            async with asyncio.timeout(5):
                while node.stream.connects < 2 or not node.stream.connected:
                    await asyncio.sleep(0.01)
            assert await _value(m, "ivr_auth_ari_reconnects_total") == 1
            assert await _value(m, "ivr_auth_ari_connected") == 1
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert await _value(m, "ivr_auth_ari_connected") == 0
    await runner.cleanup()


async def test_the_node_reads_its_asterisk_at_each_connect(caplog: pytest.LogCaptureFixture) -> None:
    """An Asterisk that comes back upgraded is seen as such: the release, the
    features it gates, the info gauge's label; an ended one is warned of."""
    versions = ["16.28.0~dfsg-0+deb11u10", "22.10.1+dfsg+~cs6.17.60671434-1"]
    accepted = 0
    drop_first = asyncio.Event()

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"system": {"version": versions[min(accepted, 2) - 1]}})

    async def events(request: web.Request) -> web.WebSocketResponse:
        nonlocal accepted
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        accepted += 1
        if accepted == 1:
            await drop_first.wait()
            await ws.close()
        else:
            with contextlib.suppress(asyncio.CancelledError):
                async for _ in ws:
                    pass
        return ws

    app = web.Application()
    app.router.add_get("/ari/events", events)
    app.router.add_get("/ari/asterisk/info", info)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    m = metrics.Metrics(None)
    connects = 0

    async def on_connect() -> None:
        nonlocal connects
        connects += 1

    async with aiohttp.ClientSession() as session:
        node = ari_node.AriNode(
            session, f"http://127.0.0.1:{port}/ari", "u", "p", "app", name="pbx1", metrics=m, on_connect=on_connect
        )
        assert node.release is None
        assert not node.has(release.Feature.REST_OVER_WEBSOCKET)
        task = asyncio.create_task(node.stream.run())
        try:
            with caplog.at_level(logging.INFO, logger="ivr_auth.ari.node"):
                await node.stream.wait_connected(5)
            assert node.release is not None
            assert node.release.version == (16, 28, 0)
            assert not node.has(release.Feature.REST_OVER_WEBSOCKET)
            assert "Asterisk 16 reached its end of life in October 2023" in caplog.text
            assert await _info(m) == {"16.28.0": 1.0}
            caplog.clear()
            drop_first.set()
            async with asyncio.timeout(5):
                while node.stream.connects < 2 or not node.stream.connected:
                    await asyncio.sleep(0.01)
            assert node.release is not None
            assert node.release.version == (22, 10, 1)
            assert node.has(release.Feature.STASIS_BROADCAST)
            assert "end of life" not in caplog.text
            assert await _info(m) == {"22.10.1": 1.0}
            # The caller's own on_connect still runs, after the version is read.
            assert connects == 2
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await runner.cleanup()


async def _info(m: metrics.Metrics) -> dict[str, float]:
    text = (await m.exposition()).decode()
    return {
        s.labels["version"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ivr_auth_asterisk_info" and s.labels["node"] == "pbx1"
    }
