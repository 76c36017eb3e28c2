"""A web backend's view of webhooks: a real call ends, and the signed
event reaches its endpoint without any polling."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from ivr_auth import models, signature
from ivr_auth import store as store_mod
from ivr_auth_devkit import sipp
from tests.e2e.conftest import Api, Starter, service_config

pytestmark = pytest.mark.e2e


class Backend:
    def __init__(self) -> None:
        self.events: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def hook(self, request: web.Request) -> web.Response:
        self.events.append((dict(request.headers), await request.read()))
        return web.Response(text="thanks")

    async def wait(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"{len(self.events)} webhook(s) of {count} after {timeout}s"
            await asyncio.sleep(0.05)


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    found = Backend()
    app = web.Application()
    app.router.add_post("/ivr-auth/events", found.hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/ivr-auth/events"  # type: ignore[union-attr]
    yield found
    await runner.cleanup()


async def test_verified_call_sends_a_signed_webhook(
    api: Api,
    start_service: Starter,
    backend: Backend,
    store: store_mod.Store,
    tenant: tuple[models.Tenant, str],
) -> None:
    await start_service(api=False)
    created = await api.create("090-1234-5678", callback_url=backend.url)
    cfg = service_config()
    async with sipp.Handset(port=cfg.trunk.port, host=cfg.trunk.host, keys=created["code"] + "#") as phone:
        await backend.wait(1)
        await phone.wait()

    ((headers, raw),) = backend.events
    secret = await store.tenants.webhook_secret(tenant[0].id)
    assert secret is not None
    signature.verify(secret, headers[signature.HEADER], raw)
    body = json.loads(raw)
    assert body["id"] == created["id"]
    assert body["status"] == "verified"
    assert body["event"]["type"] == "verification.verified"
    assert headers[signature.EVENT_ID_HEADER] == body["event"]["id"]
    assert "code" not in body
    # The sender records the attempt just after the backend answered.
    deadline = time.monotonic() + 10
    while not (log := await api.events(created["id"]))["webhooks"][0]["delivered_at"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    (hook,) = log["webhooks"]
    assert hook["event_id"] == body["event"]["id"]
    assert [a["status_code"] for a in hook["attempt_log"]] == [200]
