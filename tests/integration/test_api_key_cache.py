"""The API's key cache against the real Postgres: a key is looked up once
and then trusted, and everything the operator does to a tenant through the
store (revoke a key, change limits or settings) reaches the API through
NOTIFY within milliseconds of its commit, long before the entry's TTL;
with the cache off, or its LISTEN connection down, every request asks
Postgres."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ivr_auth import config, models
from ivr_auth import store as store_mod
from ivr_auth.api import app as api_app
from ivr_auth.api import handlers, listener
from ivr_auth.store import controls, database, tenants

pytestmark = pytest.mark.integration

Client = TestClient[web.Request, web.Application]
Conn = psycopg.AsyncConnection[dict[str, Any]]

SETTINGS: dict[str, Any] = {"limits": {"requests_per_minute": 10_000, "sends_per_phone": 10_000}}
# Nothing listens there: a LISTEN connection that never comes up.
NOWHERE = "postgresql://ivr-auth@127.0.0.1:1/nowhere?connect_timeout=1"
BODY = {"phone": "+819012345678", "method": "dtmf"}
# Generous: a NOTIFY arrives within milliseconds; the cache would keep the key for 30 s.
NOTIFY_WITHIN_SECONDS = 5


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def prefix(key: str) -> str:
    return key.split("_")[1]


@pytest.fixture
async def me(store: store_mod.Store, tenant: tuple[models.Tenant, str]) -> AsyncIterator[tuple[models.Tenant, str]]:
    """The test's tenant; deleted at the end with every request it made (a
    controller sharing the database would otherwise dial them)."""
    yield tenant
    await store.db.one("DELETE FROM tenants WHERE id = %(id)s", {"id": tenant[0].id})


@contextlib.asynccontextmanager
async def serve(
    store: store_mod.Store, *, cache_seconds: float = 30.0, listen_to: database.Database | None = None
) -> AsyncIterator[tuple[Client, web.Application]]:
    app = api_app.make_app(
        config.from_mapping({**SETTINGS, "http": {"api_key_cache_seconds": cache_seconds}}), store, {}
    )
    if listen_to is not None:
        app[handlers.LISTENER] = listener.Listener(listen_to, app[handlers.WAITERS], app[handlers.KEY_CACHE])
    async with TestClient(TestServer(app)) as client:
        if listen_to is None:
            async with asyncio.timeout(10):
                await app[handlers.LISTENER].wait_listening()
        yield client, app


@contextlib.asynccontextmanager
async def _told(app: web.Application) -> AsyncIterator[None]:
    """Waits, after the block, until the API has had the NOTIFY the block
    caused (at most a few milliseconds after the commit). NOTIFY reaches the
    API's connection a moment after the writer's commit returns, not before:
    what the tests hold the API to is that the next request after that
    moment, well within any TTL, sees the change."""
    cache = app[handlers.KEY_CACHE]
    before = cache.generation
    yield
    async with asyncio.timeout(NOTIFY_WITHIN_SECONDS):
        while cache.generation == before:
            await asyncio.sleep(0.001)


async def _usage(client: Client, key: str) -> int:
    """A request that needs nothing but the key."""
    return (await client.get("/v1/usage", headers=bearer(key))).status


async def _revoke_behind_the_store(db: Conn, key: str) -> None:
    """Revoked as no operator does: without a NOTIFY, so only a lookup can see it."""
    await db.execute("UPDATE api_keys SET revoked_at = now() WHERE prefix = %s", [prefix(key)])


async def test_a_key_is_looked_up_once_and_then_kept(
    store: store_mod.Store, me: tuple[models.Tenant, str], db: Conn
) -> None:
    async with serve(store) as (client, app):
        assert await _usage(client, me[1]) == 200
        assert len(app[handlers.KEY_CACHE]) == 1

        # Postgres no longer knows the key, and nobody said so: the cache answers.
        await _revoke_behind_the_store(db, me[1])
        assert await _usage(client, me[1]) == 200


async def test_a_key_revoked_through_the_store_is_refused_on_the_next_request(
    store: store_mod.Store, me: tuple[models.Tenant, str]
) -> None:
    """What `ivr-auth tenant revoke-key` does, while the API holds the key."""
    second_key = await store.tenants.add_api_key(me[0].name)
    async with serve(store) as (client, app):
        assert await _usage(client, me[1]) == 200
        assert await _usage(client, second_key) == 200
        assert len(app[handlers.KEY_CACHE]) == 2

        async with _told(app):
            await store.controls.revoke_api_key(me[0].name, prefix(me[1]))

        refused = await client.get("/v1/usage", headers=bearer(me[1]))
        assert refused.status == 401
        assert (await refused.json())["error"]["code"] == "unauthorized"
        # The tenant's other key still works (looked up again).
        assert await _usage(client, second_key) == 200


async def test_a_limit_changed_through_the_store_applies_on_the_next_request(
    store: store_mod.Store, me: tuple[models.Tenant, str]
) -> None:
    async with serve(store) as (client, app):
        first = await client.post("/v1/verifications", json=BODY, headers=bearer(me[1]))
        assert first.status == 201

        async with _told(app):
            await store.controls.set_limits(me[0].name, controls.LimitChanges(allowed_countries=("US",)))

        refused = await client.post("/v1/verifications", json=BODY, headers=bearer(me[1]))
        assert refused.status == 403
        assert (await refused.json())["error"]["code"] == "destination_not_allowed"


async def test_a_setting_changed_through_the_store_applies_on_the_next_request(
    store: store_mod.Store, me: tuple[models.Tenant, str]
) -> None:
    async with serve(store) as (client, app):
        before = await client.post("/v1/verifications", json={**BODY, "phone": "+14155550100"}, headers=bearer(me[1]))
        assert (await before.json())["language"] == "en"

        async with _told(app):
            await store.tenants.update(me[0].name, tenants.TenantChanges(default_language="ja"))

        after = await client.post("/v1/verifications", json={**BODY, "phone": "+14155550101"}, headers=bearer(me[1]))
        assert (await after.json())["language"] == "ja"


async def test_with_no_cache_every_request_asks_postgres(
    store: store_mod.Store, me: tuple[models.Tenant, str], db: Conn
) -> None:
    async with serve(store, cache_seconds=0) as (client, app):
        assert await _usage(client, me[1]) == 200
        assert len(app[handlers.KEY_CACHE]) == 0

        await _revoke_behind_the_store(db, me[1])
        assert await _usage(client, me[1]) == 401


async def test_without_its_listen_connection_the_cache_is_not_used(
    store: store_mod.Store, me: tuple[models.Tenant, str], db: Conn
) -> None:
    async with serve(store, listen_to=database.Database(NOWHERE)) as (client, app):
        assert await _usage(client, me[1]) == 200
        assert len(app[handlers.KEY_CACHE]) == 0

        await _revoke_behind_the_store(db, me[1])
        assert await _usage(client, me[1]) == 401


async def test_the_cache_starts_empty_when_its_listen_connection_comes_back(
    store: store_mod.Store, me: tuple[models.Tenant, str], db: Conn
) -> None:
    async with serve(store) as (client, app):
        assert await _usage(client, me[1]) == 200
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
            [f"LISTEN %{tenants.TENANTS_CHANNEL}%"],
        )
        async with asyncio.timeout(10):
            while app[handlers.LISTENER].listening:
                await asyncio.sleep(0.01)
            assert len(app[handlers.KEY_CACHE]) == 0
            await app[handlers.LISTENER].wait_listening()

        await _revoke_behind_the_store(db, me[1])
        assert await _usage(client, me[1]) == 401


async def test_an_unknown_key_is_not_kept(store: store_mod.Store, me: tuple[models.Tenant, str]) -> None:
    async with serve(store) as (client, app):
        unknown = f"ivra_{prefix(me[1])}_{'x' * len(me[1].split('_')[2])}"
        assert await _usage(client, unknown) == 401
        assert len(app[handlers.KEY_CACHE]) == 0
        # A key added later is found at once.
        assert await _usage(client, await store.tenants.add_api_key(me[0].name)) == 200
