"""The SMS outbox and the channel fallback, against the real Postgres of the
local stack: a request's SMS written with it, claimed under a lease,
settled by the carrier's answer and receipts; a request moving on to its
next channel when the SMS failed or its time came.

``claim`` takes any tenant's due SMS: a test claims until its own is in
hand and puts back whatever else it took (retry_later with no delay)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from ivr_auth import channels, config, limits, models, states
from ivr_auth import store as store_mod
from ivr_auth.store import controls, verifications
from ivr_auth.store import sms as sms_store

pytestmark = pytest.mark.integration

S = states.Status
Conn = psycopg.AsyncConnection[dict[str, Any]]
Store = store_mod.Store
CODE = "7315902468"
PHONE = "+819012345678"


@pytest.fixture
async def me(db: Conn, tenant: tuple[models.Tenant, str]) -> AsyncIterator[models.Tenant]:
    yield tenant[0]
    await db.execute("DELETE FROM tenants WHERE id = %s", [tenant[0].id])


def plan(*steps: tuple[str, int]) -> tuple[channels.Step, ...]:
    return tuple(channels.Step(name, after, 2 if name in channels.CALLING else None) for name, after in steps)


async def create(
    store: Store, tenant: models.Tenant, steps: tuple[channels.Step, ...], policy: limits.Policy | None = None
) -> models.Verification:
    created = await store.verifications.create(
        verifications.NewVerification(
            tenant_id=tenant.id,
            method=steps[0].channel,
            phone=PHONE,
            line_type="mobile",
            code=CODE,
            language="en",
            reference=None,
            callback_url=None,
            ttl_seconds=300,
            max_code_attempts=3,
            max_call_attempts=2,
            idempotency_key=None,
            request_hash=None,
            channels=steps if len(steps) > 1 else None,
        ),
        policy,
    )
    return created.verification


async def claim_own(store: Store, verification_id: uuid.UUID) -> sms_store.Outgoing:
    for _ in range(20):
        taken = await store.sms.claim(f"test-{uuid.uuid4().hex[:6]}", 50, 30)
        mine = [o for o in taken if o.verification_id == verification_id]
        for other in taken:
            if other.verification_id != verification_id:
                await store.sms.retry_later(other.id, delay=0, error="put back by a test")
        if mine:
            return mine[0]
    raise AssertionError("the request's SMS was never claimed")


async def test_an_sms_request_is_sent_delivered_and_checked(store: Store, db: Conn, me: models.Tenant) -> None:
    request = await create(store, me, plan(("sms", 0)))
    assert request.method == "sms"
    assert request.status is S.QUEUED
    outgoing = await claim_own(store, request.id)
    assert outgoing.code == CODE
    assert outgoing.phone == PHONE
    assert outgoing.attempt == 1
    assert CODE not in repr(outgoing)
    # Leased: a second claim does not take it.
    assert all(o.id != outgoing.id for o in await store.sms.claim("another", 50, 30))

    await store.sms.submitted(outgoing.id, carrier="c1", message_ids=["m-1", "m-2"], encoding="ucs2", parts=2)
    sent = await store.verifications.get(me.id, request.id)
    assert sent.status is S.SENT
    assert sent.reason == "sms_sent"
    assert sent.sent_at is not None

    assert await store.sms.receipt("c1", "m-1", stat="DELIVRD", err="000")
    assert (await store.verifications.get(me.id, request.id)).status is S.SENT  # one part of two
    assert not await store.sms.receipt("c2", "m-2", stat="DELIVRD", err="000")  # another carrier's id
    assert await store.sms.receipt("c1", "m-2", stat="delivrd", err="000")
    delivered = await store.verifications.get(me.id, request.id)
    assert delivered.status is S.DELIVERED
    assert delivered.reason == "sms_delivered"

    checked, ok = await store.verifications.check_code(me.id, request.id, CODE, source="api")
    assert ok
    assert checked.status is S.VERIFIED
    [message] = await store.sms.messages(request.id)
    assert (message.status, message.outcome, message.parts, message.carrier) == ("delivered", "delivered", 2, "c1")


async def test_a_receipt_before_the_submit_is_recorded_is_not_matched(store: Store, me: models.Tenant) -> None:
    request = await create(store, me, plan(("sms", 0)))
    outgoing = await claim_own(store, request.id)
    assert not await store.sms.receipt("c1", f"early-{outgoing.id}", stat="DELIVRD", err=None)
    await store.sms.submitted(outgoing.id, carrier="c1", message_ids=[f"early-{outgoing.id}"], encoding="gsm7", parts=1)
    assert await store.sms.receipt("c1", f"early-{outgoing.id}", stat="DELIVRD", err=None)
    assert (await store.verifications.get(me.id, request.id)).status is S.DELIVERED


@pytest.mark.parametrize(
    ("stat", "reason"), [("UNDELIV", "sms_undeliverable"), ("EXPIRED", "sms_expired"), ("REJECTD", "sms_undeliverable")]
)
async def test_an_undelivered_sms_ends_the_request_unreachable(
    store: Store, me: models.Tenant, stat: str, reason: str
) -> None:
    request = await create(store, me, plan(("sms", 0)))
    outgoing = await claim_own(store, request.id)
    await store.sms.submitted(
        outgoing.id, carrier="c1", message_ids=[f"{stat}-{outgoing.id}"], encoding="gsm7", parts=1
    )
    assert await store.sms.receipt("c1", f"{stat}-{outgoing.id}", stat=stat, err="001")
    ended = await store.verifications.get(me.id, request.id)
    assert (ended.status, ended.reason) == (S.UNREACHABLE, reason)
    assert ended.finished_at is not None
    assert ended.code_sealed is None


async def test_a_refused_sms_rejects_a_request_with_no_next_channel(store: Store, me: models.Tenant) -> None:
    request = await create(store, me, plan(("sms", 0)))
    outgoing = await claim_own(store, request.id)
    await store.sms.refused(outgoing.id, carrier="c1", command_status=0x0B, error="ESME_RINVDSTADR")
    ended = await store.verifications.get(me.id, request.id)
    assert (ended.status, ended.reason) == (S.REJECTED, "sms_rejected")
    [message] = await store.sms.messages(request.id)
    assert (message.outcome, message.command_status) == ("refused", 0x0B)


async def test_a_refused_sms_moves_on_to_the_call_at_once(store: Store, db: Conn, me: models.Tenant) -> None:
    request = await create(store, me, plan(("sms", 0), ("voice", 60)))
    assert request.next_channel_at is not None
    outgoing = await claim_own(store, request.id)
    await store.sms.refused(outgoing.id, carrier="c1", command_status=0x45, error="ESME_RSUBMITFAIL")
    moved = await store.verifications.get(me.id, request.id)
    assert (moved.status, moved.method, moved.channel_index, moved.reason) == (S.QUEUED, "voice", 1, None)
    assert moved.finished_at is None
    assert moved.code_sealed is not None
    # The call channel has calls of its own, and the request waits for nothing after it.
    assert moved.max_call_attempts == moved.call_attempts + 2
    assert moved.next_channel_at is None
    events = await store.verifications.events(request.id)
    assert [e.detail["channel"] for e in events if e.type == "channel"] == ["sms", "voice"]
    fell = [e for e in events if e.type == "status" and e.to_status == "queued" and e.from_status == "queued"]
    assert fell
    assert fell[-1].detail["channel_failed"] == "rejected"
    assert fell[-1].detail["from_channel"] == "sms"
    # No webhook for the rejection: the request did not end.
    hooks = await db.execute("SELECT count(*) AS n FROM webhook_deliveries WHERE verification_id = %s", [request.id])
    assert (await hooks.fetchone() or {}).get("n") == 0


async def test_a_failed_call_moves_on_to_the_sms(store: Store, me: models.Tenant) -> None:
    request = await create(store, me, plan(("voice", 0), ("sms", 30)))
    moved = await store.verifications.transition(request.id, [S.QUEUED, S.CALLING], S.NO_ANSWER, reason=None)
    assert moved is not None
    assert (moved.status, moved.method, moved.channel_index) == (S.QUEUED, "sms", 1)
    outgoing = await claim_own(store, request.id)
    assert outgoing.code == CODE


async def test_the_next_channel_starts_when_its_time_comes(store: Store, db: Conn, me: models.Tenant) -> None:
    request = await create(store, me, plan(("sms", 0), ("dtmf", 30), ("sms", 30)))
    outgoing = await claim_own(store, request.id)
    await store.sms.submitted(outgoing.id, carrier="c1", message_ids=[f"t-{outgoing.id}"], encoding="gsm7", parts=1)
    assert request.id not in {m.id for m in await store.verifications.advance_channels()}  # not yet
    await db.execute("UPDATE verifications SET next_channel_at = now() WHERE id = %s", [request.id])
    moved = [m for m in await store.verifications.advance_channels() if m.id == request.id]
    assert moved
    assert (moved[0].status, moved[0].method, moved[0].channel_index) == (S.QUEUED, "dtmf", 1)
    assert moved[0].next_channel_at is not None  # the sms after it, 30 s on
    # A receipt for the first SMS no longer moves the request, now on the call.
    assert await store.sms.receipt("c1", f"t-{outgoing.id}", stat="UNDELIV", err=None)
    assert (await store.verifications.get(me.id, request.id)).status is S.QUEUED
    # A code checked meanwhile still verifies: the same code on every channel.
    _, ok = await store.verifications.check_code(me.id, request.id, CODE, source="api")
    assert ok


async def test_an_sms_not_yet_sent_is_dropped_when_the_request_moves_on(
    store: Store, db: Conn, me: models.Tenant
) -> None:
    request = await create(store, me, plan(("sms", 0), ("voice", 30)))
    await db.execute("UPDATE verifications SET next_channel_at = now() WHERE id = %s", [request.id])
    assert request.id in {m.id for m in await store.verifications.advance_channels()}
    [message] = await store.sms.messages(request.id)
    assert (message.status, message.outcome) == ("canceled", "canceled")


async def test_the_daily_sms_budget_refuses_the_next_sms_request(store: Store, me: models.Tenant) -> None:
    policy = limits.Policy(
        requests_per_minute=100,
        sends_per_phone=100,
        sends_per_phone_window_seconds=600,
        daily_call_budget=0,
        failure_cooldown_seconds=0,
        retention_days=90,
        allowed_countries=(),
        allowed_prefixes=(),
        denied_prefixes=(),
        allowed_line_types=("mobile",),
        daily_sms_budget=2,
    )
    for _ in range(2):
        await create(store, me, plan(("sms", 0)), policy)
    with pytest.raises(limits.RateLimited) as refused:
        await create(store, me, plan(("sms", 0)), policy)
    assert refused.value.reason == "daily_sms_budget"
    # A call is not an SMS: the SMS budget does not refuse it.
    await create(store, me, plan(("voice", 0)), policy)


async def test_a_tenant_s_own_sms_budget_wins_over_the_config_s(store: Store, me: models.Tenant) -> None:
    cfg = config.from_mapping({"limits": {"daily_sms_budget": 100}})
    changed = await store.controls.set_limits(me.name, controls.LimitChanges(daily_sms_budget=1))
    policy = limits.Policy.for_tenant(cfg, changed)
    assert policy.daily_sms_budget == 1
    await create(store, me, plan(("sms", 0)), policy)
    with pytest.raises(limits.RateLimited):
        await create(store, me, plan(("sms", 0), ("voice", 60)), policy)
    back = await store.controls.set_limits(me.name, controls.LimitChanges(daily_sms_budget=controls.DEFAULT))
    assert limits.Policy.for_tenant(cfg, back).daily_sms_budget == 100
