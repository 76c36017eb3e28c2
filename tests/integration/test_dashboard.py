"""The dashboard's HTTP side against the real Postgres: operator logins,
what a tenant's key cannot open, the overview, a request's detail and the
live stream."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ivr_auth import config, metrics, models
from ivr_auth import store as store_mod
from ivr_auth.api import app as api_app
from ivr_auth.dashboard import session
from ivr_auth.store import dashboard as board
from tests.integration.conftest import Client, Conn, served

pytestmark = pytest.mark.integration

CFG = config.from_mapping({"limits": {"sends_per_phone": 10_000}})
JP_MOBILE = "+819012345678"


@pytest.fixture
async def client(store: store_mod.Store, tenant: tuple[models.Tenant, str], db: Conn) -> AsyncIterator[Client]:
    async with served(CFG, store, tenant, db) as client:
        yield client


@pytest.fixture
async def operator(store: store_mod.Store, db: Conn) -> AsyncIterator[tuple[str, str]]:
    name = f"op-{uuid.uuid4().hex[:10]}"
    token = await store.operators.add(name)
    yield name, token
    await db.execute("DELETE FROM operators WHERE name = %s", [name])


async def log_in(client: Client, token: str) -> None:
    response = await client.post("/dashboard/login", data={"token": token}, allow_redirects=False)
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == "/dashboard"
    cookie = response.cookies[session.COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/dashboard"


async def create(client: Client, api_key: str, method: str = "dtmf") -> dict[str, Any]:
    response = await client.post(
        "/v1/verifications",
        json={"phone": JP_MOBILE, "method": method, "callback_url": "https://hooks.example.com/ivr?token=s3cret"},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_the_page_needs_an_operator_login(client: Client, tenant: tuple[models.Tenant, str]) -> None:
    page = await client.get("/dashboard", allow_redirects=False)
    assert page.status == 303
    assert page.headers["Location"] == "/dashboard/login"
    slash = await client.get("/dashboard/", allow_redirects=False)
    assert slash.status == 303
    assert slash.headers["Location"] == "/dashboard"
    login = await client.get("/dashboard/login")
    assert login.status == 200
    assert 'name="token"' in await login.text()
    # A tenant's API key opens nothing here, as a bearer or as a login.
    for path in ("/dashboard/api/overview", "/dashboard/api/stream"):
        refused = await client.get(path, headers={"Authorization": f"Bearer {tenant[1]}"})
        assert refused.status == 401
        assert (await refused.json())["error"]["code"] == "unauthorized"
    wrong = await client.post("/dashboard/login", data={"token": tenant[1]}, allow_redirects=False)
    assert wrong.status == 401
    assert "not valid" in await wrong.text()
    assert session.COOKIE not in wrong.cookies


async def test_login_opens_the_page_and_logout_ends_every_session(
    client: Client, operator: tuple[str, str], store: store_mod.Store
) -> None:
    await log_in(client, operator[1])
    page = await client.get("/dashboard")
    assert page.status == 200
    text = await page.text()
    assert '<script src="/dashboard/static/dashboard.js"' in text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    script = await client.get("/dashboard/static/dashboard.js")
    assert script.status == 200
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert (await client.get("/dashboard/static/../routes.py")).status == 404
    assert (await client.get("/dashboard/static/login.html")).status == 404

    stolen = client.session.cookie_jar.filter_cookies(client.make_url("/dashboard"))[session.COOKIE].value
    out = await client.post("/dashboard/logout", allow_redirects=False)
    assert out.status == 303
    assert (await client.get("/dashboard/api/overview")).status == 401
    # The cookie as it was before the logout no longer opens anything either.
    replay = await client.get("/dashboard/api/overview", headers={"Cookie": f"{session.COOKIE}={stolen}"})
    assert replay.status == 401
    await log_in(client, operator[1])
    assert (await client.get("/dashboard/api/overview")).status == 200


async def test_a_revoked_or_replaced_token_opens_nothing(
    client: Client, operator: tuple[str, str], store: store_mod.Store
) -> None:
    await log_in(client, operator[1])
    new = await store.operators.add(operator[0], replace=True)
    assert (await client.get("/dashboard/api/overview")).status == 401  # the login ended with the old token
    assert (await client.post("/dashboard/login", data={"token": operator[1]})).status == 401
    bearer = {"Authorization": f"Bearer {new}"}
    assert (await client.get("/dashboard/api/overview", headers=bearer)).status == 200
    await store.operators.revoke(operator[0])
    assert (await client.get("/dashboard/api/overview", headers=bearer)).status == 401


async def test_overview_and_detail_show_requests_masked(
    client: Client, operator: tuple[str, str], tenant: tuple[models.Tenant, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Earlier tests' tenants would otherwise push this one into "others".
    monkeypatch.setattr(board, "TOP_TENANTS", 100_000)
    created = await create(client, tenant[1])
    bearer = {"Authorization": f"Bearer {operator[1]}"}
    response = await client.get("/dashboard/api/overview", headers=bearer)
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    overview = await response.json()
    text = json.dumps(overview)
    assert JP_MOBILE not in text
    assert "12345678" not in text
    row = next(r for r in overview["recent"] if r["id"] == created["id"])
    assert row["status"] == "queued"
    assert row["tenant"] == tenant[0].name
    assert row["phone"] == "+81********78"
    assert overview["queue"]["depth"] >= 1
    mine = next(t for t in overview["tenants_today"] if t["tenant"] == tenant[0].name)
    assert mine["total"] == 1
    assert mine["by_status"] == {"queued": 1}

    detail = await client.get(f"/dashboard/api/verifications/{created['id']}", headers=bearer)
    assert detail.status == 200
    body = await detail.json()
    assert JP_MOBILE not in json.dumps(body)
    assert body["request"]["status"] == "queued"
    assert [(e["type"], e["to_status"]) for e in body["events"]][:1] == [("status", "queued")]
    assert all("?" not in w["url"] and "s3cret" not in w["url"] for w in body["webhooks"])
    missing = await client.get(f"/dashboard/api/verifications/{uuid.uuid4()}", headers=bearer)
    assert missing.status == 404
    bad = await client.get("/dashboard/api/verifications/not-an-id", headers=bearer)
    assert bad.status == 404


async def read_events(response: Any, want: int, timeout: float = 15.0) -> list[tuple[str, dict[str, Any]]]:
    """The first ``want`` server-sent events of a stream."""
    events: list[tuple[str, dict[str, Any]]] = []
    kind = ""
    async with asyncio.timeout(timeout):
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
                if len(events) == want:
                    return events
    return events


async def test_the_stream_sends_a_change_as_it_happens(
    client: Client, operator: tuple[str, str], tenant: tuple[models.Tenant, str]
) -> None:
    await log_in(client, operator[1])
    response = await client.get("/dashboard/api/stream")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    ((kind, _),) = await read_events(response, 1)
    assert kind == "overview"
    created = await create(client, tenant[1])
    # The next overview that moved names the new request as changed.
    while True:
        ((kind, message),) = await read_events(response, 1)
        if created["id"] in message["changed"]:
            break
    assert kind == "overview"
    assert any(r["id"] == created["id"] and r["status"] == "queued" for r in message["recent"])
    response.close()


async def test_controllers_reports_make_node_and_trunk_health(
    client: Client, operator: tuple[str, str], store: store_mod.Store
) -> None:
    name = f"ctl-{uuid.uuid4().hex[:8]}"
    node = f"node-{uuid.uuid4().hex[:8]}"
    report = board.ControllerReport(
        name=name,
        node=node,
        ari_connected=True,
        calls=2,
        trunks=[{"name": "trunk", "up": False, "retry_in_seconds": 20.0, "calls": 2}],
        started_at=dt.datetime.now(dt.UTC),
    )
    bearer = {"Authorization": f"Bearer {operator[1]}"}
    try:
        await store.dashboard.report_controller(report)
        overview = await (await client.get("/dashboard/api/overview", headers=bearer)).json()
        (mine,) = [n for n in overview["nodes"] if n["name"] == node]
        assert mine == {"name": node, "controllers": 1, "connected": 1, "calls": 2, "state": "up"}
        trunk = next(t for t in overview["trunks"] if t["name"] == "trunk")
        assert trunk["state"] == "down"
        assert trunk["retry_in_seconds"] == 20.0
        # The websocket went down: the node shows it at the next report.
        await store.dashboard.report_controller(dataclasses.replace(report, ari_connected=False))
        overview = await (await client.get("/dashboard/api/overview", headers=bearer)).json()
        assert [n["state"] for n in overview["nodes"] if n["name"] == node] == ["down"]
    finally:
        await store.dashboard.forget_controller(name)
    overview = await (await client.get("/dashboard/api/overview", headers=bearer)).json()
    assert [n for n in overview["nodes"] if n["name"] == node] == []


async def test_trunk_health_counts_every_call_that_failed_on_its_trunk(
    client: Client, operator: tuple[str, str], tenant: tuple[models.Tenant, str], db: Conn
) -> None:
    created = await create(client, tenant[1])
    trunk = f"trunk-{uuid.uuid4().hex[:8]}"
    # A 503 (34), a trunk silent until timer B (18) and, on Asterisk 22,
    # refused credentials (21): each recorded by the flows as trunk_failed;
    # a callee's 480 (19) is not the trunk's failure.
    for index, (outcome, cause) in enumerate(
        [("trunk_failed", 34), ("trunk_failed", 18), ("trunk_failed", 21), ("callee_unavailable", 19)]
    ):
        await db.execute(
            "INSERT INTO call_attempts (verification_id, attempt, controller, node, trunk, channel_id, ended_at,"
            " outcome, cause) VALUES (%s, 1, 'ctl', 'node', %s, %s, now(), %s, %s)",
            [created["id"], trunk, f"{trunk}-{index}", outcome, cause],
        )
    bearer = {"Authorization": f"Bearer {operator[1]}"}
    overview = await (await client.get("/dashboard/api/overview", headers=bearer)).json()
    (row,) = [t for t in overview["trunks"] if t["name"] == trunk]
    assert (row["recent_calls"], row["recent_trunk_failures"]) == (4, 3)


async def test_open_pages_are_told_to_reconnect_when_the_process_stops(
    store: store_mod.Store, operator: tuple[str, str], http_session: aiohttp.ClientSession
) -> None:
    runner = web.AppRunner(api_app.make_app(CFG, store, {}, metrics=metrics.Metrics(store.gauges)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    stopped = False
    try:
        response = await http_session.get(
            f"http://127.0.0.1:{port}/dashboard/api/stream", headers={"Authorization": f"Bearer {operator[1]}"}
        )
        ((kind, _),) = await read_events(response, 1)
        assert kind == "overview"
        # Bounded like Runtime.stop's: an open page must not hold the stop up.
        cleanup = asyncio.create_task(runner.cleanup())
        ((kind, _),) = await read_events(response, 1)
        assert kind == "closing"
        await asyncio.wait_for(cleanup, 10)
        stopped = True
    finally:
        if not stopped:
            await runner.cleanup()
