"""Webhooks against the real Postgres and a real HTTP receiver on loopback:
the outbox is written with the state change, delivered signed, retried,
given up, and logged."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp import web

from ivr_auth import config, connections, models, signature, states, webhooks
from ivr_auth import store as store_mod
from ivr_auth.store import outbox as outbox_mod
from ivr_auth.store import verifications

pytestmark = pytest.mark.integration

S = states.Status
Conn = psycopg.AsyncConnection[dict[str, Any]]
FAST = config.from_mapping(
    {
        "webhooks": {
            "backoff_base_seconds": 0.05,
            "backoff_max_seconds": 0.2,
            "poll_interval_seconds": 0.05,
            "timeout_seconds": 2,
            # The receivers here listen on loopback.
            "allow_private_networks": True,
        }
    }
)


@dataclass
class Receiver:
    """A web backend's webhook endpoint that answers from a script."""

    answers: list[int] = field(default_factory=list)
    default: int = 200
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        status = self.answers.pop(0) if self.answers else self.default
        if status in (301, 302):
            return web.Response(status=status, headers={"Location": "http://127.0.0.1:9/elsewhere"})
        return web.Response(status=status, text="ok")

    def event_ids(self) -> list[str]:
        return [h[signature.EVENT_ID_HEADER] for h, _ in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{port}/hook"
    yield found
    await runner.cleanup()


@pytest.fixture
async def me(db: Conn, tenant: tuple[models.Tenant, str]) -> AsyncIterator[models.Tenant]:
    yield tenant[0]
    await db.execute("DELETE FROM tenants WHERE id = %s", [tenant[0].id])


@pytest.fixture
async def outbox(store: store_mod.Store) -> outbox_mod.Outbox:
    return store.outbox


async def request_with_hook(store: store_mod.Store, tenant: models.Tenant, url: str | None) -> models.Verification:
    created = await store.verifications.create(
        verifications.NewVerification(
            tenant_id=tenant.id,
            # inbound without a number to call: never claimed by a controller.
            method="inbound",
            phone="+819012345678",
            line_type="mobile",
            code="123456",
            language="ja",
            reference="hook-test",
            callback_url=url,
            ttl_seconds=300,
            max_code_attempts=3,
            max_call_attempts=1,
            idempotency_key=None,
            request_hash=None,
        )
    )
    return created.verification


async def deliveries(db: Conn, verification_id: uuid.UUID) -> list[dict[str, Any]]:
    cur = await db.execute(
        "SELECT * FROM webhook_deliveries WHERE verification_id = %s ORDER BY created_at", [verification_id]
    )
    return await cur.fetchall()


async def send_until(sender: webhooks.Sender, done: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await done():
        assert time.monotonic() < deadline, "webhook not settled in time"
        await sender.send_due()
        await asyncio.sleep(0.05)


# --- the outbox is written with the change -------------------------------------------


async def test_terminal_change_writes_one_delivery(store: store_mod.Store, me: models.Tenant, db: Conn) -> None:
    v = await request_with_hook(store, me, "https://backend.example/hook")

    await store.verifications.cancel(me.id, v.id)

    (row,) = await deliveries(db, v.id)
    assert row["event_type"] == "verification.canceled"
    assert row["url"] == "https://backend.example/hook"
    # Written by the statement that settled it, without its body: the sender
    # renders it from the request, as it stands settled.
    assert row["body"] is None
    (claimed,) = [d for d in await store.outbox.claim(1000, 5.0) if d.id == row["id"]]
    body = json.loads(claimed.body)
    assert body["id"] == str(v.id)
    assert body["status"] == "canceled"
    assert body["event"]["id"] == str(row["id"])
    assert body["event"]["type"] == "verification.canceled"
    assert "code" not in body


async def test_a_change_made_here_hands_its_webhook_to_this_process_s_sender(
    local_stack: connections.Connections, me: models.Tenant, db: Conn
) -> None:
    handed: list[outbox_mod.Delivery] = []

    def take(delivery: outbox_mod.Delivery) -> bool:
        handed.append(delivery)
        return True

    async with store_mod.Store.from_url(local_stack.database_url, local_stack.server_secret) as own:
        own.verifications.hand_webhooks_to(take, 15.0)
        v = await request_with_hook(own, me, "https://backend.example/hook")
        await own.verifications.transition(v.id, [S.QUEUED], S.IN_CALL)
        done = await own.verifications.transition(v.id, [S.IN_CALL], S.FAILED)
        (row,) = await deliveries(db, v.id)
        # A sender elsewhere does not see it while it is held.
        claimed = [d for d in await own.outbox.claim(1000, 5.0) if d.verification_id == v.id]

    assert done is not None
    (delivery,) = handed
    assert (delivery.id, delivery.event_type, delivery.url) == (row["id"], "verification.failed", row["url"])
    assert delivery.webhook_secret_sealed is not None
    body = json.loads(delivery.body)
    assert (body["id"], body["status"], body["event"]["id"]) == (str(v.id), "failed", str(row["id"]))
    assert row["next_attempt_at"] > row["created_at"] + dt.timedelta(seconds=14)
    assert claimed == []


async def test_a_webhook_this_process_cannot_send_now_goes_to_every_sender(
    local_stack: connections.Connections, me: models.Tenant, db: Conn
) -> None:
    async with store_mod.Store.from_url(local_stack.database_url, local_stack.server_secret) as own:
        own.verifications.hand_webhooks_to(lambda d: False, 15.0)
        v = await request_with_hook(own, me, "https://backend.example/hook")
        await own.verifications.transition(v.id, [S.QUEUED], S.EXPIRED)
        claimed = [d for d in await own.outbox.claim(1000, 5.0) if d.verification_id == v.id]

    (delivery,) = claimed
    assert json.loads(delivery.body)["status"] == "expired"


async def test_no_delivery_without_a_url_or_for_a_passing_state(
    store: store_mod.Store, me: models.Tenant, db: Conn
) -> None:
    silent = await request_with_hook(store, me, None)
    await store.verifications.cancel(me.id, silent.id)
    passing = await request_with_hook(store, me, "https://backend.example/hook")
    await store.verifications.transition(passing.id, [S.QUEUED], S.IN_CALL)

    assert await deliveries(db, silent.id) == []
    assert await deliveries(db, passing.id) == []


async def test_delivered_and_then_verified_are_two_events(store: store_mod.Store, me: models.Tenant, db: Conn) -> None:
    v = await request_with_hook(store, me, "https://backend.example/hook")
    await store.verifications.transition(v.id, [S.QUEUED], S.IN_CALL)
    await store.verifications.transition(v.id, [S.IN_CALL], S.DELIVERED)

    await store.verifications.check_code(me.id, v.id, "123456", source="api")

    assert [r["event_type"] for r in await deliveries(db, v.id)] == [
        "verification.delivered",
        "verification.verified",
    ]


async def test_expiry_writes_a_delivery(store: store_mod.Store, me: models.Tenant, db: Conn) -> None:
    v = await request_with_hook(store, me, "https://backend.example/hook")
    await db.execute("UPDATE verifications SET expires_at = now() - interval '1 second' WHERE id = %s", [v.id])

    await store.verifications.expire_queued()

    assert [r["event_type"] for r in await deliveries(db, v.id)] == ["verification.expired"]


async def test_a_change_that_rolls_back_leaves_no_delivery(store: store_mod.Store, me: models.Tenant, db: Conn) -> None:
    v = await request_with_hook(store, me, "https://backend.example/hook")

    async def cancel_then_fail() -> None:
        async with store.db.transaction() as conn:
            await store.verifications._transition(conn, v.id, ["queued"], S.CANCELED, release=True)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await cancel_then_fail()

    assert await deliveries(db, v.id) == []
    assert (await store.verifications.get(me.id, v.id)).status is S.QUEUED


# --- sending ---------------------------------------------------------------------------


async def test_receiver_failing_twice_gets_the_event_once_delivered(
    store: store_mod.Store, me: models.Tenant, outbox: outbox_mod.Outbox, receiver: Receiver, db: Conn
) -> None:
    receiver.answers = [500, 503]
    v = await request_with_hook(store, me, receiver.url)
    await store.verifications.cancel(me.id, v.id)
    secret = await store.tenants.webhook_secret(me.id)
    assert secret is not None

    async with aiohttp.ClientSession() as session:
        sender = webhooks.Sender(FAST, outbox, session)

        async def delivered() -> bool:
            return bool((await deliveries(db, v.id))[0]["delivered_at"])

        await send_until(sender, delivered)

    (row,) = await deliveries(db, v.id)
    # Three POSTs of one event: the same id, the same body, each signed.
    assert receiver.event_ids() == [str(row["id"])] * 3
    assert {body for _, body in receiver.received} == {row["body"].encode()}
    for headers, body in receiver.received:
        signature.verify(secret, headers[signature.HEADER], body)
    assert row["attempts"] == 3
    log = (await outbox.for_request(v.id))[0]
    assert [a["status_code"] for a in log.attempt_log] == [500, 503, 200]
    assert log.delivered_at is not None


async def test_an_event_is_given_up_at_its_age_limit(
    store: store_mod.Store, me: models.Tenant, outbox: outbox_mod.Outbox, receiver: Receiver, db: Conn
) -> None:
    receiver.default = 500
    cfg = config.with_overrides(FAST, webhooks={"max_age_seconds": 0.5})
    v = await request_with_hook(store, me, receiver.url)
    await store.verifications.cancel(me.id, v.id)

    async with aiohttp.ClientSession() as session:
        sender = webhooks.Sender(cfg, outbox, session)

        async def gave_up() -> bool:
            return bool((await deliveries(db, v.id))[0]["gave_up_at"])

        await send_until(sender, gave_up)

    (row,) = await deliveries(db, v.id)
    assert row["delivered_at"] is None
    assert row["last_error"] == "HTTP 500"
    assert row["attempts"] == len(receiver.received) >= 2


async def test_redirects_are_not_followed(
    store: store_mod.Store, me: models.Tenant, outbox: outbox_mod.Outbox, receiver: Receiver, db: Conn
) -> None:
    receiver.answers = [302]
    v = await request_with_hook(store, me, receiver.url)
    await store.verifications.cancel(me.id, v.id)

    async with aiohttp.ClientSession() as session:
        sender = webhooks.Sender(FAST, outbox, session)

        async def delivered() -> bool:
            return bool((await deliveries(db, v.id))[0]["delivered_at"])

        await send_until(sender, delivered)

    log = (await outbox.for_request(v.id))[0]
    assert [a["status_code"] for a in log.attempt_log] == [302, 200]


async def test_unreachable_receiver_is_retried(
    store: store_mod.Store, me: models.Tenant, outbox: outbox_mod.Outbox, db: Conn
) -> None:
    # Port 9 (discard) on loopback: nothing listens; connection refused.
    v = await request_with_hook(store, me, "http://127.0.0.1:9/hook")
    await store.verifications.cancel(me.id, v.id)

    async with aiohttp.ClientSession() as session:
        sender = webhooks.Sender(FAST, outbox, session)

        async def tried_twice() -> bool:
            return bool((await deliveries(db, v.id))[0]["attempts"] >= 2)

        await send_until(sender, tried_twice)

    (row,) = await deliveries(db, v.id)
    assert row["delivered_at"] is None
    assert row["gave_up_at"] is None
    assert "ClientConnectorError" in row["last_error"]


async def test_two_senders_deliver_each_event_once(
    store: store_mod.Store, me: models.Tenant, outbox: outbox_mod.Outbox, receiver: Receiver, db: Conn
) -> None:
    requests = [await request_with_hook(store, me, receiver.url) for _ in range(20)]
    for v in requests:
        await store.verifications.cancel(me.id, v.id)
    ids = [v.id for v in requests]

    async with aiohttp.ClientSession() as session:
        cfg = config.with_overrides(FAST, webhooks={"concurrency": 3})
        first, second = webhooks.Sender(cfg, outbox, session), webhooks.Sender(cfg, outbox, session)

        async def all_delivered() -> bool:
            cur = await db.execute(
                "SELECT count(*) AS n FROM webhook_deliveries WHERE verification_id = ANY(%s) AND delivered_at IS NULL",
                [ids],
            )
            row = await cur.fetchone()
            return row is not None and row["n"] == 0

        deadline = time.monotonic() + 15
        while not await all_delivered():
            assert time.monotonic() < deadline
            await asyncio.gather(first.send_due(), second.send_due())

    mine = receiver.event_ids()
    assert len(mine) == 20
    assert len(set(mine)) == 20


async def test_tenant_without_a_secret_is_not_sent_unsigned(
    store: store_mod.Store, me: models.Tenant, outbox: outbox_mod.Outbox, receiver: Receiver, db: Conn
) -> None:
    await db.execute("UPDATE tenants SET webhook_secret_sealed = NULL WHERE id = %s", [me.id])
    v = await request_with_hook(store, me, receiver.url)
    await store.verifications.cancel(me.id, v.id)

    async with aiohttp.ClientSession() as session:
        sender = webhooks.Sender(FAST, outbox, session)

        async def tried() -> bool:
            return bool((await deliveries(db, v.id))[0]["attempts"] >= 1)

        await send_until(sender, tried)

    assert receiver.received == []
    (row,) = await deliveries(db, v.id)
    assert "no webhook secret" in row["last_error"]


async def test_rotated_secret_signs_from_then_on(store: store_mod.Store, me: models.Tenant) -> None:
    before = await store.tenants.webhook_secret(me.id)

    after = await store.tenants.rotate_webhook_secret(me.name)

    assert before is not None
    assert after != before
    assert await store.tenants.webhook_secret(me.id) == after


async def test_events_endpoint_shows_the_delivery_log(
    store: store_mod.Store, me: models.Tenant, tenant: tuple[models.Tenant, str], receiver: Receiver, db: Conn
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from ivr_auth.api import app as api_app

    v = await request_with_hook(store, me, receiver.url)
    await store.verifications.cancel(me.id, v.id)
    async with aiohttp.ClientSession() as session:
        sender = webhooks.Sender(FAST, store.outbox, session)

        async def delivered() -> bool:
            return bool((await deliveries(db, v.id))[0]["delivered_at"])

        await send_until(sender, delivered)

    async with TestClient(TestServer(api_app.make_app(config.Config(), store, {}))) as client:
        resp = await client.get(f"/v1/verifications/{v.id}/events", headers={"Authorization": f"Bearer {tenant[1]}"})
        body = await resp.json()

    (hook,) = body["webhooks"]
    assert hook["event_type"] == "verification.canceled"
    assert hook["delivered_at"] is not None
    assert [a["status_code"] for a in hook["attempt_log"]] == [200]
    assert "body" not in hook


async def test_private_addresses_are_not_called_by_default(
    store: store_mod.Store, me: models.Tenant, outbox: outbox_mod.Outbox, receiver: Receiver, db: Conn
) -> None:
    cfg = config.with_overrides(FAST, webhooks={"allow_private_networks": False})
    v = await request_with_hook(store, me, receiver.url)
    await store.verifications.cancel(me.id, v.id)

    async with aiohttp.ClientSession() as session:
        sender = webhooks.Sender(cfg, outbox, session)

        async def tried() -> bool:
            return bool((await deliveries(db, v.id))[0]["attempts"] >= 1)

        await send_until(sender, tried)

    assert receiver.received == []
    (row,) = await deliveries(db, v.id)
    assert "non-public address (127.0.0.1)" in row["last_error"]
