"""Inbound caller-ID matching, code checks for the FastAGI route, tenant
settings, and the API's inbound answer, against the real Postgres.

Every test uses numbers of its own (a random published number and caller),
because matching looks across tenants by number and the database is shared."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import phonenumbers
import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ivr_auth import config, errors, inbound_match, models, phone, states
from ivr_auth import store as store_mod
from ivr_auth.api import app as api_app
from ivr_auth.store import tenants, verifications

pytestmark = pytest.mark.integration

S = states.Status
Conn = psycopg.AsyncConnection[dict[str, Any]]
CODE = "8642097531"


def random_number(prefix: str) -> str:
    """A valid Japanese number no other test uses (050 IP phone, 090 mobile)."""
    while True:
        candidate = prefix + "".join(random.choice("0123456789") for _ in range(8))
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate, "JP")):
            return phone.lenient_e164(candidate, "JP") or ""


@pytest.fixture
async def me(store: store_mod.Store, db: Conn, tenant: tuple[models.Tenant, str]) -> AsyncIterator[models.Tenant]:
    """A tenant publishing a number of its own; deleted (with its requests) at the end."""
    did = random_number("050")
    yield await store.tenants.update(tenant[0].name, tenants.TenantChanges(inbound_numbers=(did,)))
    await db.execute("DELETE FROM tenants WHERE id = %s", [tenant[0].id])


@pytest.fixture
def caller() -> str:
    return random_number("090")


def cfg_with(*numbers: str) -> config.Config:
    return config.from_mapping({"inbound": {"numbers": list(numbers)}})


async def pending(
    store: store_mod.Store, tenant: models.Tenant, caller: str, *, ask_code: bool = False, ttl: int = 300
) -> models.Verification:
    created = await store.verifications.create(
        verifications.NewVerification(
            tenant_id=tenant.id,
            method="inbound",
            phone=caller,
            line_type="mobile",
            code=CODE,
            language="en",
            reference=None,
            callback_url=None,
            ttl_seconds=ttl,
            max_code_attempts=2,
            max_call_attempts=1,
            idempotency_key=None,
            request_hash=None,
            inbound_number=tenant.inbound_numbers[0],
            ask_code=ask_code,
        )
    )
    return created.verification


# --- matching --------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["e164", "national", "e164_no_plus", "dashed"])
async def test_registered_caller_verifies_in_any_number_form(
    store: store_mod.Store, me: models.Tenant, caller: str, form: str
) -> None:
    request = await pending(store, me, caller)
    national = phone.format_for_trunk(caller, "national", "JP")
    presented = {
        "e164": caller,
        "national": national,
        "e164_no_plus": caller.removeprefix("+"),
        "dashed": f"{national[:3]}-{national[3:7]}-{national[7:]}",
    }[form]
    did = phone.format_for_trunk(me.inbound_numbers[0], "national", "JP")

    match = await inbound_match.match_call(store, config.Config(), did=did, caller=presented, source="test")

    assert match.result is inbound_match.Result.VERIFIED
    assert match.verification is not None
    assert match.verification.id == request.id
    assert match.verification.status is S.VERIFIED
    assert match.verification.reason == "caller_id_matched"
    assert match.reject_unanswered is False
    events = await store.verifications.events(request.id)
    assert events[-1].detail["source"] == "test"


async def test_another_caller_verifies_nothing(store: store_mod.Store, me: models.Tenant, caller: str) -> None:
    request = await pending(store, me, caller)

    match = await inbound_match.match_call(
        store, config.Config(), did=me.inbound_numbers[0], caller=random_number("080"), source="test"
    )

    assert match.result is inbound_match.Result.NOT_FOUND
    assert (await store.verifications.get(me.id, request.id)).status is S.QUEUED


@pytest.mark.parametrize("presented", ["", "anonymous", "Anonymous", "unknown", "restricted", None])
async def test_withheld_caller_id_verifies_nothing(
    store: store_mod.Store, me: models.Tenant, caller: str, presented: str | None
) -> None:
    request = await pending(store, me, caller)

    match = await inbound_match.match_call(
        store, config.Config(), did=me.inbound_numbers[0], caller=presented, source="t"
    )

    assert match.result is inbound_match.Result.ANONYMOUS
    assert (await store.verifications.get(me.id, request.id)).status is S.QUEUED


async def test_the_number_called_must_be_the_one_given(store: store_mod.Store, me: models.Tenant, caller: str) -> None:
    request = await pending(store, me, caller)

    match = await inbound_match.match_call(store, config.Config(), did=random_number("050"), caller=caller, source="t")

    assert match.result is inbound_match.Result.NOT_FOUND
    assert (await store.verifications.get(me.id, request.id)).status is S.QUEUED


async def test_expired_canceled_and_settled_requests_do_not_match(
    store: store_mod.Store, me: models.Tenant, caller: str, db: Conn
) -> None:
    expired = await pending(store, me, caller)
    await db.execute("UPDATE verifications SET expires_at = now() - interval '1 second' WHERE id = %s", [expired.id])
    canceled = await pending(store, me, caller)
    await store.verifications.cancel(me.id, canceled.id)

    match = await inbound_match.match_call(store, config.Config(), did=me.inbound_numbers[0], caller=caller, source="t")

    assert match.result is inbound_match.Result.NOT_FOUND


async def test_the_newest_pending_request_is_the_one_verified(
    store: store_mod.Store, me: models.Tenant, caller: str
) -> None:
    older = await pending(store, me, caller)
    newer = await pending(store, me, caller)

    match = await inbound_match.match_call(store, config.Config(), did=me.inbound_numbers[0], caller=caller, source="t")

    assert match.verification is not None
    assert match.verification.id == newer.id
    assert (await store.verifications.get(me.id, older.id)).status is S.QUEUED


async def test_request_that_wants_the_code_is_not_verified_by_the_caller_id_alone(
    store: store_mod.Store, me: models.Tenant, caller: str
) -> None:
    request = await pending(store, me, caller, ask_code=True)

    match = await inbound_match.match_call(store, config.Config(), did=me.inbound_numbers[0], caller=caller, source="t")

    assert match.result is inbound_match.Result.CODE_REQUIRED
    assert match.verification is not None
    assert match.verification.id == request.id
    assert (await store.verifications.get(me.id, request.id)).status is S.QUEUED


async def test_missed_call_mode(store: store_mod.Store, me: models.Tenant, caller: str) -> None:
    await store.tenants.update(me.name, tenants.TenantChanges(missed_call=True))
    await pending(store, me, caller)

    match = await inbound_match.match_call(store, config.Config(), did=me.inbound_numbers[0], caller=caller, source="t")

    assert match.result is inbound_match.Result.VERIFIED
    assert match.reject_unanswered is True


async def test_unmatched_callers_hear_the_publishing_tenants_language(
    store: store_mod.Store, me: models.Tenant
) -> None:
    await store.tenants.update(me.name, tenants.TenantChanges(default_language="en"))
    cfg = config.Config()  # default_language ja

    match = await inbound_match.match_call(store, cfg, did=me.inbound_numbers[0], caller=None, source="t")

    assert match.language == "en"


async def test_take_inbound_holds_a_lease(store: store_mod.Store, me: models.Tenant, caller: str) -> None:
    request = await pending(store, me, caller, ask_code=True)

    taken = await store.verifications.take_inbound(
        request.id, owner="ctl-1", node="local", channel_id="1700000000.1", lease_seconds=30, detail={"x": 1}
    )
    again = await store.verifications.take_inbound(
        request.id, owner="ctl-2", node="local", channel_id="1700000000.2", lease_seconds=30, detail={}
    )

    assert taken is not None
    assert taken.status is S.IN_CALL
    assert taken.lease_owner == "ctl-1"
    assert taken.lease_expires_at is not None
    assert taken.answered_by == "human"
    assert taken.call_attempts == 1
    assert again is None


# --- code checks from an operator's dialplan (FastAGI) -----------------------------------


async def test_check_code_by_id_alone(store: store_mod.Store, me: models.Tenant, caller: str) -> None:
    request = await pending(store, me, caller, ask_code=True)

    wrong, after_wrong = await inbound_match.check_code(store, request.id, "1111111111", source="agi")
    empty, after_empty = await inbound_match.check_code(store, request.id, "", source="agi")
    closed, _ = await inbound_match.check_code(store, request.id, CODE, source="agi")

    assert wrong is inbound_match.CheckResult.WRONG_CODE
    assert after_wrong is not None
    assert after_wrong.code_attempts == 1
    # Nothing keyed counts as well, and here uses up the two attempts.
    assert empty is inbound_match.CheckResult.FAILED
    assert after_empty is not None
    assert after_empty.status is S.FAILED
    assert closed is inbound_match.CheckResult.CLOSED


async def test_check_code_verifies(store: store_mod.Store, me: models.Tenant, caller: str) -> None:
    request = await pending(store, me, caller, ask_code=True)

    result, verification = await inbound_match.check_code(store, request.id, CODE, source="agi")

    assert result is inbound_match.CheckResult.VERIFIED
    assert verification is not None
    assert verification.status is S.VERIFIED


async def test_check_code_unknown_request(store: store_mod.Store) -> None:
    result, verification = await inbound_match.check_code(store, uuid.uuid4(), CODE, source="agi")

    assert result is inbound_match.CheckResult.NOT_FOUND
    assert verification is None


# --- tenant settings ----------------------------------------------------------------------


async def test_update_tenant_changes_only_what_is_given(store: store_mod.Store, me: models.Tenant) -> None:
    assert me.voice_require_key is True
    assert me.missed_call is False

    changed = await store.tenants.update(me.name, tenants.TenantChanges(voice_require_key=False))

    assert changed.voice_require_key is False
    assert changed.inbound_numbers == me.inbound_numbers
    assert changed.missed_call is False
    assert changed.caller_id == me.caller_id

    cleared = await store.tenants.update(me.name, tenants.TenantChanges(inbound_numbers=()))
    assert cleared.inbound_numbers == ()
    assert cleared.voice_require_key is False


async def test_update_unknown_tenant(store: store_mod.Store) -> None:
    with pytest.raises(errors.NotFound, match="no tenant named"):
        await store.tenants.update(f"nobody-{uuid.uuid4().hex}", tenants.TenantChanges(missed_call=True))


async def test_shared_number_serves_tenants_without_their_own(
    store: store_mod.Store, me: models.Tenant, tenant: tuple[models.Tenant, str]
) -> None:
    shared = random_number("050")

    with_own = await store.tenants.for_did(me.inbound_numbers[0], shared=False)
    via_shared = await store.tenants.for_did(shared, shared=True)

    assert [t.id for t in with_own] == [me.id]
    assert me.id not in {t.id for t in via_shared}


# --- expiry of read-out codes -------------------------------------------------------------


async def test_delivered_requests_expire(store: store_mod.Store, me: models.Tenant, caller: str, db: Conn) -> None:
    request = await pending(store, me, caller)
    await db.execute(
        "UPDATE verifications SET status = 'delivered', expires_at = now() - interval '1 second' WHERE id = %s",
        [request.id],
    )

    await store.verifications.expire_queued()

    after = await store.verifications.get(me.id, request.id)
    assert after.status is S.EXPIRED
    assert after.code_sealed is None
    events = await store.verifications.events(request.id)
    assert (events[-1].from_status, events[-1].to_status) == ("delivered", "expired")


# --- the API's answer ---------------------------------------------------------------------


async def api(cfg: config.Config, store: store_mod.Store) -> TestClient[web.Request, web.Application]:
    return TestClient(TestServer(api_app.make_app(cfg, store, {})))


async def test_inbound_create_answers_with_the_number_to_call(
    store: store_mod.Store, me: models.Tenant, tenant: tuple[models.Tenant, str], caller: str
) -> None:
    async with await api(config.Config(), store) as client:
        resp = await client.post(
            "/v1/verifications",
            json={"phone": caller, "method": "inbound", "ask_code": True},
            headers={"Authorization": f"Bearer {tenant[1]}"},
        )
        body = await resp.json()

    assert resp.status == 201, body
    assert body["inbound_number"] == me.inbound_numbers[0]
    assert body["inbound_number_display"].startswith("050-")
    assert body["ask_code"] is True
    assert body["status"] == "queued"


async def test_inbound_create_falls_back_to_the_configs_numbers(
    store: store_mod.Store, me: models.Tenant, tenant: tuple[models.Tenant, str], caller: str
) -> None:
    await store.tenants.update(me.name, tenants.TenantChanges(inbound_numbers=()))
    async with await api(cfg_with("050-1234-5678"), store) as client:
        resp = await client.post(
            "/v1/verifications",
            json={"phone": caller, "method": "inbound"},
            headers={"Authorization": f"Bearer {tenant[1]}"},
        )
        body = await resp.json()

    assert resp.status == 201, body
    assert body["inbound_number"] == "+815012345678"
    assert body["inbound_number_display"] == "050-1234-5678"


async def test_inbound_without_a_number_to_call_is_refused(
    store: store_mod.Store, me: models.Tenant, tenant: tuple[models.Tenant, str], caller: str
) -> None:
    await store.tenants.update(me.name, tenants.TenantChanges(inbound_numbers=()))
    async with await api(config.Config(), store) as client:
        resp = await client.post(
            "/v1/verifications",
            json={"phone": caller, "method": "inbound"},
            headers={"Authorization": f"Bearer {tenant[1]}"},
        )
        body = await resp.json()

    assert resp.status == 422, body
    assert body["error"]["code"] == "inbound_not_configured"


async def test_voice_create_shows_the_code_and_no_inbound_fields(
    store: store_mod.Store, me: models.Tenant, tenant: tuple[models.Tenant, str], caller: str, db: Conn
) -> None:
    async with await api(config.Config(), store) as client:
        resp = await client.post(
            "/v1/verifications",
            json={"phone": caller, "method": "voice"},
            headers={"Authorization": f"Bearer {tenant[1]}"},
        )
        body = await resp.json()
    # Never dialled by a controller someone may be running.
    await db.execute("UPDATE verifications SET status = 'canceled' WHERE id = %s", [body["id"]])

    assert resp.status == 201, body
    assert body["code"].isdigit()
    assert body["delivered_at"] is None
    assert body["answered_by"] is None
    assert "inbound_number" not in body
    assert dt.datetime.fromisoformat(body["expires_at"]) > dt.datetime.now(dt.UTC)
