"""The SMS sender against the real Postgres of the local stack, with a fake
carrier in place of SMPP (the SMSC end to end is tests/e2e's): two senders
share the outbox through their leases and send nothing twice; NOTIFY wakes
a sender between its polls; a refusal, a passing failure, a receipt (also
one that beats the submit's record) and a shutdown go through the real
store to the request. And a runtime with the sender bound to the stack's
SMSC reports each carrier on /readyz and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import psycopg
import pytest

from ivr_auth import config, connections, metrics, models, runtime, states
from ivr_auth import store as store_mod
from ivr_auth.sms import sender, smpp
from ivr_auth.store import sms as sms_store
from ivr_auth.store import verifications
from ivr_auth_devkit import stack
from tests.support import sms_carrier

pytestmark = pytest.mark.integration

S = states.Status
Conn = psycopg.AsyncConnection[dict[str, Any]]
Store = store_mod.Store
CODE = "582013"
WAIT = 20.0  # seconds a test waits for what the senders do


@pytest.fixture
async def quiet_outbox(db: Conn) -> None:
    """No SMS an earlier test left due is sent by this one's senders."""
    await db.execute(
        "UPDATE sms_messages SET status = 'canceled', outcome = 'canceled', finished_at = now(),"
        " lease_owner = NULL, lease_expires_at = NULL WHERE status IN ('queued', 'sending')"
    )


@pytest.fixture
async def me(db: Conn, tenant: tuple[models.Tenant, str], quiet_outbox: None) -> AsyncIterator[models.Tenant]:
    yield tenant[0]
    await db.execute("DELETE FROM tenants WHERE id = %s", [tenant[0].id])


def sender_config(*, window: int = 10, poll: float = 0.2, lease: float = 30.0) -> config.Config:
    return config.from_mapping(
        {
            "sms": {
                "poll_interval_seconds": poll,
                "lease_seconds": lease,
                "carriers": [{"name": "fake", "window": window}],
            }
        }
    )


async def new_sms(store: Store, tenant: models.Tenant, phone: str = "+819012345678") -> models.Verification:
    created = await store.verifications.create(
        verifications.NewVerification(
            tenant_id=tenant.id,
            method="sms",
            phone=phone,
            line_type="mobile",
            code=CODE,
            language="en",
            reference=None,
            callback_url=None,
            ttl_seconds=600,
            max_code_attempts=3,
            max_call_attempts=1,
            idempotency_key=None,
            request_hash=None,
        )
    )
    return created.verification


@contextlib.asynccontextmanager
async def running(
    store: Store, cfg: config.Config, owner: str, *, listen: bool = True
) -> AsyncIterator[tuple[sender.Sender, sms_carrier.Carriers]]:
    """A started sender on the real outbox with fake carriers; stopped after."""
    carriers = sms_carrier.Carriers()
    s = sender.Sender(
        cfg,
        store.sms,
        owner=owner,
        metrics=metrics.Metrics(None),
        make_carrier=carriers,
        listen=(lambda: store.db.listen([sms_store.SMS_CHANNEL])) if listen else None,
    )
    await s.start()
    try:
        yield s, carriers
    finally:
        for carrier in carriers.values():
            carrier.release.set()
        await s.stop(grace=5)


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Until ``check`` holds (once: it may take what it finds)."""
    try:
        async with asyncio.timeout(WAIT):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {WAIT:g} s: {what}") from None


async def rows(db: Conn, tenant: models.Tenant) -> list[dict[str, Any]]:
    cur = await db.execute(
        "SELECT m.*, v.phone FROM sms_messages m JOIN verifications v ON v.id = m.verification_id"
        " WHERE m.tenant_id = %s ORDER BY v.phone",
        [tenant.id],
    )
    return await cur.fetchall()


async def claimed_own(store: Store, request: models.Verification) -> sms_store.Outgoing:
    [outgoing] = await store.sms.claim(f"test-{uuid.uuid4().hex[:6]}", 10, 30)
    assert outgoing.verification_id == request.id
    return outgoing


# --- sharing the outbox -----------------------------------------------------------------


async def test_two_senders_share_the_outbox_through_leases_and_send_each_sms_once(
    store: Store, db: Conn, me: models.Tenant
) -> None:
    phones = [f"+8190{n:08d}" for n in range(10)]
    for phone in phones:
        await new_sms(store, me, phone)
    cfg = sender_config(window=3)
    async with running(store, cfg, "sender-a") as (a, a_carriers), running(store, cfg, "sender-b") as (b, b_carriers):
        held = [a_carriers["fake"], b_carriers["fake"]]
        for carrier in held:
            carrier.hold = True

        async def both_full() -> bool:
            return all(len(carrier.submits) == 3 for carrier in held)

        await until(both_full, "each sender claimed its window's worth")
        leased = {row["phone"]: row["lease_owner"] for row in await rows(db, me) if row["status"] == "sending"}
        # Each sender's three are leased to it, and to it alone.
        assert sorted(leased.values()) == ["sender-a"] * 3 + ["sender-b"] * 3
        assert {dest for dest, _, _ in held[0].submits} == {p for p, o in leased.items() if o == "sender-a"}
        assert {dest for dest, _, _ in held[1].submits} == {p for p, o in leased.items() if o == "sender-b"}
        for carrier in held:
            carrier.release.set()

        async def all_sent() -> bool:
            return all(row["status"] == "sent" for row in await rows(db, me))

        await until(all_sent, "every SMS sent")
        sent_to = sorted(dest for carrier in held for dest, _, _ in carrier.submits)
        assert sent_to == phones  # each once, none twice
        assert a._held == b._held == {}
    for row in await rows(db, me):
        assert (row["attempts"], row["lease_owner"], row["carrier"], row["parts"]) == (1, None, "fake", 1)
        assert (await store.verifications.get(me.id, row["verification_id"])).status is S.SENT


async def test_notify_wakes_a_sender_between_its_polls(store: Store, db: Conn, me: models.Tenant) -> None:
    # A poll this long never comes round within the test: only NOTIFY can wake it.
    cfg = sender_config(poll=600.0, lease=1800.0)
    async with running(store, cfg, "sender-listening") as (s, carriers):

        async def listening() -> bool:
            return s.listening

        await until(listening, "the sender listens")
        await asyncio.sleep(0.2)  # its first pass after LISTEN, on nothing
        request = await new_sms(store, me)

        async def sent() -> bool:
            return (await store.verifications.get(me.id, request.id)).status is S.SENT

        await until(sent, "the SMS went out on its NOTIFY")
        assert [dest for dest, _, _ in carriers["fake"].submits] == [request.phone]


# --- each answer through the real store ------------------------------------------------


def one_sender(store: Store) -> tuple[sender.Sender, sms_carrier.FakeCarrier]:
    carriers = sms_carrier.Carriers()
    s = sender.Sender(sender_config(), store.sms, owner="test", metrics=metrics.Metrics(None), make_carrier=carriers)
    return s, carriers["fake"]


async def sent_once(
    store: Store, request: models.Verification, answer: Exception | None = None
) -> tuple[sender.Sender, sms_carrier.FakeCarrier]:
    """The request's SMS claimed, submitted (the carrier answering
    ``answer``, else accepting it) and recorded by a sender."""
    s, carrier = one_sender(store)
    carrier.answer = answer
    outgoing = await claimed_own(store, request)
    await s.record(outgoing, await s.submit(outgoing))
    return s, carrier


async def test_a_refused_sms_rejects_its_request(store: Store, db: Conn, me: models.Tenant) -> None:
    request = await new_sms(store, me)
    await sent_once(store, request, smpp.SubmitRefused("invalid destination", command_status=0x0B))

    done = await store.verifications.get(me.id, request.id)
    assert (done.status, done.reason) == (S.REJECTED, "sms_rejected")
    [row] = await rows(db, me)
    assert (row["status"], row["outcome"], row["command_status"], row["carrier"]) == ("failed", "refused", 0x0B, "fake")


async def test_a_failed_submit_is_due_again_after_its_backoff(store: Store, db: Conn, me: models.Tenant) -> None:
    request = await new_sms(store, me)
    throttled = smpp.SubmitFailed("carrier fake: submit_sm_resp ESME_RTHROTTLED, for now", command_status=0x58)
    await sent_once(store, request, throttled)

    [row] = await rows(db, me)
    assert (row["status"], row["attempts"], row["lease_owner"]) == ("queued", 1, None)
    assert "THROTTLED" in row["last_error"]
    wait = (row["next_attempt_at"] - dt.datetime.now(dt.UTC)).total_seconds()
    assert sender.RETRY_BASE_SECONDS / 2 - 1 <= wait <= sender.RETRY_BASE_SECONDS
    assert (await store.verifications.get(me.id, request.id)).status is S.QUEUED
    # Not due yet: no sender takes it now.
    assert await store.sms.claim("another", 10, 30) == []


async def test_a_retry_for_a_canceled_request_drops_the_sms(store: Store, db: Conn, me: models.Tenant) -> None:
    request = await new_sms(store, me)
    s, carrier = one_sender(store)
    carrier.answer = smpp.SubmitFailed("connection lost: reset")
    outgoing = await claimed_own(store, request)
    await store.verifications.cancel(me.id, request.id)
    await s.record(outgoing, await s.submit(outgoing))

    [row] = await rows(db, me)
    assert (row["status"], row["outcome"]) == ("canceled", "canceled")


async def test_receipts_deliver_the_request_even_one_that_beats_the_submits_record(
    store: Store, db: Conn, me: models.Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender, "RECEIPT_RETRY_SECONDS", (0.1,) * 20)
    request = await new_sms(store, me)
    s, carrier = one_sender(store)
    outgoing = await claimed_own(store, request)
    result = await s.submit(outgoing)
    [message_id] = carrier.accepted
    # The SMSC's receipt comes before the submitted row is written.
    await s.on_receipt(smpp.Receipt("fake", message_id, "DELIVRD", "000"))
    assert len(s._receipts) == 1
    await s.record(outgoing, result)
    [retrying] = s._receipts
    assert await retrying is True

    done = await store.verifications.get(me.id, request.id)
    assert (done.status, done.reason) == (S.DELIVERED, "sms_delivered")
    registry = s.metrics.registry
    assert registry.get_sample_value("ivr_auth_sms_receipts_total", {"carrier": "fake", "stat": "DELIVRD"}) == 1
    assert registry.get_sample_value("ivr_auth_sms_receipts_total", {"carrier": "fake", "stat": "unmatched"}) == 0


async def test_a_receipt_for_no_message_is_counted_unmatched(store: Store, me: models.Tenant) -> None:
    s, _ = one_sender(store)
    receipt = smpp.Receipt("fake", f"nobody-{uuid.uuid4()}", "UNDELIV", "001")
    assert await s.take_receipt(receipt, delays=(0.05, 0.05)) is False
    registry = s.metrics.registry
    assert registry.get_sample_value("ivr_auth_sms_receipts_total", {"carrier": "fake", "stat": "unmatched"}) == 1


async def test_an_undeliverable_receipt_makes_the_request_unreachable(
    store: Store, db: Conn, me: models.Tenant
) -> None:
    request = await new_sms(store, me)
    s, carrier = await sent_once(store, request)
    await s.on_receipt(smpp.Receipt("fake", carrier.accepted[0], "UNDELIV", "001"))

    done = await store.verifications.get(me.id, request.id)
    assert (done.status, done.reason) == (S.UNREACHABLE, "sms_undeliverable")


# --- shutdown ---------------------------------------------------------------------------


async def test_a_stopping_sender_hands_back_what_it_did_not_submit(store: Store, db: Conn, me: models.Tenant) -> None:
    request = await new_sms(store, me)
    async with running(store, sender_config(), "sender-stopping") as (s, carriers):
        carriers["fake"].hold = True

        async def submitting() -> bool:
            return bool(carriers["fake"].submits)

        await until(submitting, "the submit began")
        [row] = await rows(db, me)
        assert (row["status"], row["lease_owner"]) == ("sending", "sender-stopping")
        await s.stop(grace=0)

    [row] = await rows(db, me)
    assert (row["status"], row["lease_owner"]) == ("queued", None)
    assert row["next_attempt_at"] <= dt.datetime.now(dt.UTC)  # due at once, not after its lease
    assert (await store.verifications.get(me.id, request.id)).status is S.QUEUED
    assert [o.verification_id for o in await store.sms.claim("the-next-sender", 10, 30)] == [request.id]


async def test_a_killed_sender_leaves_its_claims_to_their_leases(store: Store, db: Conn, me: models.Tenant) -> None:
    await new_sms(store, me)
    async with running(store, sender_config(lease=3.0, poll=1.0), "sender-killed") as (s, carriers):
        carriers["fake"].hold = True

        async def submitting() -> bool:
            return bool(carriers["fake"].submits)

        await until(submitting, "the submit began")
        await s.kill()
        [row] = await rows(db, me)
        assert (row["status"], row["lease_owner"]) == ("sending", "sender-killed")
        assert await store.sms.claim("the-next-sender", 10, 3) == []  # leased still

        async def lapsed() -> bool:
            return bool(await store.sms.claim("the-next-sender", 10, 30))

        await until(lapsed, "the lease ran out and another sender took it")
    [row] = await rows(db, me)
    assert (row["lease_owner"], row["attempts"]) == ("the-next-sender", 2)


# --- the process ------------------------------------------------------------------------


async def test_readiness_needs_one_carrier_and_metrics_report_each(
    stack_config: config.Config, local_stack: connections.Connections, http_session: aiohttp.ClientSession
) -> None:
    smsc = stack.smsc_carrier(stack_config)
    assert smsc is not None, "the test stack's SMSC is not running"
    # A backup carrier nothing listens on: its binds fail, and it says so.
    down = {"name": "down", "host": "127.0.0.1", "port": 9, "priority": 1}
    fast = {"reconnect_min_seconds": 0.2, "reconnect_max_seconds": 1.0}
    cfg = config.from_mapping({"sms": {"carriers": [{**smsc, **fast}, {**down, **fast}]}})
    rt = runtime.Runtime(
        cfg, local_stack, api=True, dialer=False, sms=True, name=f"test-sms-{uuid.uuid4().hex[:8]}", http_port=0
    )
    await rt.start()
    try:
        assert rt.sms is not None

        async def bound() -> bool:
            return rt.sms is not None and rt.sms.route() is not None

        await until(bound, "bound to the stack's SMSC")
        async with http_session.get(f"{rt.http_url}/readyz") as resp:
            # Ready: one carrier is bound; the backup that is down shows in the metrics.
            assert resp.status == 200
            ready = await resp.json()
        assert ready["checks"]["smpp"] == "ok"
        assert ready["checks"]["postgres"] == "ok"
        async with http_session.get(f"{rt.http_url}/metrics") as resp:
            exposed = await resp.text()
        assert f'ivr_auth_smpp_bound{{carrier="{smsc["name"]}"}} 1.0' in exposed
        assert 'ivr_auth_smpp_bound{carrier="down"} 0.0' in exposed
        assert f'ivr_auth_smpp_binds_total{{carrier="{smsc["name"]}",result="ok"}} 1.0' in exposed
        assert 'ivr_auth_smpp_binds_total{carrier="down",result="failed"}' in exposed
        assert 'ivr_auth_smpp_binds_total{carrier="down",result="ok"} 0.0' in exposed
    finally:
        await rt.stop(0)


async def test_a_sender_with_no_carrier_bound_is_not_ready(
    local_stack: connections.Connections, http_session: aiohttp.ClientSession
) -> None:
    down = {"name": "down", "host": "127.0.0.1", "port": 9, "reconnect_min_seconds": 0.2, "reconnect_max_seconds": 1}
    cfg = config.from_mapping({"sms": {"carriers": [down]}})
    rt = runtime.Runtime(
        cfg, local_stack, api=True, dialer=False, sms=True, name=f"test-sms-{uuid.uuid4().hex[:8]}", http_port=0
    )
    await rt.start()
    try:
        async with http_session.get(f"{rt.http_url}/readyz") as resp:
            assert resp.status == 503
            ready = await resp.json()
        assert ready["checks"]["smpp"] == "no SMS carrier bound: down (127.0.0.1:9)"
    finally:
        await rt.stop(0)
