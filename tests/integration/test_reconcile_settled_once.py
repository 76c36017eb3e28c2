"""A call settled with its lost node stays settled once: whatever its
returning node's channel does afterwards (hung up by us, or a late end
seen through the usual paths), the store's guarded transitions change
nothing more. Against the real Postgres of the local stack."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from ivr_auth import connections, models, reasons, states
from ivr_auth import store as store_mod
from ivr_auth.store import verifications

pytestmark = pytest.mark.integration

S = states.Status
# Asterisk's form of channel id, unique to this run.
CHANNEL = f"1733480000.{uuid.uuid4().int % 10**9}"


@pytest.fixture
async def me(local_stack: connections.Connections, tenant: tuple[models.Tenant, str]) -> AsyncIterator[models.Tenant]:
    yield tenant[0]
    async with await psycopg.AsyncConnection.connect(local_stack.database_url, autocommit=True) as conn:
        await conn.execute("DELETE FROM tenants WHERE id = %s", [tenant[0].id])


async def in_call(store: store_mod.Store, tenant: models.Tenant) -> models.Verification:
    """An inbound request taken by a call (never claimed by a dialer), on the phone."""
    created = await store.verifications.create(
        verifications.NewVerification(
            tenant_id=tenant.id,
            method="inbound",
            phone="+819012345678",
            line_type="mobile",
            code="864209",
            language="ja",
            reference=None,
            callback_url=None,
            ttl_seconds=300,
            max_code_attempts=3,
            max_call_attempts=2,
            idempotency_key=None,
            request_hash=None,
        )
    )
    taken = await store.verifications.take_inbound(
        created.verification.id, owner="ctl-a", node="node-a", channel_id=CHANNEL, lease_seconds=30, detail={}
    )
    assert taken is not None
    attempt = dataclasses.replace(taken, call_attempts=taken.call_attempts + 1)
    assert await store.calls.start(attempt, controller="ctl-a", node="node-a", trunk="t", channel_id=CHANNEL)
    return taken


async def test_a_request_settled_with_its_lost_node_is_not_settled_again(
    store: store_mod.Store, me: models.Tenant
) -> None:
    v = await in_call(store, me)
    # As flows.guarded settles a call lost with its node.
    settled = await store.verifications.transition(
        v.id, [S.IN_CALL], S.ERROR, reason=reasons.Reason.NODE_LOST, detail={"node": "node-a"}
    )
    await store.calls.end(CHANNEL, "error", None, "node lost")
    assert settled is not None

    # The node is back and the channel is hung up: were its end taken for a
    # hangup, or the node taken for lost again, the request would not move.
    again: list[Any] = [
        await store.verifications.transition(
            v.id,
            [S.IN_CALL],
            S.HUNG_UP,
            reason=reasons.Reason.CALLER_HUNG_UP,
            cause=16,
            cause_txt="Normal Clearing",
            ended_call=verifications.CallEnd(CHANNEL, "hung_up", 16, "Normal Clearing"),
        ),
        await store.verifications.transition(
            v.id, [S.IN_CALL], S.ERROR, reason=reasons.Reason.NODE_LOST, detail={"node": "node-a"}
        ),
    ]
    await store.calls.end(CHANNEL, "hung_up", 16, "Normal Clearing")

    assert again == [None, None]
    now = await store.verifications.get_by_id(v.id)
    assert now is not None
    assert (now.status, now.reason) == (S.ERROR, reasons.Reason.NODE_LOST.value)
    terminal = [e for e in await store.verifications.events(v.id) if e.type == "status" and e.to_status == "error"]
    assert len(terminal) == 1
    (call,) = await store.calls.for_request(v.id)
    assert (call.outcome, call.cause, call.cause_txt) == ("error", None, "node lost")
