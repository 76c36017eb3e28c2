"""After Postgres drops its connections (a restart), the first call that
finds a broken one fails; the rest of the pool is checked at once, so the
calls after it do not each find another broken connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from ivr_auth import connections, crypto, errors
from ivr_auth import store as store_mod
from tests.integration.conftest import Conn

pytestmark = pytest.mark.integration

IDLE = 6


@pytest.fixture
async def pooled(local_stack: connections.Connections) -> AsyncIterator[store_mod.Store]:
    pool = AsyncConnectionPool(local_stack.database_url, min_size=IDLE, max_size=IDLE, open=False)
    await pool.open(wait=True)
    try:
        yield store_mod.Store(pool, crypto.Keys.from_secret("x" * 40))
    finally:
        await pool.close()


async def test_one_broken_connection_has_the_pool_checked(pooled: store_mod.Store, db: Conn) -> None:
    pids = set()

    async def hold() -> None:
        async with pooled.connection() as conn:
            pids.add(conn.info.backend_pid)
            await conn.execute("SELECT pg_sleep(0.2)")

    await asyncio.gather(*(hold() for _ in range(IDLE)))
    assert len(pids) == IDLE
    # As a restart does: the server ends every one of them while they sit idle.
    for pid in pids:
        await db.execute("SELECT pg_terminate_backend(%s)", [pid])

    with pytest.raises(errors.StoreUnavailable):
        await pooled.ping()
    assert pooled._checking is not None
    await asyncio.wait_for(pooled._checking, 10)
    # Every call after the check gets a working connection.
    for _ in range(IDLE * 2):
        await pooled.ping()
