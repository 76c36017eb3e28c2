"""The node's connection gauge and reconnect counter, against a local
websocket that drops the first connection."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from ivr_auth import metrics
from ivr_auth.ari import node as ari_node


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
