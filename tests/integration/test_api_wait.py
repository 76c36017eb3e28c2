"""``GET /v1/verifications/{id}?wait=S`` against the real Postgres: the
long poll answers on the NOTIFY of a status change made elsewhere, after
the wait with the request unchanged, at once for an ended request; refuses
a bad wait and another tenant's id; forgets a client that hangs up; falls
back to reading while its LISTEN connection is down; and answers at once
when the API stops."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ivr_auth import config, models, states
from ivr_auth import store as store_mod
from ivr_auth.api import app as api_app
from ivr_auth.api import handlers, listener
from ivr_auth.store import database, tenants, verifications
from tests.support import served

pytestmark = pytest.mark.integration

Client = TestClient[web.Request, web.Application]
Conn = psycopg.AsyncConnection[dict[str, Any]]

SETTINGS: dict[str, Any] = {"limits": {"requests_per_minute": 10_000, "sends_per_phone": 10_000}}
CFG = config.from_mapping(SETTINGS)
# Nothing listens there: a LISTEN connection that never comes up.
NOWHERE = "postgresql://ivr-auth@127.0.0.1:1/nowhere?connect_timeout=1"
# Long enough that an answer before it can only be the change's; the tests
# never wait for it to run out unless they say so.
LONG_WAIT = 20.0


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def owned(store: store_mod.Store, tenant: tuple[models.Tenant, str]) -> AsyncIterator[list[uuid.UUID]]:
    """Tenants to delete at the end (with every request they made: a
    controller sharing the database would otherwise dial them)."""
    made = [tenant[0].id]
    yield made
    await store.db.one("DELETE FROM tenants WHERE id = ANY(%(ids)s)", {"ids": made})


@pytest.fixture
async def app(store: store_mod.Store, owned: list[uuid.UUID]) -> web.Application:
    return api_app.make_app(CFG, store, {})


@pytest.fixture
async def client(app: web.Application) -> AsyncIterator[Client]:
    async with TestClient(TestServer(app)) as served_client:
        await _listening(app)
        yield served_client


async def _listening(app: web.Application) -> None:
    async with asyncio.timeout(10):
        await app[handlers.LISTENER].wait_listening()


async def _create(client: Client, key: str) -> str:
    response = await client.post(
        "/v1/verifications", json={"phone": "+819012345678", "method": "dtmf"}, headers=bearer(key)
    )
    assert response.status == 201, await response.text()
    return str((await response.json())["id"])


async def _set_status(db: Conn, verification_id: str, status: str) -> None:
    """A status change made by another connection, announced as the store's
    transitions announce theirs."""
    await db.execute("UPDATE verifications SET status = %s WHERE id = %s", [status, verification_id])
    await db.execute("SELECT pg_notify(%s, %s)", [verifications.STATUS_CHANNEL, verification_id])


async def _waiting(app: web.Application, count: int) -> None:
    async with asyncio.timeout(10):
        while len(app[handlers.WAITERS]) != count:
            await asyncio.sleep(0.01)


async def test_a_wait_answers_when_another_connection_changes_the_status(
    client: Client, app: web.Application, tenant: tuple[models.Tenant, str], db: Conn
) -> None:
    verification_id = await _create(client, tenant[1])
    started = time.monotonic()
    get = asyncio.create_task(
        client.get(f"/v1/verifications/{verification_id}?wait={LONG_WAIT:g}", headers=bearer(tenant[1]))
    )
    await _waiting(app, 1)

    await _set_status(db, verification_id, "calling")
    response = await get

    assert response.status == 200
    body = await response.json()
    assert body["id"] == verification_id
    assert body["status"] == "calling"
    assert time.monotonic() - started < LONG_WAIT
    assert len(app[handlers.WAITERS]) == 0


async def test_a_wait_answers_when_the_store_cancels_the_request(
    client: Client, app: web.Application, store: store_mod.Store, tenant: tuple[models.Tenant, str]
) -> None:
    verification_id = await _create(client, tenant[1])
    started = time.monotonic()
    get = asyncio.create_task(
        client.get(f"/v1/verifications/{verification_id}?wait={LONG_WAIT:g}", headers=bearer(tenant[1]))
    )
    await _waiting(app, 1)

    await store.verifications.cancel(tenant[0].id, uuid.UUID(verification_id))
    response = await get

    assert response.status == 200
    body = await response.json()
    assert (body["status"], body["reason"]) == ("canceled", "canceled")
    assert time.monotonic() - started < LONG_WAIT


async def test_until_end_answers_at_the_end_not_on_the_way(
    client: Client, app: web.Application, store: store_mod.Store, tenant: tuple[models.Tenant, str]
) -> None:
    tenant_row, key = tenant
    verification_id = await _create(client, key)
    vid = uuid.UUID(verification_id)
    get = asyncio.create_task(
        client.get(
            f"/v1/verifications/{verification_id}",
            params={"wait": f"{LONG_WAIT:g}", "until": "end"},
            headers=bearer(key),
        )
    )
    await _waiting(app, 1)

    # Through the store, whose statements announce each status.
    await store.db.one("UPDATE verifications SET status = 'calling' WHERE id = %(id)s", {"id": vid})
    await store.verifications.transition(vid, [states.Status.CALLING], states.Status.IN_CALL)
    await asyncio.sleep(0.2)
    on_the_way = get.done()
    await store.verifications.cancel(tenant_row.id, vid)
    response = await get

    assert not on_the_way
    assert response.status == 200
    assert (await response.json())["status"] == "canceled"


@pytest.mark.parametrize("query", ["until=end", "wait=1&until=ended", "wait=1&until=end&until=change"])
async def test_a_bad_until_is_refused_naming_it(client: Client, tenant: tuple[models.Tenant, str], query: str) -> None:
    verification_id = await _create(client, tenant[1])

    response = await client.get(f"/v1/verifications/{verification_id}?{query}", headers=bearer(tenant[1]))

    assert response.status == 400
    error = (await response.json())["error"]
    assert (error["code"], error["message"].split(":")[0]) == ("invalid_field", "until")


async def test_a_notification_without_a_change_keeps_waiting(
    client: Client, app: web.Application, tenant: tuple[models.Tenant, str], db: Conn
) -> None:
    verification_id = await _create(client, tenant[1])
    get = asyncio.create_task(
        client.get(f"/v1/verifications/{verification_id}?wait={LONG_WAIT:g}", headers=bearer(tenant[1]))
    )
    await _waiting(app, 1)

    await db.execute("SELECT pg_notify(%s, %s)", [verifications.STATUS_CHANNEL, verification_id])
    await asyncio.sleep(0.3)
    assert not get.done()
    await _set_status(db, verification_id, "calling")

    assert (await (await get).json())["status"] == "calling"


async def test_a_wait_runs_out_with_the_request_unchanged(
    client: Client, app: web.Application, tenant: tuple[models.Tenant, str]
) -> None:
    verification_id = await _create(client, tenant[1])
    plain = await (await client.get(f"/v1/verifications/{verification_id}", headers=bearer(tenant[1]))).json()
    started = time.monotonic()

    response = await client.get(f"/v1/verifications/{verification_id}?wait=0.5", headers=bearer(tenant[1]))

    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert await response.json() == plain
    assert time.monotonic() - started >= 0.5
    assert len(app[handlers.WAITERS]) == 0


async def test_an_ended_request_answers_at_once(
    client: Client, store: store_mod.Store, tenant: tuple[models.Tenant, str]
) -> None:
    verification_id = await _create(client, tenant[1])
    await store.verifications.cancel(tenant[0].id, uuid.UUID(verification_id))
    started = time.monotonic()

    response = await client.get(f"/v1/verifications/{verification_id}?wait=60", headers=bearer(tenant[1]))

    assert response.status == 200
    assert (await response.json())["status"] == "canceled"
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("wait", ["0", "-1", "60.5", "61", "abc", "", "1e3", " 5", "nan", "inf", "0x10"])
async def test_a_bad_wait_is_refused_naming_it(client: Client, tenant: tuple[models.Tenant, str], wait: str) -> None:
    verification_id = await _create(client, tenant[1])

    response = await client.get(
        f"/v1/verifications/{verification_id}", params={"wait": wait}, headers=bearer(tenant[1])
    )

    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_field"
    assert error["message"].startswith("wait: ")


async def test_wait_sent_twice_is_refused(client: Client, tenant: tuple[models.Tenant, str]) -> None:
    verification_id = await _create(client, tenant[1])

    response = await client.get(f"/v1/verifications/{verification_id}?wait=1&wait=2", headers=bearer(tenant[1]))

    assert response.status == 400
    assert (await response.json())["error"]["message"] == "wait: send the parameter once"


async def test_another_tenants_request_is_not_found_without_waiting(
    client: Client,
    app: web.Application,
    store: store_mod.Store,
    tenant: tuple[models.Tenant, str],
    owned: list[uuid.UUID],
) -> None:
    verification_id = await _create(client, tenant[1])
    other, other_key = await store.tenants.create(f"tenant-{uuid.uuid4().hex[:12]}")
    owned.append(other.id)
    started = time.monotonic()

    response = await client.get(f"/v1/verifications/{verification_id}?wait=30", headers=bearer(other_key))

    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    assert time.monotonic() - started < 15
    assert len(app[handlers.WAITERS]) == 0


async def test_a_client_that_hangs_up_is_forgotten(
    store: store_mod.Store, tenant: tuple[models.Tenant, str], owned: list[uuid.UUID]
) -> None:
    """On a real port, served as the runtime serves it: the waiter goes when
    the connection does, long before its wait would have run out."""
    app = api_app.make_app(CFG, store, {})
    async with served.on_port(app) as url, aiohttp.ClientSession(url) as session:
        await _listening(app)
        created = await session.post(
            "/v1/verifications", json={"phone": "+819012345678", "method": "dtmf"}, headers=bearer(tenant[1])
        )
        verification_id = (await created.json())["id"]
        get = asyncio.create_task(
            session.get(f"/v1/verifications/{verification_id}?wait=60", headers=bearer(tenant[1]))
        )
        await _waiting(app, 1)

        get.cancel()  # closes the client's connection
        with contextlib.suppress(asyncio.CancelledError):
            await get

        await _waiting(app, 0)
        assert app[handlers.WAITERS]._by_id == {}


async def test_waits_over_the_bound_are_refused(
    store: store_mod.Store, tenant: tuple[models.Tenant, str], owned: list[uuid.UUID]
) -> None:
    app = api_app.make_app(config.from_mapping({**SETTINGS, "http": {"max_waiters": 1}}), store, {})
    async with TestClient(TestServer(app)) as client:
        await _listening(app)
        verification_id = await _create(client, tenant[1])
        first = asyncio.create_task(
            client.get(f"/v1/verifications/{verification_id}?wait=0.5", headers=bearer(tenant[1]))
        )
        await _waiting(app, 1)

        refused = await client.get(f"/v1/verifications/{verification_id}?wait=0.5", headers=bearer(tenant[1]))
        plain = await client.get(f"/v1/verifications/{verification_id}", headers=bearer(tenant[1]))

        assert refused.status == 503
        assert (await refused.json())["error"]["code"] == "unavailable"
        assert refused.headers["Retry-After"] == "1"
        assert plain.status == 200
        assert (await first).status == 200


async def test_without_its_listen_connection_a_wait_reads_the_row(
    store: store_mod.Store, tenant: tuple[models.Tenant, str], owned: list[uuid.UUID], db: Conn
) -> None:
    """A change nobody announces (the LISTEN connection cannot be opened) is
    still seen, by the fallback's reading once a second."""
    app = api_app.make_app(CFG, store, {})
    cut_off = database.Database(NOWHERE)
    app[handlers.LISTENER] = listener.Listener(cut_off, app[handlers.WAITERS], app[handlers.KEY_CACHE])
    async with TestClient(TestServer(app)) as client:
        verification_id = await _create(client, tenant[1])
        started = time.monotonic()
        get = asyncio.create_task(
            client.get(f"/v1/verifications/{verification_id}?wait={LONG_WAIT:g}", headers=bearer(tenant[1]))
        )
        await _waiting(app, 1)

        await db.execute("UPDATE verifications SET status = 'calling' WHERE id = %s", [verification_id])
        response = await get

        assert (await response.json())["status"] == "calling"
        assert time.monotonic() - started < LONG_WAIT
        assert not app[handlers.LISTENER].listening


async def test_the_listen_connection_comes_back_after_it_was_lost(
    client: Client, app: web.Application, tenant: tuple[models.Tenant, str], db: Conn
) -> None:
    await _kill_listen_connection(db, app)
    await _listening(app)
    verification_id = await _create(client, tenant[1])
    get = asyncio.create_task(
        client.get(f"/v1/verifications/{verification_id}?wait={LONG_WAIT:g}", headers=bearer(tenant[1]))
    )
    await _waiting(app, 1)

    await _set_status(db, verification_id, "calling")

    assert (await (await get).json())["status"] == "calling"


async def _kill_listen_connection(db: Conn, app: web.Application) -> None:
    """Ends the backend that listens for the API, and waits until the API has noticed."""
    await db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
        [f"LISTEN %{tenants.TENANTS_CHANNEL}%"],
    )
    async with asyncio.timeout(10):
        while app[handlers.LISTENER].listening:
            await asyncio.sleep(0.01)


async def test_stopping_the_api_answers_pending_waits_at_once(
    store: store_mod.Store, tenant: tuple[models.Tenant, str], owned: list[uuid.UUID]
) -> None:
    """As the runtime stops it: the runner's cleanup, which waits for the
    handlers still running (up to a minute) once the application's shutdown
    hooks ran."""
    app = api_app.make_app(CFG, store, {})
    runner = api_app.Runner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    async with aiohttp.ClientSession(f"http://{host}:{port}") as session:
        await _listening(app)
        created = await session.post(
            "/v1/verifications", json={"phone": "+819012345678", "method": "dtmf"}, headers=bearer(tenant[1])
        )
        verification_id = (await created.json())["id"]
        get = asyncio.create_task(
            session.get(f"/v1/verifications/{verification_id}?wait=60", headers=bearer(tenant[1]))
        )
        await _waiting(app, 1)
        started = time.monotonic()

        stopping = asyncio.create_task(runner.cleanup())
        response = await get
        body = await response.json()
        await stopping

    assert response.status == 200
    assert body["status"] == "queued"
    assert time.monotonic() - started < 30
