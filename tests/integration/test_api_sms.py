"""The API's contract for SMS and channels, served for real against the real
Postgres of the local stack: ``method: sms`` and ``channels`` as created and
shown (each answer held to the OpenAPI document), every refusal naming its
problem, the SMS budget, a code checked on a sent SMS, and one tenant's SMS
hidden from another.

The config names a carrier that nothing listens on: no sender runs here.
A test moves its request's SMS on as a sender would, through ``store.sms``."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jsonschema_rs
import pytest

from ivr_auth import config, models
from ivr_auth import store as store_mod
from ivr_auth.api import openapi
from ivr_auth.store import sms as sms_store
from tests.integration.conftest import Client, Conn, served

pytestmark = pytest.mark.integration

CARRIER = "test-carrier"
# Port 9 (discard): no sender binds it in these tests.
CARRIERS = [{"name": CARRIER, "host": "127.0.0.1", "port": 9, "system_id": "ivr-auth", "password": "secret"}]
# Limits high enough not to stand in the way, but for the one a test sets.
LIMITS = {"requests_per_minute": 10_000, "sends_per_phone": 10_000}
CFG = config.from_mapping({"limits": LIMITS, "sms": {"carriers": CARRIERS}})
MOBILE = "+819012345678"
IP_PHONE = "050-1234-5678"
FIXED = "03-1234-5678"
SMS_THEN_VOICE = [{"channel": "sms"}, {"channel": "voice", "after_seconds": 60}]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def conforms(instance: Any, schema_name: str) -> None:
    """``instance`` is what the OpenAPI document says a ``schema_name`` is."""
    components = openapi.document()["components"]
    validator = jsonschema_rs.Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema_name}", "components": components}
    )
    problems = [str(error).splitlines()[0] for error in validator.iter_errors(instance)]
    assert problems == [], f"not a {schema_name}: {problems}"


def ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


@pytest.fixture
async def api(store: store_mod.Store, tenant: tuple[models.Tenant, str], db: Conn) -> AsyncIterator[tuple[Client, str]]:
    """The API with an SMS carrier configured, and the tenant's key."""
    async with served(CFG, store, tenant, db) as client:
        yield client, tenant[1]


async def post(client: Client, key: str, body: Any) -> tuple[int, dict[str, Any], Any]:
    resp = await client.post("/v1/verifications", json=body, headers=bearer(key))
    return resp.status, await resp.json(), resp.headers


async def refused(client: Client, key: str, body: Any, status: int, code: str) -> str:
    got, data, _ = await post(client, key, body)
    assert (got, data.get("error", {}).get("code")) == (status, code), data
    conforms(data, "Error")
    message = data["error"]["message"]
    assert isinstance(message, str)
    return message


async def history(client: Client, key: str, verification_id: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/verifications/{verification_id}/events", headers=bearer(key))
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    conforms(data, "History")
    return data


async def claim_own(store: store_mod.Store, verification_id: uuid.UUID) -> sms_store.Outgoing:
    """The request's SMS claimed as a sender claims it; any other tenant's
    that came with it is put back due at once."""
    for _ in range(20):
        taken = await store.sms.claim(f"test-api-sms-{uuid.uuid4().hex[:6]}", 50, 30)
        for other in taken:
            if other.verification_id != verification_id:
                await store.sms.retry_later(other.id, delay=0, error="put back by a test")
        mine = [o for o in taken if o.verification_id == verification_id]
        if mine:
            return mine[0]
    raise AssertionError("the request's SMS was never claimed")


# --- created and shown ------------------------------------------------------------


async def test_an_sms_request_is_created_with_its_sms_in_the_history(api: tuple[Client, str]) -> None:
    client, key = api
    status, data, headers = await post(client, key, {"phone": "090-1234-5678", "method": "sms"})
    assert status == 201, data
    conforms(data, "Verification")
    assert headers["Location"] == f"/v1/verifications/{data['id']}"
    assert (data["method"], data["status"], data["line_type"], data["phone"]) == ("sms", "queued", "mobile", MOBILE)
    assert data["code"].isdigit()
    assert len(data["code"]) == 6
    assert (data["sent_at"], data["delivered_at"], data["reason"]) == (None, None, None)
    # A single channel: none of the list's fields.
    assert not {"channels", "channel_index", "next_channel_at"} & set(data)

    found = await history(client, key, data["id"])
    [sms] = found["sms"]
    assert (sms["channel_index"], sms["status"], sms["attempts"]) == (0, "queued", 0)
    assert (sms["carrier"], sms["encoding"], sms["parts"], sms["outcome"]) == (None, None, None, None)
    assert found["calls"] == []
    assert found["webhooks"] == []
    assert [(e["type"], e["to_status"]) for e in found["events"]] == [("status", "queued")]
    # The text, and so the code, is never in the history.
    assert data["code"] not in str(found)


async def test_sms_then_voice_shows_its_channels_and_when_the_call_starts(api: tuple[Client, str]) -> None:
    client, key = api
    status, data, _ = await post(client, key, {"phone": MOBILE, "channels": SMS_THEN_VOICE, "ttl_seconds": 600})
    assert status == 201, data
    conforms(data, "Verification")
    assert (data["method"], data["status"], data["channel_index"]) == ("sms", "queued", 0)
    assert data["channels"] == [{"channel": "sms", "after_seconds": 0}, {"channel": "voice", "after_seconds": 60}]
    # Written in the statement that created the request: exactly after_seconds on.
    wait = ts(data["next_channel_at"]) - ts(data["created_at"])
    assert abs(wait.total_seconds() - 60) < 1, wait
    assert (data["sent_at"], data["delivered_at"]) == (None, None)

    found = await history(client, key, data["id"])
    assert [s["channel_index"] for s in found["sms"]] == [0]
    channel_events = [e for e in found["events"] if e["type"] == "channel"]
    assert [(e["detail"]["channel"], e["detail"]["channel_index"]) for e in channel_events] == [("sms", 0)]

    again = await client.get(f"/v1/verifications/{data['id']}", headers=bearer(key))
    shown = await again.json()
    conforms(shown, "Verification")
    assert "code" not in shown
    assert (shown["channels"], shown["next_channel_at"]) == (data["channels"], data["next_channel_at"])


@pytest.mark.parametrize(
    ("body", "method", "first"),
    [
        # method naming the first channel is allowed.
        ({"method": "sms", "channels": SMS_THEN_VOICE}, "sms", "sms"),
        # An entry may be the channel's name alone; method null is as if absent.
        ({"method": None, "channels": ["dtmf", {"channel": "sms", "after_seconds": 30}]}, "dtmf", "dtmf"),
        # sms may follow itself: a second SMS.
        ({"channels": ["sms", {"channel": "sms", "after_seconds": 120}]}, "sms", "sms"),
    ],
)
async def test_other_forms_of_channels_are_taken(
    api: tuple[Client, str], body: dict[str, Any], method: str, first: str
) -> None:
    client, key = api
    status, data, _ = await post(client, key, {"phone": MOBILE} | body)
    assert status == 201, data
    conforms(data, "Verification")
    assert data["method"] == method
    assert data["channels"][0] == {"channel": first, "after_seconds": 0}


# --- refused ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "named"),
    [
        ({"channels": {"channel": "sms"}}, "invalid_channels", "channels must be a non-empty list"),
        ({"channels": "sms"}, "invalid_channels", "channels must be a non-empty list"),
        ({"channels": []}, "invalid_channels", "channels must be a non-empty list"),
        ({"channels": [{"channel": "fax"}]}, "invalid_channels", "channels[0].channel must be one of sms, voice, dtmf"),
        ({"channels": [{"channel": "sms"}, 7]}, "invalid_channels", "channels[1] must be an object"),
        (
            {"channels": [{"channel": "sms"}, {"channel": "voice", "after_seconds": 60, "wait": 5}]},
            "invalid_channels",
            "channels[1] has unknown field(s): wait",
        ),
        ({"channels": [{"channel": "sms", "after_seconds": 10}]}, "invalid_channels", "channels[0] starts at once"),
        (
            {"channels": [{"channel": "sms"}, {"channel": "voice", "after_seconds": 4}]},
            "invalid_channels",
            "channels[1].after_seconds must be at least 5",
        ),
        (
            {"channels": [{"channel": "sms"}, {"channel": "voice", "after_seconds": 30.0}]},
            "invalid_channels",
            "channels[1].after_seconds must be a whole number",
        ),
        (
            {"ttl_seconds": 60, "channels": [{"channel": "sms"}, {"channel": "voice", "after_seconds": 60}]},
            "invalid_channels",
            "channels[1] would start 60 s after the request, at or after its ttl_seconds (60)",
        ),
        (
            {"channels": [{"channel": "sms"}, {"channel": "voice", "after_seconds": 30}, "dtmf"]},
            "invalid_channels",
            "channels[2].after_seconds must be at least 5",
        ),
        (
            {"channels": ["voice", {"channel": "voice", "after_seconds": 30}]},
            "invalid_channels",
            "channels[1] repeats the channel before it",
        ),
        (
            {"channels": ["sms", *({"channel": c, "after_seconds": 10} for c in ("voice", "sms", "dtmf", "sms"))]},
            "invalid_channels",
            "at most 4 channels",
        ),
        (
            {"method": "voice", "channels": SMS_THEN_VOICE},
            "invalid_method",
            "method: is 'voice' but channels starts with 'sms'",
        ),
        ({"method": "inbound", "channels": ["sms"]}, "invalid_method", "channels starts with 'sms'"),
        ({"method": "fax"}, "invalid_method", "'sms'"),
        ({"channels": None}, "missing_field", "method: required"),
        ({"method": "sms", "channel": "sms"}, "unknown_field", "channel"),
    ],
)
async def test_a_bad_channels_list_is_refused_naming_the_problem(
    api: tuple[Client, str], db: Conn, tenant: tuple[models.Tenant, str], body: dict[str, Any], code: str, named: str
) -> None:
    client, key = api
    message = await refused(client, key, {"phone": MOBILE} | body, 422, code)
    assert named in message
    row = await (
        await db.execute("SELECT count(*) AS n FROM verifications WHERE tenant_id = %s", [tenant[0].id])
    ).fetchone()
    assert row is not None
    assert row["n"] == 0


async def test_sms_without_a_carrier_is_refused_and_calls_still_go(
    store: store_mod.Store, tenant: tuple[models.Tenant, str], db: Conn
) -> None:
    no_carrier = config.from_mapping({"limits": LIMITS})
    async with served(no_carrier, store, tenant, db) as client:
        key = tenant[1]
        message = await refused(client, key, {"phone": MOBILE, "method": "sms"}, 422, "sms_not_configured")
        assert "sms.carriers" in message
        # Any sms in the list, not only the first.
        later_sms = {"phone": MOBILE, "channels": ["voice", {"channel": "sms", "after_seconds": 30}]}
        await refused(client, key, later_sms, 422, "sms_not_configured")
        status, data, _ = await post(client, key, {"phone": MOBILE, "method": "voice"})
        assert status == 201, data


@pytest.mark.parametrize(("phone", "line_type"), [(IP_PHONE, "ip"), (FIXED, "fixed")])
async def test_sms_to_a_number_that_takes_none_is_refused(api: tuple[Client, str], phone: str, line_type: str) -> None:
    client, key = api
    message = await refused(client, key, {"phone": phone, "method": "sms"}, 422, "sms_not_possible")
    assert f"is a {line_type} number" in message
    # The number is masked in the message.
    assert "1234" not in message
    await refused(client, key, {"phone": phone, "channels": SMS_THEN_VOICE}, 422, "sms_not_possible")
    status, data, _ = await post(client, key, {"phone": phone, "method": "voice"})
    assert status == 201, data
    assert data["line_type"] == line_type


async def test_the_daily_sms_budget_refuses_with_retry_after(
    store: store_mod.Store, tenant: tuple[models.Tenant, str], db: Conn
) -> None:
    budget = config.from_mapping({"limits": LIMITS | {"daily_sms_budget": 2}, "sms": {"carriers": CARRIERS}})
    async with served(budget, store, tenant, db) as client:
        key = tenant[1]
        for n in range(2):
            status, data, _ = await post(client, key, {"phone": f"+8190123400{n:02d}", "method": "sms"})
            assert status == 201, data
        status, data, headers = await post(client, key, {"phone": "+819012340099", "method": "sms"})
        assert (status, data["error"]["code"]) == (429, "rate_limited"), data
        assert "today's SMS budget of 2 is used up" in data["error"]["message"]
        # Until 00:00 UTC.
        assert 1 <= int(headers["Retry-After"]) <= 86_400
        # Any sms in the list counts; a request without one does not.
        later_sms = {"phone": "+819012340098", "channels": ["voice", {"channel": "sms", "after_seconds": 30}]}
        status, data, headers = await post(client, key, later_sms)
        assert (status, data["error"]["code"]) == (429, "rate_limited"), data
        assert "Retry-After" in headers
        status, data, _ = await post(client, key, {"phone": "+819012340097", "method": "voice"})
        assert status == 201, data


# --- the code ---------------------------------------------------------------------


async def test_the_code_of_a_sent_sms_is_checked(api: tuple[Client, str], store: store_mod.Store) -> None:
    client, key = api
    status, data, _ = await post(client, key, {"phone": MOBILE, "method": "sms", "code": "2468", "language": "en"})
    assert status == 201, data
    assert "code" not in data  # chosen by the caller: never sent back
    verification_id = data["id"]

    outgoing = await claim_own(store, uuid.UUID(verification_id))
    assert (outgoing.code, outgoing.phone, outgoing.language, outgoing.attempt) == ("2468", MOBILE, "en", 1)
    await store.sms.submitted(outgoing.id, carrier=CARRIER, message_ids=["m-1"], encoding="gsm7", parts=1)

    resp = await client.get(f"/v1/verifications/{verification_id}", headers=bearer(key))
    sent = await resp.json()
    conforms(sent, "Verification")
    assert (sent["status"], sent["reason"]) == ("sent", "sms_sent")
    assert sent["sent_at"] is not None
    assert sent["delivered_at"] is None

    url = f"/v1/verifications/{verification_id}/check"
    resp = await client.post(url, json={"code": "1357"}, headers=bearer(key))
    wrong = await resp.json()
    assert (resp.status, wrong["verified"], wrong["verification"]["code_attempts"]) == (200, False, 1)
    assert wrong["verification"]["status"] == "sent"
    resp = await client.post(url, json={"code": "2468"}, headers=bearer(key))
    right = await resp.json()
    assert resp.status == 200, right
    conforms(right["verification"], "Verification")
    assert right["verified"] is True
    assert (right["verification"]["status"], right["verification"]["reason"]) == ("verified", "code_matched")

    found = await history(client, key, verification_id)
    [sms] = found["sms"]
    assert (sms["status"], sms["carrier"], sms["encoding"], sms["parts"], sms["attempts"]) == (
        "sent",
        CARRIER,
        "gsm7",
        1,
        1,
    )
    assert sms["submitted_at"] is not None
    statuses = [e["to_status"] for e in found["events"] if e["type"] == "status"]
    assert statuses == ["queued", "sent", "verified"]


async def test_a_delivered_sms_shows_when_and_is_the_one_webhook_before_the_end(
    api: tuple[Client, str], store: store_mod.Store
) -> None:
    client, key = api
    # Never called: only a controller sends webhooks, and none runs here.
    body = {"phone": MOBILE, "method": "sms", "callback_url": "http://127.0.0.1:9/hook"}
    status, data, _ = await post(client, key, body)
    assert status == 201, data
    outgoing = await claim_own(store, uuid.UUID(data["id"]))
    await store.sms.submitted(outgoing.id, carrier=CARRIER, message_ids=["d-1", "d-2"], encoding="ucs2", parts=2)
    assert await store.sms.receipt(CARRIER, "d-1", stat="DELIVRD", err="000")
    resp = await client.get(f"/v1/verifications/{data['id']}", headers=bearer(key))
    one_part = await resp.json()
    assert one_part["status"] == "sent"  # until every part's receipt is in
    assert await store.sms.receipt(CARRIER, "d-2", stat="DELIVRD", err="000")

    resp = await client.get(f"/v1/verifications/{data['id']}", headers=bearer(key))
    delivered = await resp.json()
    conforms(delivered, "Verification")
    assert (delivered["status"], delivered["reason"]) == ("delivered", "sms_delivered")
    assert ts(delivered["sent_at"]) <= ts(delivered["delivered_at"])
    found = await history(client, key, data["id"])
    [sms] = found["sms"]
    assert (sms["status"], sms["outcome"], sms["receipt_stat"], sms["parts"]) == (
        "delivered",
        "delivered",
        "DELIVRD",
        2,
    )
    # sent is no webhook; delivered is.
    assert [w["event_type"] for w in found["webhooks"]] == ["verification.delivered"]


async def test_a_refused_sms_moves_the_request_on_to_its_call_at_once(
    api: tuple[Client, str], store: store_mod.Store
) -> None:
    client, key = api
    body = {"phone": MOBILE, "channels": SMS_THEN_VOICE, "callback_url": "http://127.0.0.1:9/hook"}
    status, data, _ = await post(client, key, body)
    assert status == 201, data
    outgoing = await claim_own(store, uuid.UUID(data["id"]))
    await store.sms.refused(outgoing.id, carrier=CARRIER, command_status=0x0B, error="ESME_RINVDSTADR")

    resp = await client.get(f"/v1/verifications/{data['id']}", headers=bearer(key))
    moved = await resp.json()
    conforms(moved, "Verification")
    # Not rejected: queued on the call, long before its 60 s; no next channel after it.
    assert (moved["status"], moved["method"], moved["channel_index"], moved["reason"]) == ("queued", "voice", 1, None)
    assert moved["next_channel_at"] is None
    assert moved["finished_at"] is None

    found = await history(client, key, data["id"])
    [sms] = found["sms"]
    assert (sms["status"], sms["outcome"], sms["command_status"], sms["carrier"]) == ("failed", "refused", 11, CARRIER)
    starts = [e["detail"] for e in found["events"] if e["type"] == "channel"]
    assert [(d["channel"], d["channel_index"]) for d in starts] == [("sms", 0), ("voice", 1)]
    assert (starts[1]["after"], starts[1]["from_channel"]) == ("failed", "sms")
    # Moving on is not an outcome: no webhook.
    assert found["webhooks"] == []


# --- tenants apart ----------------------------------------------------------------


async def test_a_tenant_sees_no_other_tenant_s_sms(api: tuple[Client, str], store: store_mod.Store) -> None:
    client, key = api
    status, data, _ = await post(client, key, {"phone": MOBILE, "method": "sms"})
    assert status == 201, data
    other, other_key = await store.tenants.create(f"tenant-{uuid.uuid4().hex[:12]}")
    try:
        for path in ("", "/events"):
            resp = await client.get(f"/v1/verifications/{data['id']}{path}", headers=bearer(other_key))
            assert resp.status == 404, await resp.text()
            body = await resp.json()
            assert body["error"]["code"] == "not_found"
        resp = await client.post(
            f"/v1/verifications/{data['id']}/check", json={"code": data["code"]}, headers=bearer(other_key)
        )
        assert resp.status == 404
        # The owner still sees its SMS, and the other tenant's check touched nothing.
        found = await history(client, key, data["id"])
        assert len(found["sms"]) == 1
        resp = await client.get(f"/v1/verifications/{data['id']}", headers=bearer(key))
        assert (await resp.json())["code_attempts"] == 0
    finally:
        await store.db.one("DELETE FROM tenants WHERE id = %(id)s", {"id": other.id})
