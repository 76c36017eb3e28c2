"""One trunk, one limit: the claim (``claim_paced``) takes a trunk's shared
tokens and counts its calls in progress by every controller, in the real
Postgres; a trunk marked down by one controller is down for all."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from ivr_auth import config, models, states, trunks
from ivr_auth import store as store_mod
from ivr_auth.store import trunk_state
from tests.integration.conftest import Conn
from tests.integration.test_store import create, put_back

pytestmark = pytest.mark.integration

S = states.Status


@pytest.fixture
async def me(db: Conn, tenant: tuple[models.Tenant, str]) -> AsyncIterator[models.Tenant]:
    """A fresh tenant, deleted at the end with its requests."""
    yield tenant[0]
    await db.execute("DELETE FROM tenants WHERE id = %s", [tenant[0].id])


def fresh(prefix: str) -> str:
    """A trunk name no other test shares (its bucket and calls are its own)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def offer(
    name: str, room: int, *, rank: int = 0, cps: float = 1e6, burst: float | None = None, channels: int = 1_000_000
) -> trunks.Offer:
    return trunks.Offer(name, rank, room, rate=cps, burst=burst if burst is not None else cps, max_channels=channels)


async def claim(
    store: store_mod.Store, owner: str, offers: list[trunks.Offer]
) -> tuple[list[models.Verification], int]:
    return await store.verifications.claim(owner, "test-node", offers, 60.0)


async def queued(store: store_mod.Store, me: models.Tenant, count: int) -> None:
    for _ in range(count):
        await create(store, me, method="dtmf")


async def test_two_controllers_share_one_trunks_calls_per_second(store: store_mod.Store, me: models.Tenant) -> None:
    await queued(store, me, 6)
    name = fresh("paced")
    # 2 calls a second, a bucket one call deep, and room for 5 on each controller.
    paced = [offer(name, 5, cps=2.0, burst=1.0)]
    started = time.monotonic()

    first, waiting_a = await claim(store, "controller-a", paced)
    second, waiting_b = await claim(store, "controller-b", paced)
    taken = [*first, *second]

    try:
        assert len(taken) == 1  # the one token there was, whoever took it
        assert waiting_a + waiting_b >= 4  # the rest are due and were seen waiting
        assert all(v.trunk == name and v.status is S.CALLING for v in taken)
        # No second token before half a second has passed, for either of them.
        while time.monotonic() - started < 0.4:
            more, _ = await claim(store, "controller-b", paced)
            assert more == [], "a second call within 0.4 s at 2 calls a second"
            taken += more
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        later, _ = await claim(store, "controller-a", paced)
        assert len(later) == 1
        taken += later
    finally:
        await put_back(store, taken)


async def test_max_channels_counts_every_controllers_calls(store: store_mod.Store, me: models.Tenant) -> None:
    await queued(store, me, 6)
    name = fresh("busy")
    capped = [offer(name, 10, channels=3)]
    taken: list[models.Verification] = []
    try:
        first, _ = await claim(store, "controller-a", capped)
        taken += first
        assert len(first) == 3
        second, waiting = await claim(store, "controller-b", capped)
        taken += second
        assert second == []
        assert waiting >= 1

        # A call ends (its request leaves the call states): room for one more.
        await put_back(store, first[:1])
        taken.remove(first[0])
        third, _ = await claim(store, "controller-b", capped)
        taken += third
        assert len(third) == 1
        assert third[0].lease_owner == "controller-b"
    finally:
        await put_back(store, taken)


async def test_lower_rank_first_and_equal_ranks_take_turns(store: store_mod.Store, me: models.Tenant) -> None:
    await queued(store, me, 7)
    a, b, spare = fresh("a"), fresh("b"), fresh("spare")
    taken: list[models.Verification] = []
    try:
        # a and b (rank 1) are full after 2 each; spare (rank 2) takes the rest.
        got, _ = await claim(store, "controller-a", [offer(a, 2, rank=1), offer(b, 2, rank=1), offer(spare, 5, rank=2)])
        taken += got
        assert Counter(v.trunk for v in got) == {a: 2, b: 2, spare: len(got) - 4}
        await put_back(store, got)
        taken = []
        # With room to spare on both, equal ranks take turns: neither gets two ahead.
        got, _ = await claim(store, "controller-a", [offer(a, 50, rank=1), offer(b, 50, rank=1)])
        taken += got
        count = Counter(v.trunk for v in got)
        assert len(got) >= 7
        assert count[a] - count[b] in (0, 1)
    finally:
        await put_back(store, taken)


async def test_a_request_put_back_is_no_longer_counted_on_its_trunk(
    store: store_mod.Store, db: Conn, me: models.Tenant
) -> None:
    await queued(store, me, 2)
    name = fresh("one")
    got, _ = await claim(store, "controller-a", [offer(name, 1, channels=1)])
    assert len(got) == 1
    await put_back(store, got)
    cur = await db.execute(
        "SELECT count(*) AS n FROM verifications WHERE trunk = %s AND status IN ('calling', 'in_call')", [name]
    )
    assert (await cur.fetchone() or {})["n"] == 0
    again, _ = await claim(store, "controller-b", [offer(name, 1, channels=1)])
    await put_back(store, again)
    assert len(again) == 1


async def test_a_trunk_marked_down_is_down_for_every_controller(store: store_mod.Store, db: Conn) -> None:
    name = fresh("failing")
    async with store.db.listen([trunk_state.CHANNEL]) as notes:
        seconds = await store.trunk_state.mark_down(name, 30.0, "controller-a", 1.0)
        note = await asyncio.wait_for(anext(notes), 5)
    assert note.payload == name
    assert 29.0 < seconds <= 30.0

    # A shorter mark (another controller, later) does not shorten it.
    await store.trunk_state.mark_down(name, 5.0, "controller-b", 1.0)
    down = {d.trunk: d for d in await store.trunk_state.down()}
    assert down[name].by == "controller-a"
    assert 28.0 < down[name].seconds <= 30.0

    pool = trunks.Trunks([trunks_cfg(name), trunks_cfg("other")], retry_seconds=30)
    for mark in await store.trunk_state.down():
        pool.down_for(mark.trunk, 100.0, mark.seconds)
    assert pool.down(100.0) == [name]
    await db.execute("DELETE FROM trunk_state WHERE trunk = %s", [name])


def trunks_cfg(name: str) -> config.TrunkConfig:
    return config.TrunkConfig(name=name)
