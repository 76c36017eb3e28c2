"""Inbound slots: which one a controller takes, that it moves when another
websocket takes it over, and the claim of a call StasisBroadcast offers;
against a local ARI that keeps apps as Asterisk does (one websocket per
name, ``ApplicationReplaced`` to the one replaced, gone when it closes)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web

from ivr_auth import config, controller, metrics
from ivr_auth.ari import node as ari_node
from ivr_auth.ari import slots

BASE = "ivr.auth-inbound"


def test_slot_names() -> None:
    assert slots.app(BASE, 3) == "ivr.auth-inbound-3"
    assert slots.slot_of(BASE, "ivr.auth-inbound-12") == 12
    for other in ("ivr.auth-inbound", "ivr.auth-inbound-", "ivr.auth-inbound-x", "ivr.auth-inbound-01", "ivr-auth-1"):
        assert slots.slot_of(BASE, other) is None


def test_the_lowest_slot_no_one_holds_is_chosen() -> None:
    assert slots.choose(BASE, 8, []) == 1
    assert slots.choose(BASE, 8, ["ivr.auth-inbound-1", "ivr.auth-inbound-3", "ivr-auth-host-2"]) == 2
    assert slots.choose(BASE, 2, ["ivr.auth-inbound-1", "ivr.auth-inbound-2"]) is None


def test_the_broadcast_filter_matches_the_slots_only() -> None:
    pattern = slots.filter_regex(BASE)
    # No backslash: the dialplan's argument parser would eat it.
    assert pattern == "^ivr[.]auth-inbound-[0-9]+$"
    assert re.search(pattern, "ivr.auth-inbound-7")
    for other in ("ivrxauth-inbound-7", "ivr.auth-inbound", "ivr.auth-inbound-7x", "ivr.auth-inbound-host"):
        assert not re.search(pattern, other)


def test_a_pinned_slot_must_be_one_of_the_slots() -> None:
    assert config.from_mapping({"inbound": {"slots": 4, "slot": 4}}).inbound.slot == 4
    with pytest.raises(Exception, match=r"inbound\.slot"):
        config.from_mapping({"inbound": {"slots": 4, "slot": 5}})


class FakeAri:
    """Apps held by websockets, as Asterisk keeps them; claims answered with ``claim_status``."""

    def __init__(self) -> None:
        self.apps: dict[str, web.WebSocketResponse] = {}
        self.claims: list[tuple[str, str]] = []
        self.channels: dict[str, list[str]] = {}
        self.claim_status = 204
        # (channel, what was asked of it): variables set, dialplan continues, hangups.
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _events(self, request: web.Request) -> web.WebSocketResponse:
        app = request.query["app"]
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        replaced = self.apps.get(app)
        self.apps[app] = ws
        if replaced is not None:
            await replaced.send_json({"type": "ApplicationReplaced", "application": app})
        async for _ in ws:
            pass
        if self.apps.get(app) is ws:
            del self.apps[app]
        return ws

    async def _applications(self, request: web.Request) -> web.Response:
        listed = [{"name": name, "channel_ids": self.channels.get(name, [])} for name in self.apps]
        # An app whose websocket went is kept while channels are in it.
        listed += [{"name": name, "channel_ids": ids} for name, ids in self.channels.items() if name not in self.apps]
        return web.json_response(listed)

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response({"system": {"version": "22.10.1"}})

    async def _application(self, request: web.Request) -> web.Response:
        if request.match_info["name"] not in self.apps:
            raise web.HTTPNotFound()
        return web.json_response({"name": request.match_info["name"]})

    async def _claim(self, request: web.Request) -> web.Response:
        self.claims.append((request.query["channelId"], request.query["application"]))
        return web.Response(status=self.claim_status)

    async def _channel_request(self, request: web.Request) -> web.Response:
        asked = {"do": request.match_info["what"], **request.query}
        self.requests.append((request.match_info["id"], asked))
        return web.Response(status=204)

    async def _hangup(self, request: web.Request) -> web.Response:
        self.requests.append((request.match_info["id"], {"do": "hangup", **request.query}))
        return web.Response(status=204)

    async def __aenter__(self) -> FakeAri:
        app = web.Application()
        app.router.add_post("/ari/channels/{id}/{what}", self._channel_request)
        app.router.add_delete("/ari/channels/{id}", self._hangup)
        app.router.add_get("/ari/events", self._events)
        app.router.add_get("/ari/applications", self._applications)
        app.router.add_get("/ari/applications/{name}", self._application)
        app.router.add_get("/ari/asterisk/info", self._info)
        app.router.add_post("/ari/events/claim", self._claim)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/ari"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in list(self.apps.values()):
            await ws.close()
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    async with FakeAri() as found:
        yield found


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def node_for(fake: FakeAri, session: aiohttp.ClientSession, **kwargs: Any) -> ari_node.AriNode:
    return ari_node.AriNode(session, fake.url, "u", "p", "ivr-auth-c1", name="pbx1", inbound_app=BASE, **kwargs)


async def until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_a_node_takes_the_lowest_free_slot_on_a_websocket_of_its_own(
    fake: FakeAri, session: aiohttp.ClientSession
) -> None:
    other = await session.ws_connect(f"{fake.url.replace('http', 'ws')}/events?app={BASE}-1")
    node = node_for(fake, session)
    try:
        await node.start(timeout=5)
        assert node.inbound_app == f"{BASE}-2"
        assert set(fake.apps) == {f"{BASE}-1", f"{BASE}-2", "ivr-auth-c1"}
        assert node.is_inbound_app(f"{BASE}-5")
        assert not node.is_inbound_app("ivr-auth-c1")
    finally:
        await node.close()
        await other.close()


async def test_a_node_whose_slot_is_taken_over_moves_and_keeps_its_own_app(
    fake: FakeAri, session: aiohttp.ClientSession
) -> None:
    node = node_for(fake, session)
    try:
        await node.start(timeout=5)
        assert node.inbound_app == f"{BASE}-1"
        own = fake.apps["ivr-auth-c1"]
        intruder = await session.ws_connect(f"{fake.url.replace('http', 'ws')}/events?app={BASE}-1")
        await until(lambda: node.inbound_app == f"{BASE}-2")
        # The websocket of the controller's own app was never touched.
        assert fake.apps["ivr-auth-c1"] is own
        assert node.stream.connects == 1
        await intruder.close()
    finally:
        await node.close()


async def test_after_a_reconnect_a_node_keeps_its_slot_while_its_calls_are_in_it(
    fake: FakeAri, session: aiohttp.ClientSession
) -> None:
    node = node_for(fake, session)
    try:
        await node.start(timeout=5)
        assert node.inbound_app == f"{BASE}-1"
        # A call of ours in the slot; the slot's websocket drops.
        node.dispatcher.subscribe("ch-ours")
        fake.channels[f"{BASE}-1"] = ["ch-ours"]
        await fake.apps[f"{BASE}-1"].close()
        await until(lambda: node.inbound is not None and node.inbound.connects == 2, timeout=10)
        assert node.inbound_app == f"{BASE}-1"
        # Someone else's call in it: it is not ours to take back.
        fake.channels[f"{BASE}-1"] = ["ch-theirs"]
        await fake.apps[f"{BASE}-1"].close()
        await until(lambda: node.inbound is not None and node.inbound.connects == 3, timeout=10)
        assert node.inbound_app == f"{BASE}-2"
        # Free again: a reconnect keeps the slot it has.
        del fake.channels[f"{BASE}-1"]
        await fake.apps[f"{BASE}-2"].close()
        await until(lambda: node.inbound is not None and node.inbound.connects == 4, timeout=10)
        assert node.inbound_app == f"{BASE}-2"
    finally:
        await node.close()


async def test_a_pinned_slot_held_by_another_is_not_taken(
    fake: FakeAri, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    other = await session.ws_connect(f"{fake.url.replace('http', 'ws')}/events?app={BASE}-3")
    node = node_for(fake, session, inbound_slots=4, inbound_slot=3)
    try:
        await node.start(timeout=0.5)
        assert node.inbound_app is None
        assert "is held by another websocket" in caplog.text
        assert fake.apps[f"{BASE}-3"] is not None
        await other.close()
        await until(lambda: node.inbound_app == f"{BASE}-3", timeout=10)
    finally:
        await node.close()


async def test_no_free_slot_leaves_the_controller_dialling(
    fake: FakeAri, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    other = await session.ws_connect(f"{fake.url.replace('http', 'ws')}/events?app={BASE}-1")
    node = node_for(fake, session, inbound_slots=1)
    try:
        await node.start(timeout=0.5)
        assert node.inbound_app is None
        assert node.stream.connected
        assert "all 1 inbound slots are held" in caplog.text
    finally:
        await node.close()
        await other.close()


async def claims(m: metrics.Metrics) -> dict[str, float]:
    return {result: m.inbound_claims.labels("pbx1", result)._value.get() for result in ("won", "lost")}


async def test_a_broadcast_call_is_claimed_for_the_slot_held(fake: FakeAri, session: aiohttp.ClientSession) -> None:
    node = node_for(fake, session)
    m = metrics.Metrics(None)
    ctl = controller.Controller(config.Config(), cast(Any, None), node, name="c1", metrics=m)
    try:
        await node.start(timeout=5)
        ctl._claiming = True
        broadcast = {"type": "CallBroadcast", "application": f"{BASE}-1", "channel": {"id": "ch-1"}}
        await ctl.on_unrouted_event(broadcast)
        assert fake.claims == [("ch-1", f"{BASE}-1")]
        assert await claims(m) == {"won": 1, "lost": 0}
        # Another controller won it (409), or the offer was over (404): normal.
        for status in (409, 404):
            fake.claim_status = status
            await ctl.on_unrouted_event(broadcast)
        assert await claims(m) == {"won": 1, "lost": 2}
        # A controller draining its calls leaves new ones to the others.
        ctl._claiming = False
        await ctl.on_unrouted_event(broadcast)
        assert len(fake.claims) == 3
    finally:
        await node.close()


async def test_a_call_reaching_a_draining_controllers_slot_is_passed_on_to_the_next(
    fake: FakeAri, session: aiohttp.ClientSession
) -> None:
    """Where Asterisk has no StasisBroadcast the dialplan sends calls into
    the slots in turn: one reaching the slot of a controller that drains goes
    back to the dialplan's slot loop at the next slot, not into a call that
    the controller would not see through."""
    node = node_for(fake, session)
    ctl = controller.Controller(config.Config(), cast(Any, None), node, name="c1")
    try:
        await node.start(timeout=5)
        ctl._claiming = False
        start = {
            "type": "StasisStart",
            "application": f"{BASE}-1",
            "args": ["0312345678"],
            "channel": {"id": "in-1", "dialplan": {"context": "ivr-auth-inbound", "exten": "0312345678"}},
        }
        await ctl.on_unrouted_event(start)

        assert fake.requests == [
            ("in-1", {"do": "variable", "variable": "IVRAUTH_SLOT", "value": "2"}),
            ("in-1", {"do": "continue", "context": "ivr-auth-inbound", "extension": "0312345678", "label": "slot"}),
        ]
        assert ctl.calls_in_progress == 0
        # Nowhere to go back to (no dialplan place given): refused, not left hanging.
        fake.requests.clear()
        await ctl.on_unrouted_event({**start, "channel": {"id": "in-2"}})
        assert fake.requests == [("in-2", {"do": "hangup", "reason": "congestion"})]
    finally:
        await node.close()
