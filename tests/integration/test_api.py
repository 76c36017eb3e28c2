"""The side-API served for real, against the real Postgres of the local
stack: the v1 contract, its refusals, and what never reaches the logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ivr_auth import config, errors, models
from ivr_auth import store as store_mod
from ivr_auth.api import app as api_app
from ivr_auth.api import handlers
from ivr_auth.store import tenants

pytestmark = pytest.mark.integration

Client = TestClient[web.Request, web.Application]

# Limits high enough not to stand in the way here: tests/integration/test_limits.py tests them.
CFG = config.from_mapping({"limits": {"requests_per_minute": 10_000, "sends_per_phone": 10_000}})
JP_MOBILE = "+819012345678"
BODY = {"phone": JP_MOBILE, "method": "dtmf"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextlib.asynccontextmanager
async def serve(
    store: store_mod.Store, checks: Mapping[str, handlers.Check] | None = None, **kwargs: Any
) -> AsyncIterator[Client]:
    app = api_app.make_app(CFG, store, checks or {}, **kwargs)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
async def client(store: store_mod.Store) -> AsyncIterator[Client]:
    async with serve(store, {"postgres": store.ping}) as served:
        yield served


@pytest.fixture
async def new_key(
    store: store_mod.Store, tenant: tuple[models.Tenant, str]
) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Makes more tenants; afterwards deletes them all (and so every request
    they made), because a controller running against the same database
    would otherwise dial what these tests leave queued."""
    made = [tenant[0].id]

    async def make(default_language: str | None = None) -> str:
        extra, api_key = await store.tenants.create(
            f"tenant-{uuid.uuid4().hex[:12]}", default_language=default_language
        )
        made.append(extra.id)
        return api_key

    yield make
    await store.db.one("DELETE FROM tenants WHERE id = ANY(%(ids)s)", {"ids": made})


@pytest.fixture
def key(tenant: tuple[models.Tenant, str], new_key: Callable[..., Awaitable[str]]) -> str:
    return tenant[1]


@pytest.fixture
async def other_key(new_key: Callable[..., Awaitable[str]]) -> str:
    return await new_key()


async def create(client: Client, key: str, body: Any = None, **headers: str) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/v1/verifications", json=BODY if body is None else body, headers=bearer(key) | headers)
    return resp.status, await resp.json()


async def created(client: Client, key: str, **fields: Any) -> dict[str, Any]:
    status, data = await create(client, key, BODY | fields)
    assert status == 201, data
    return data


async def expect_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    data = await resp.json()
    assert set(data) == {"error"}
    assert data["error"]["code"] == code
    assert isinstance(data["error"]["message"], str)
    assert data["error"]["message"]
    return dict(data["error"])


# --- create -------------------------------------------------------------------------


async def test_create_generates_a_code_and_never_logs_it(
    client: Client, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    resp = await client.post(
        "/v1/verifications", json=BODY | {"code_length": 10, "reference": "order-1"}, headers=bearer(key)
    )
    assert resp.status == 201
    assert resp.headers["Cache-Control"] == "no-store"
    data = await resp.json()
    code = data["code"]
    assert len(code) == 10
    assert code.isascii()
    assert code.isdigit()
    assert data["status"] == "queued"
    assert data["phone"] == JP_MOBILE
    assert data["method"] == "dtmf"
    assert data["language"] == "ja"
    assert data["reference"] == "order-1"
    assert data["code_length"] == 10
    assert data["max_code_attempts"] == CFG.verification.max_code_attempts
    assert data["max_call_attempts"] == CFG.verification.max_call_attempts
    assert data["expires_at"].endswith("Z")
    assert resp.headers["Location"] == f"/v1/verifications/{data['id']}"

    got = await client.get(resp.headers["Location"], headers=bearer(key))
    assert got.status == 200
    state = await got.json()
    assert "code" not in state
    assert state == {k: v for k, v in data.items() if k != "code"}

    assert caplog.records, "the create should have been logged"
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + repr(record.__dict__)
        assert code not in text
        assert key not in text
        assert JP_MOBILE not in text


async def test_national_number_is_normalised(client: Client, key: str) -> None:
    data = await created(client, key, phone="090-1234-5678")
    assert data["phone"] == "+819012345678"
    assert data["line_type"] == "mobile"


async def test_supplied_code_is_not_echoed(client: Client, key: str) -> None:
    data = await created(client, key, code="4711")
    assert "code" not in data
    assert data["code_length"] == 4


async def test_tenant_default_language(client: Client, new_key: Callable[..., Awaitable[str]]) -> None:
    english_key = await new_key(default_language="en")
    assert (await created(client, english_key))["language"] == "en"
    assert (await created(client, english_key, language="ja"))["language"] == "ja"


async def test_idempotent_replay(client: Client, key: str) -> None:
    status, first = await create(client, key, **{"Idempotency-Key": "order-17"})
    assert status == 201
    # Same body with another key order and spacing: the same request.
    raw = b'{ "method" : "dtmf",\n "phone": "+819012345678" }'
    resp = await client.post(
        "/v1/verifications",
        data=raw,
        headers=bearer(key) | {"Idempotency-Key": "order-17", "Content-Type": "application/json"},
    )
    assert resp.status == 200
    again = await resp.json()
    assert again["id"] == first["id"]
    assert again["code"] == first["code"]
    assert again == first
    assert resp.headers["Location"] == f"/v1/verifications/{first['id']}"


async def test_idempotent_replay_of_a_supplied_code_does_not_show_it(client: Client, key: str) -> None:
    body = BODY | {"code": "13579"}
    status, first = await create(client, key, body, **{"Idempotency-Key": "k-supplied"})
    status2, again = await create(client, key, body, **{"Idempotency-Key": "k-supplied"})
    assert (status, status2) == (201, 200)
    assert again["id"] == first["id"]
    assert "code" not in first
    assert "code" not in again


async def test_idempotency_key_reused_with_another_body(client: Client, key: str) -> None:
    status, _ = await create(client, key, **{"Idempotency-Key": "k-1"})
    assert status == 201
    resp = await client.post(
        "/v1/verifications", json=BODY | {"ttl_seconds": 60}, headers=bearer(key) | {"Idempotency-Key": "k-1"}
    )
    await expect_error(resp, 422, "idempotency_key_reused")


async def test_idempotency_keys_are_per_tenant(client: Client, key: str, other_key: str) -> None:
    status, first = await create(client, key, **{"Idempotency-Key": "shared"})
    status2, second = await create(client, other_key, **{"Idempotency-Key": "shared"})
    assert (status, status2) == (201, 201)
    assert first["id"] != second["id"]


async def test_two_hundred_creates_at_once(client: Client, key: str) -> None:
    results = await asyncio.gather(*(create(client, key) for _ in range(200)))
    assert [status for status, _ in results] == [201] * 200
    assert len({data["id"] for _, data in results}) == 200


# --- read, events, cancel, check ----------------------------------------------------


async def test_tenant_isolation(client: Client, key: str, other_key: str) -> None:
    data = await created(client, key)
    path = f"/v1/verifications/{data['id']}"
    await expect_error(await client.get(path, headers=bearer(other_key)), 404, "not_found")
    await expect_error(await client.get(f"{path}/events", headers=bearer(other_key)), 404, "not_found")
    await expect_error(await client.post(f"{path}/cancel", headers=bearer(other_key)), 404, "not_found")
    checked = await client.post(f"{path}/check", json={"code": data["code"]}, headers=bearer(other_key))
    await expect_error(checked, 404, "not_found")
    wrong = await client.post(f"{path}/check", json={"code": "0000"}, headers=bearer(other_key))
    await expect_error(wrong, 404, "not_found")
    # None of that touched the owner's request.
    state = await (await client.get(path, headers=bearer(key))).json()
    assert (state["status"], state["code_attempts"]) == ("queued", 0)


@pytest.mark.parametrize(
    "verification_id", [str(uuid.uuid4()), "not-a-uuid", "1", uuid.uuid4().hex, "{" + str(uuid.uuid4()) + "}"]
)
async def test_unknown_or_malformed_id_is_not_found(client: Client, key: str, verification_id: str) -> None:
    path = f"/v1/verifications/{verification_id}"
    await expect_error(await client.get(path, headers=bearer(key)), 404, "not_found")
    await expect_error(await client.get(f"{path}/events", headers=bearer(key)), 404, "not_found")
    await expect_error(await client.post(f"{path}/cancel", headers=bearer(key)), 404, "not_found")
    checked = await client.post(f"{path}/check", json={"code": "1234"}, headers=bearer(key))
    await expect_error(checked, 404, "not_found")


async def test_cancel_then_cancel_again(client: Client, key: str) -> None:
    data = await created(client, key)
    path = f"/v1/verifications/{data['id']}/cancel"
    resp = await client.post(path, headers=bearer(key))
    assert resp.status == 200
    canceled = await resp.json()
    assert canceled["status"] == "canceled"
    assert canceled["finished_at"].endswith("Z")
    assert "code" not in canceled
    await expect_error(await client.post(path, headers=bearer(key)), 409, "not_cancelable")


async def test_check_wrong_then_right(client: Client, key: str) -> None:
    data = await created(client, key)
    path = f"/v1/verifications/{data['id']}/check"
    wrong = "0000000" if data["code"] != "0000000" else "1111111"
    resp = await client.post(path, json={"code": wrong[: len(data["code"])]}, headers=bearer(key))
    assert resp.status == 200
    first = await resp.json()
    assert first["verified"] is False
    assert (first["verification"]["status"], first["verification"]["code_attempts"]) == ("queued", 1)
    resp = await client.post(path, json={"code": data["code"]}, headers=bearer(key))
    assert resp.status == 200
    second = await resp.json()
    assert second["verified"] is True
    assert second["verification"]["status"] == "verified"
    assert "code" not in second["verification"]
    # Settled: neither a check nor a cancel applies any more.
    again = await client.post(path, json={"code": data["code"]}, headers=bearer(key))
    await expect_error(again, 409, "not_checkable")
    cancel = await client.post(f"/v1/verifications/{data['id']}/cancel", headers=bearer(key))
    await expect_error(cancel, 409, "not_cancelable")


async def test_check_after_max_attempts_fails_the_request(client: Client, key: str) -> None:
    data = await created(client, key, code="123456", max_code_attempts=2)
    path = f"/v1/verifications/{data['id']}/check"
    first = await (await client.post(path, json={"code": "000000"}, headers=bearer(key))).json()
    assert (first["verified"], first["verification"]["status"]) == (False, "queued")
    second = await (await client.post(path, json={"code": "000001"}, headers=bearer(key))).json()
    assert second["verified"] is False
    assert second["verification"]["status"] == "failed"
    assert second["verification"]["code_attempts"] == 2
    # Even the right code is too late now.
    late = await client.post(path, json={"code": "123456"}, headers=bearer(key))
    await expect_error(late, 409, "not_checkable")


async def test_badly_formed_check_does_not_count(client: Client, key: str) -> None:
    data = await created(client, key)
    path = f"/v1/verifications/{data['id']}/check"
    for body, code in (({"code": "12ab"}, "invalid_code"), ({"code": 1234}, "invalid_field"), ({}, "missing_field")):
        await expect_error(await client.post(path, json=body, headers=bearer(key)), 422, code)
    state = await (await client.get(f"/v1/verifications/{data['id']}", headers=bearer(key))).json()
    assert state["code_attempts"] == 0


async def test_events_and_calls(client: Client, key: str) -> None:
    data = await created(client, key, code="2468")
    base = f"/v1/verifications/{data['id']}"
    await client.post(f"{base}/check", json={"code": "1357"}, headers=bearer(key))
    await client.post(f"{base}/cancel", headers=bearer(key))
    resp = await client.get(f"{base}/events", headers=bearer(key))
    assert resp.status == 200
    body = await resp.json()
    assert body["calls"] == []
    events = body["events"]
    assert [(e["type"], e["to_status"]) for e in events] == [
        ("status", "queued"),
        ("wrong_code", None),
        ("status", "canceled"),
    ]
    assert events[1]["detail"] == {"source": "api", "attempt": 1}
    assert events[2]["from_status"] == "queued"
    for event in events:
        assert event["at"].endswith("Z")
    assert "2468" not in await resp.text()


# --- refusals -----------------------------------------------------------------------

TOO_BIG = json.dumps(BODY | {"reference": "r" * (17 * 1024)}).encode()
OK = '"phone": "+819012345678", "method": "dtmf"'
# (name, body, extra headers, status, error code, field the message starts with)
CASES: list[tuple[str, bytes, dict[str, str], int, str, str | None]] = [
    ("malformed JSON", b'{"phone": ', {}, 400, "invalid_json", None),
    ("empty body", b"", {}, 400, "invalid_json", None),
    ("not UTF-8", b'{"phone": "\xff"}', {}, 400, "invalid_json", None),
    ("NaN", f'{{{OK}, "ttl_seconds": NaN}}'.encode(), {}, 400, "invalid_json", None),
    ("deeply nested", b"[" * 8000 + b"]" * 8000, {}, 400, "invalid_json", None),
    ("array body", b"[]", {}, 400, "invalid_body", None),
    ("string body", b'"hello"', {}, 400, "invalid_body", None),
    ("null body", b"null", {}, 400, "invalid_body", None),
    ("oversize body", TOO_BIG, {}, 413, "body_too_large", None),
    ("phone as number", b'{"phone": 819012345678, "method": "dtmf"}', {}, 422, "invalid_field", "phone"),
    ("bool for int", f'{{{OK}, "ttl_seconds": true}}'.encode(), {}, 422, "invalid_field", "ttl_seconds"),
    ("bool for int 2", f'{{{OK}, "max_code_attempts": false}}'.encode(), {}, 422, "invalid_field", "max_code_attempts"),
    ("float for int", f'{{{OK}, "code_length": 6.0}}'.encode(), {}, 422, "invalid_field", "code_length"),
    ("code as number", f'{{{OK}, "code": 123456}}'.encode(), {}, 422, "invalid_field", "code"),
    ("missing phone", b'{"method": "dtmf"}', {}, 422, "missing_field", "phone"),
    ("missing method", b'{"phone": "+819012345678"}', {}, 422, "missing_field", "method"),
    ("invalid phone", b'{"phone": "12", "method": "dtmf"}', {}, 422, "invalid_phone", "phone"),
    # A valid number, of a line type not called: a policy, not a mistake.
    ("premium phone", b'{"phone": "0990-123-456", "method": "dtmf"}', {}, 403, "destination_not_allowed", "phone"),
    ("toll-free phone", b'{"phone": "0120-123-456", "method": "dtmf"}', {}, 403, "destination_not_allowed", "phone"),
    ("vanity phone", b'{"phone": "090-ABCD-EFGH", "method": "dtmf"}', {}, 422, "invalid_phone", "phone"),
    ("letter O phone", b'{"phone": "O90-1234-5678", "method": "dtmf"}', {}, 422, "invalid_phone", "phone"),
    ("extension", b'{"phone": "090-1234-5678 ext. 9", "method": "dtmf"}', {}, 422, "invalid_phone", "phone"),
    ("unknown method", b'{"phone": "+819012345678", "method": "fax"}', {}, 422, "invalid_method", "method"),
    ("ask_code for dtmf", f'{{{OK}, "ask_code": true}}'.encode(), {}, 422, "invalid_field", "ask_code"),
    (
        "ask_code not bool",
        b'{"phone": "+819012345678", "method": "inbound", "ask_code": 1}',
        {},
        422,
        "invalid_field",
        "ask_code",
    ),
    # No inbound.numbers in this config and none for the tenant: no number to call.
    (
        "inbound, no number",
        b'{"phone": "+819012345678", "method": "inbound"}',
        {},
        422,
        "inbound_not_configured",
        "method",
    ),
    ("non-digit code", f'{{{OK}, "code": "12ab"}}'.encode(), {}, 422, "invalid_code", "code"),
    ("short code", f'{{{OK}, "code": "123"}}'.encode(), {}, 422, "invalid_code", "code"),
    ("code vs length", f'{{{OK}, "code": "1234", "code_length": 6}}'.encode(), {}, 422, "invalid_code", "code"),
    ("unknown field", f'{{{OK}, "pin": "1"}}'.encode(), {}, 422, "unknown_field", "pin"),
    ("bad language", f'{{{OK}, "language": "fr"}}'.encode(), {}, 422, "invalid_field", "language"),
    ("bad callback", f'{{{OK}, "callback_url": "ftp://x"}}'.encode(), {}, 422, "invalid_field", "callback_url"),
    ("long reference", f'{{{OK}, "reference": "{"r" * 129}"}}'.encode(), {}, 422, "invalid_field", "reference"),
    ("NUL in reference", f'{{{OK}, "reference": "a\\u0000b"}}'.encode(), {}, 422, "invalid_field", "reference"),
    ("lone surrogate", f'{{{OK}, "reference": "\\ud800"}}'.encode(), {}, 422, "invalid_field", "reference"),
    ("ttl too long", f'{{{OK}, "ttl_seconds": 86400}}'.encode(), {}, 422, "invalid_field", "ttl_seconds"),
    ("too many attempts", f'{{{OK}, "max_code_attempts": 11}}'.encode(), {}, 422, "invalid_field", "max_code_attempts"),
    ("empty idempotency key", f"{{{OK}}}".encode(), {"Idempotency-Key": ""}, 400, "invalid_idempotency_key", None),
    (
        "long idempotency key",
        f"{{{OK}}}".encode(),
        {"Idempotency-Key": "k" * 256},
        400,
        "invalid_idempotency_key",
        None,
    ),
]


@pytest.mark.parametrize(
    ("raw", "headers", "status", "code", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_bad_create_requests(
    client: Client, key: str, raw: bytes, headers: dict[str, str], status: int, code: str, field: str | None
) -> None:
    resp = await client.post(
        "/v1/verifications", data=raw, headers=bearer(key) | {"Content-Type": "application/json"} | headers
    )
    error = await expect_error(resp, status, code)
    if field is not None:
        assert error["message"].startswith(f"{field}:")


async def test_oversize_check_body(client: Client, key: str) -> None:
    data = await created(client, key)
    resp = await client.post(
        f"/v1/verifications/{data['id']}/check",
        data=b" " * (16 * 1024 + 1) + b"{}",
        headers=bearer(key) | {"Content-Type": "application/json"},
    )
    await expect_error(resp, 413, "body_too_large")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer ivra_abcdefgh_not-a-key"},
        {"Authorization": "Bearer not-even-shaped-like-a-key"},
        {"Authorization": "Bearer " + "k" * 300},
    ],
    ids=["missing", "empty", "no token", "basic", "wrong key", "junk key", "too long"],
)
async def test_unauthorized(client: Client, key: str, headers: dict[str, str]) -> None:
    data = await created(client, key)
    for method, path in (
        ("POST", "/v1/verifications"),
        ("GET", f"/v1/verifications/{data['id']}"),
        ("GET", f"/v1/verifications/{data['id']}/events"),
        ("POST", f"/v1/verifications/{data['id']}/cancel"),
        ("POST", f"/v1/verifications/{data['id']}/check"),
    ):
        resp = await client.request(method, path, json=BODY, headers=headers)
        await expect_error(resp, 401, "unauthorized")
        assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_right_key_prefix_with_the_wrong_secret(client: Client, key: str) -> None:
    prefix = key.rsplit("_", 1)[0]
    resp = await client.post("/v1/verifications", json=BODY, headers=bearer(f"{prefix}_wrong-secret"))
    await expect_error(resp, 401, "unauthorized")


async def test_unknown_route(client: Client, key: str) -> None:
    for path in ("/", "/v2/verifications", "/v1/verifications/", "/v1/verifications/x/y/z"):
        await expect_error(await client.get(path, headers=bearer(key)), 404, "not_found")
    await expect_error(await client.get("/nope"), 404, "not_found")


async def test_method_not_allowed(client: Client, key: str) -> None:
    resp = await client.get("/v1/verifications", headers=bearer(key))
    await expect_error(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]
    resp = await client.delete(f"/v1/verifications/{uuid.uuid4()}", headers=bearer(key))
    await expect_error(resp, 405, "method_not_allowed")
    await expect_error(await client.post("/healthz"), 405, "method_not_allowed")


# --- health -------------------------------------------------------------------------


async def test_healthz(client: Client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_ok(client: Client) -> None:
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ready", "checks": {"postgres": "ok"}}


async def test_readyz_reports_the_failing_check(store: store_mod.Store) -> None:
    async def asterisk() -> None:
        raise errors.AriUnavailable("ARI at 127.0.0.1:58098: connection refused")

    async def slow() -> None:
        await asyncio.sleep(10)

    checks = {"postgres": store.ping, "asterisk": asterisk, "slow": slow}
    async with serve(store, checks, ready_timeout=0.2) as client:
        resp = await client.get("/readyz")
        assert resp.status == 503
        body = await resp.json()
        assert body == {
            "status": "not_ready",
            "checks": {
                "postgres": "ok",
                "asterisk": "ARI at 127.0.0.1:58098: connection refused",
                "slow": "no answer within 0.2 s",
            },
        }
        assert "Traceback" not in await resp.text()


async def test_readyz_runs_checks_concurrently(store: store_mod.Store) -> None:
    async def takes_a_while() -> None:
        await asyncio.sleep(0.3)

    checks = {f"check{i}": takes_a_while for i in range(5)}
    async with serve(store, checks) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        resp = await client.get("/readyz")
        assert resp.status == 200
        assert loop.time() - started < 1.2


# --- store failures -----------------------------------------------------------------


class _FailingTenants(tenants.Tenants):
    """Stands in for a database that is gone (or broken)."""

    def __init__(self, exc: Exception) -> None:  # no database: nothing here gets that far
        self.exc = exc

    async def for_key(self, api_key: str) -> models.Tenant | None:
        raise self.exc


def _failing_store(exc: Exception) -> store_mod.Store:
    failing = store_mod.Store.from_url("postgresql://db.invalid/ivr_auth", "x" * 40)  # never opened
    failing.tenants = _FailingTenants(exc)
    return failing


async def test_store_unavailable_is_503() -> None:
    failing = _failing_store(errors.StoreUnavailable("database unavailable: connection refused"))
    async with serve(failing) as client:
        resp = await client.post("/v1/verifications", json=BODY, headers=bearer("ivra_abcdefgh_x"))
        await expect_error(resp, 503, "unavailable")
        assert resp.headers["Retry-After"] == "5"


async def test_unexpected_error_is_500_json_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    async with serve(_failing_store(RuntimeError("boom"))) as client:
        resp = await client.get(f"/v1/verifications/{uuid.uuid4()}", headers=bearer("ivra_abcdefgh_x"))
        error = await expect_error(resp, 500, "internal")
        assert "boom" not in error["message"]
    logged = [r for r in caplog.records if r.name == api_app.__name__]
    assert any("/v1/verifications/" in r.getMessage() and r.exc_info for r in logged)
