"""An aiohttp application served on a real port of loopback, the way the
runtime serves the API (``api_app.Runner``), for tests that speak real HTTP
to it (raw sockets, schemathesis)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from ivr_auth.api import app as api_app


@contextlib.asynccontextmanager
async def on_port(app: web.Application) -> AsyncIterator[str]:
    """``http://127.0.0.1:<port>`` while the block runs."""
    runner = api_app.Runner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
