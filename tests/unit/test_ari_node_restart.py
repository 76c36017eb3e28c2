"""A node's Asterisk restarting is seen when its websocket connects again
(``GET /asterisk/info``'s startup time changed): the calls it had were
ended by the restart, not by their callers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from ivr_auth.ari import node as ari_node


class Info:
    def __init__(self) -> None:
        self.startup = "2026-12-06T10:00:00.000+0000"
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        return web.json_response({"system": {"version": "22.10.1"}, "status": {"startup_time": self.startup}})


@pytest.fixture
async def info() -> AsyncIterator[Info]:
    found = Info()
    app = web.Application()
    app.router.add_get("/ari/asterisk/info", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/ari"  # type: ignore[union-attr]
    yield found
    await runner.cleanup()


async def test_a_changed_startup_time_is_a_restart(info: Info) -> None:
    async with aiohttp.ClientSession() as session:
        node = ari_node.AriNode(session, info.url, "u", "p", "ivr-auth-c1")
        await node.read_release()
        assert not node.restarted  # the first connection: nothing to compare with
        await node.read_release()
        assert not node.restarted  # the websocket came back, Asterisk did not restart

        info.startup = "2026-12-06T10:05:00.000+0000"
        await node.read_release()
        assert node.restarted
        await node.read_release()
        assert not node.restarted
