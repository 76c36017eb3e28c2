"""The reaper after the database was out of reach: every controller's
leases ran on meanwhile, their renewals failing, so none is taken for lost
until its controller had a lease period to renew it (else calls still up
under a live controller would be settled, ringing ones redialled)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp

from ivr_auth import config, controller, errors, models, states
from ivr_auth.ari import node as ari_node
from tests.unit.test_agi import verification


class FakeVerifications:
    def __init__(self, orphan: models.Verification) -> None:
        self.orphan = orphan
        self.down = False
        self.settled: list[tuple[uuid.UUID, states.Status]] = []

    async def expire_queued(self) -> int:
        if self.down:
            raise errors.StoreUnavailable("database not reachable")
        return 0

    async def advance_channels(self) -> list[models.Verification]:
        return []

    @contextlib.asynccontextmanager
    async def orphans(self) -> AsyncIterator[tuple[list[models.Verification], None]]:
        yield [self.orphan], None

    async def settle_orphan(self, conn: None, orphan: models.Verification, to: states.Status, **_: Any) -> None:
        self.settled.append((orphan.id, to))


async def test_no_lease_is_taken_for_lost_until_a_lease_period_after_an_outage() -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    orphan = verification(
        method="dtmf", status=states.Status.IN_CALL, lease_owner="other", call_attempts=1, expires_at=later
    )
    store = type("Store", (), {})()
    store.verifications = FakeVerifications(orphan)
    cfg = config.from_mapping({"dialer": {"lease_seconds": 30}})
    async with aiohttp.ClientSession() as session:
        node = ari_node.AriNode(session, "http://127.0.0.1:9/ari", "u", "p", "ivr-auth-c1")
        ctl = controller.Controller(cfg, cast(Any, store), node, name="c1")

        # Before any outage an expired lease is settled at once.
        assert await ctl.reap() == 1

        # The database goes away: the reaper loop's pass fails.
        store.verifications.down = True
        loop = asyncio.create_task(ctl._reaper_loop())
        try:
            while not ctl._store_trouble:
                await asyncio.sleep(0.01)
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        store.verifications.down = False

        # Back: a lease period (30 s) for the owners to renew before any is taken for lost.
        assert await ctl.reap() == 0
        assert 29.0 < ctl._orphans_from - time.monotonic() <= 30.0
        assert await ctl.reap() == 0
        ctl._orphans_from = time.monotonic() - 0.01  # the 30 s have passed
        assert await ctl.reap() == 1
        assert store.verifications.settled == [(orphan.id, states.Status.ERROR)] * 2
