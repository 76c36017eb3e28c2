"""Fixtures shared by the tests against the real Postgres."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from psycopg.rows import dict_row

from ivr_auth import config, connections, metrics, models
from ivr_auth import store as store_mod
from ivr_auth.api import app as api_app

Conn = psycopg.AsyncConnection[dict[str, Any]]
Client = TestClient[web.Request, web.Application]


@contextlib.asynccontextmanager
async def served(
    cfg: config.Config, store: store_mod.Store, tenant: tuple[models.Tenant, str], db: Conn
) -> AsyncIterator[Client]:
    """The API app (with its metrics) served for a test; the tenant and its
    requests are deleted afterwards."""
    app = api_app.make_app(cfg, store, {}, metrics=metrics.Metrics(store.gauges))
    try:
        async with TestClient(TestServer(app)) as client:
            yield client
    finally:
        # A controller sharing the database would otherwise dial what is left queued.
        await db.execute("DELETE FROM tenants WHERE id = %s", [tenant[0].id])


@pytest.fixture
async def db(local_stack: connections.Connections) -> AsyncIterator[Conn]:
    """A connection of the test's own, beside the Store, to look at rows directly."""
    conn = await psycopg.AsyncConnection.connect(local_stack.database_url, autocommit=True, row_factory=dict_row)
    async with conn:
        yield conn
