"""After Postgres drops its connections (a restart), the first call that
finds a broken one fails; the rest of the pool is checked at once, so the
calls after it do not each find another broken connection. A database that
refuses us is StoreUnavailable, never one of psycopg's errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from psycopg import conninfo

from ivr_auth import connections, errors
from ivr_auth import store as store_mod
from tests.integration.conftest import Conn

pytestmark = pytest.mark.integration

IDLE = 6


@pytest.fixture
async def pooled(local_stack: connections.Connections) -> AsyncIterator[store_mod.Store]:
    async with store_mod.Store.from_url(local_stack.database_url, "x" * 40, min_size=IDLE, max_size=IDLE) as opened:
        yield opened


async def test_one_broken_connection_has_the_pool_checked(pooled: store_mod.Store, db: Conn) -> None:
    pids = set()

    async def hold() -> None:
        async with pooled.db.connection() as conn:
            pids.add(conn.backend_pid)
            await conn.execute("SELECT pg_sleep(0.2)")

    await asyncio.gather(*(hold() for _ in range(IDLE)))
    assert len(pids) == IDLE
    # As a restart does: the server ends every one of them while they sit idle.
    for pid in pids:
        await db.execute("SELECT pg_terminate_backend(%s)", [pid])

    with pytest.raises(errors.StoreUnavailable):
        await pooled.ping()
    assert pooled.db._checking is not None
    await asyncio.wait_for(pooled.db._checking, 10)
    # Every call after the check gets a working connection.
    for _ in range(IDLE * 2):
        await pooled.ping()


async def test_a_database_that_does_not_answer_is_store_unavailable(local_stack: connections.Connections) -> None:
    # The stack's own Postgres with a password nobody has: refused at once.
    url = conninfo.make_conninfo(local_stack.database_url, password="not-the-password")
    refused = store_mod.Store.from_url(url, "x" * 40)

    with pytest.raises(errors.StoreUnavailable, match="database unavailable"):
        await refused.open(wait=1.0)
    with pytest.raises(errors.StoreUnavailable, match="password authentication failed"):
        async with refused.db.dedicated():
            pass
