"""Trunk failover and caller-ID pools in the real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from ivr_auth import flows, models, reasons, states
from ivr_auth import store as store_mod
from ivr_auth.store import tenants
from tests.integration.conftest import Conn
from tests.integration.test_store import claim_mine, create, status_events

pytestmark = pytest.mark.integration

S = states.Status
POOL = ("+81312345678", "+81312345679", "+81312345670")


@pytest.fixture
async def me(db: Conn, tenant: tuple[models.Tenant, str]) -> AsyncIterator[models.Tenant]:
    """A fresh tenant, deleted at the end with its requests."""
    yield tenant[0]
    await db.execute("DELETE FROM tenants WHERE id = %s", [tenant[0].id])


async def test_a_pool_is_set_shown_and_cleared(store: store_mod.Store, me: models.Tenant) -> None:
    assert me.caller_id_pool == ()
    assert await store.tenants.next_pool_caller_id(me.id) is None

    updated = await store.tenants.update(me.name, tenants.TenantChanges(caller_id_pool=POOL[:2]))
    assert updated.caller_id_pool == POOL[:2]
    assert (await store.tenants.get(me.id)).caller_id_pool == POOL[:2]

    # Other changes leave the pool alone.
    kept = await store.tenants.update(me.name, tenants.TenantChanges(missed_call=True))
    assert kept.caller_id_pool == POOL[:2]

    cleared = await store.tenants.update(me.name, tenants.TenantChanges(caller_id_pool=()))
    assert cleared.caller_id_pool == ()
    assert await store.tenants.next_pool_caller_id(me.id) is None


async def test_the_pool_is_used_in_turn(store: store_mod.Store, me: models.Tenant) -> None:
    await store.tenants.update(me.name, tenants.TenantChanges(caller_id_pool=POOL[:2]))

    turns = [await store.tenants.next_pool_caller_id(me.id) for _ in range(5)]

    assert turns == [POOL[0], POOL[1], POOL[0], POOL[1], POOL[0]]


async def test_turns_are_shared_by_every_caller_at_once(store: store_mod.Store, me: models.Tenant) -> None:
    await store.tenants.update(me.name, tenants.TenantChanges(caller_id_pool=POOL))

    turns = await asyncio.gather(*(store.tenants.next_pool_caller_id(me.id) for _ in range(30)))

    # However the 30 interleave, each number had exactly a third of the turns.
    assert Counter(turns) == {number: 10 for number in POOL}


async def test_a_trunk_failover_goes_back_to_the_queue_uncounted_and_keeps_the_call(
    store: store_mod.Store, me: models.Tenant, db: Conn
) -> None:
    v = await create(store, me, method="dtmf")
    claimed = (await claim_mine(store, [v], f"controller-{uuid.uuid4().hex[:6]}"))[v.id]
    first_channel = flows.channel_id_for(claimed)
    assert first_channel == f"ivrauth-{v.id.hex}-1"
    await store.calls.start(claimed, controller="c", node="n", trunk="primary", channel_id=first_channel)

    assert await store.verifications.requeue_failover(
        v.id, first_channel, trunk="primary", cause=34, cause_txt="Congestion"
    )

    after = await store.verifications.get(me.id, v.id)
    assert (after.status, after.call_attempts, after.trunk_failovers) == (S.QUEUED, 0, 1)
    assert after.lease_owner is None
    assert after.last_cause == 34
    events = await store.verifications.events(v.id)
    assert status_events(events)[-1] == ("calling", "queued")
    assert events[-1].detail == {
        "reason": "trunk_failover",
        "trunk": "primary",
        "cause": 34,
        "cause_txt": "Congestion",
    }
    calls = await store.calls.for_request(v.id)
    assert [(c.attempt, c.trunk, c.outcome, c.cause) for c in calls] == [(1, "primary", "trunk_failed", 34)]
    assert calls[0].ended_at is not None

    # The next call counts as attempt 1 again, on a channel id of its own.
    again = (await claim_mine(store, [v], "controller-b"))[v.id]
    assert again.call_attempts == 1
    second_channel = flows.channel_id_for(again)
    assert second_channel == f"ivrauth-{v.id.hex}-1-1"
    await store.calls.start(again, controller="c", node="n", trunk="backup", channel_id=second_channel)
    calls = await store.calls.for_request(v.id)
    assert [(c.attempt, c.trunk) for c in calls] == [(1, "primary"), (1, "backup")]

    # Only from calling: a request settled meanwhile is left alone.
    await store.verifications.transition(v.id, [S.CALLING], S.CANCELED, reason=reasons.Reason.CANCELED)
    assert not await store.verifications.requeue_failover(
        v.id, second_channel, trunk="backup", cause=34, cause_txt="Congestion"
    )
    assert (await store.verifications.get(me.id, v.id)).status is S.CANCELED
