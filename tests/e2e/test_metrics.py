"""A controller-only process's own /metrics after a real verified DTMF call
with a webhook: the latency histograms, the webhook attempts and the ARI
connection, and none of the database's figures (the API serves those)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from ivr_auth import config
from ivr_auth_devkit import sipp
from ivr_auth_devkit.stack import install
from tests.e2e.conftest import Api, Starter, service_config

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[bytes]]]:
    got: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.read())
        return web.Response(text="thanks")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook", got  # type: ignore[union-attr]
    await runner.cleanup()


async def scrape(session: aiohttp.ClientSession, url: str) -> Samples:
    async with session.get(url) as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_controller_only_process_serves_its_metrics(
    api: Api,
    start_service: Starter,
    http_session: aiohttp.ClientSession,
    receiver: tuple[str, list[bytes]],
    stack_config: config.Config,
) -> None:
    cfg = service_config(metrics={"listen": f"127.0.0.1:{free_port()}"})
    rt = await start_service(api=False, cfg=cfg)
    assert rt.http_url is None
    assert rt.metrics_url is not None
    node = rt.node.name if rt.node else ""
    before = await scrape(http_session, rt.metrics_url)
    assert before[("ivr_auth_ari_connected", (("node", node),))] == 1
    assert before[("ivr_auth_ari_reconnects_total", (("node", node),))] == 0
    # The Asterisk the node runs, as the stack's own installation says it is.
    ours = install.resolve(stack_config.stack).version()
    assert ours is not None
    assert before[("ivr_auth_asterisk_info", (("node", node), ("version", ".".join(map(str, ours)))))] == 1
    assert not any(name == "ivr_auth_database_up" for name, _ in before)

    url, hooks = receiver
    created = await api.create("090-1234-5678", callback_url=url)
    async with sipp.Handset(port=cfg.trunk.port, host=cfg.trunk.host, keys=created["code"] + "#") as phone:
        await api.wait_for(created["id"], {"verified"})
        await phone.wait()
    # The sender counts a delivery once the receiver's answer is recorded.
    delivered = ("ivr_auth_webhook_attempts_total", (("result", "delivered"),))
    deadline = time.monotonic() + 15
    while (after := await scrape(http_session, rt.metrics_url)).get(delivered, 0) < 1:
        assert time.monotonic() < deadline, f"{len(hooks)} webhook(s) received, no delivery counted"
        await asyncio.sleep(0.1)

    dtmf = (("method", "dtmf"),)
    assert after[("ivr_auth_accept_to_invite_seconds_count", dtmf)] >= 1
    assert after[("ivr_auth_accept_to_invite_seconds_bucket", (("le", "+Inf"), ("method", "dtmf")))] >= 1
    assert after[("ivr_auth_answer_to_result_seconds_count", dtmf)] >= 1
    assert after[("ivr_auth_result_to_webhook_seconds_count", ())] >= 1
    assert after[("ivr_auth_ari_connected", (("node", node),))] == 1
    # No label carries the phone number or the request.
    assert not any("12345678" in value or created["id"] in value for _, labels in after for _, value in labels)

    await rt.stop(grace=5)
    with pytest.raises(aiohttp.ClientConnectionError):
        await scrape(http_session, rt.metrics_url)


async def test_api_and_controller_in_one_process_share_one_metrics(
    start_service: Starter, http_session: aiohttp.ClientSession
) -> None:
    rt = await start_service(api=True, dialer=True)
    assert rt.controller is not None
    assert rt.webhooks is not None
    assert rt.controller.metrics is rt.metrics
    assert rt.webhooks.metrics is rt.metrics
    assert rt.metrics_url is None  # the API serves /metrics
    got = await scrape(http_session, f"{rt.http_url}/metrics")
    assert got[("ivr_auth_database_up", ())] == 1
    assert any(name == "ivr_auth_ari_connected" and value == 1 for (name, _), value in got.items())
