"""GET /v1/usage served for real against the real Postgres of the local
stack, over rows written straight into the tables.

The rows are settled requests (never queued or in a call), so no controller
running against the same database acts on them; every tenant a test makes
is deleted at the end, and its rows with it."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ivr_auth import config, models
from ivr_auth import store as store_mod
from ivr_auth.api import app as api_app

pytestmark = pytest.mark.integration

Client = TestClient[web.Request, web.Application]
Conn = psycopg.AsyncConnection[dict[str, Any]]

# A day well in the past: calls still in progress then count up to "to", not to now.
T0 = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(hours=10)
WINDOW = {"from": "2026-03-02T09:00:00Z", "to": "2026-03-02T19:00:00Z"}
US = dt.timedelta(microseconds=1)
ZERO_METHODS = {"dtmf": 0, "voice": 0, "inbound": 0, "sms": 0}
NO_SMS = {
    "messages": 0,
    "parts": 0,
    "parts_by_encoding": {"gsm7": 0, "ucs2": 0},
    "messages_by_outcome": {"pending": 0, "delivered": 0, "undeliverable": 0, "expired": 0},
}
NO_CALLS = {"placed": 0, "answered": 0, "talk_seconds": 0.0}
_channels = itertools.count()


# --- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture
async def tenants(db: Conn, store: store_mod.Store) -> AsyncIterator[list[tuple[models.Tenant, str]]]:
    """Two fresh tenants and their API keys; deleted at the end."""
    made = [await store.tenants.create(f"tenant-{uuid.uuid4().hex[:12]}") for _ in range(2)]
    yield made
    await db.execute("DELETE FROM tenants WHERE id = ANY(%s)", [[t.id for t, _ in made]])


@pytest.fixture
async def client(store: store_mod.Store) -> AsyncIterator[Client]:
    async with TestClient(TestServer(api_app.make_app(config.Config(), store, {}))) as served:
        yield served


async def add_request(
    db: Conn,
    tenant: models.Tenant,
    created_at: dt.datetime,
    *,
    method: str = "dtmf",
    line_type: str = "mobile",
    status: str = "verified",
) -> uuid.UUID:
    verification_id = uuid.uuid4()
    await db.execute(
        """
        INSERT INTO verifications (
            id, tenant_id, method, phone, line_type, code_hash, code_length, language, status,
            max_code_attempts, max_call_attempts, created_at, updated_at, expires_at, finished_at)
        VALUES (%(id)s, %(tenant_id)s, %(method)s, '+819012345678', %(line_type)s, '\\x00', 6, 'ja', %(status)s,
            3, 3, %(at)s, %(at)s, %(at)s + interval '5 minutes', %(at)s + interval '5 minutes')
        """,
        {
            "id": verification_id,
            "tenant_id": tenant.id,
            "method": method,
            "line_type": line_type,
            "status": status,
            "at": created_at,
        },
    )
    return verification_id


async def add_call(
    db: Conn,
    verification_id: uuid.UUID,
    started_at: dt.datetime,
    *,
    answered_after: float | None = None,
    talk: float | None = None,
) -> None:
    """A call started at ``started_at``; answered ``answered_after`` seconds
    later, and hung up ``talk`` seconds after that (None: still going)."""
    answered_at = started_at + dt.timedelta(seconds=answered_after) if answered_after is not None else None
    if answered_at is None:
        ended_at: dt.datetime | None = started_at + dt.timedelta(seconds=30)
    else:
        ended_at = answered_at + dt.timedelta(seconds=talk) if talk is not None else None
    await db.execute(
        """
        INSERT INTO call_attempts (
            verification_id, attempt, controller, node, trunk, channel_id, started_at, answered_at, ended_at)
        VALUES (%s, 1, 'test', 'test', 'test', %s, %s, %s, %s)
        """,
        [verification_id, f"test-usage-{uuid.uuid4().hex}-{next(_channels)}", started_at, answered_at, ended_at],
    )


async def get_usage(client: Client, key: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    resp = await client.get("/v1/usage", params=params or {}, headers={"Authorization": f"Bearer {key}"})
    body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body
    assert resp.headers["Cache-Control"] == "no-store"
    return body


def calls(placed: int, answered: int, talk_seconds: float) -> dict[str, Any]:
    return {"placed": placed, "answered": answered, "talk_seconds": talk_seconds}


def minutes(n: float) -> dt.timedelta:
    return dt.timedelta(minutes=n)


def iso(value: dt.datetime) -> str:
    text = models.iso(value)
    assert text is not None
    return text


# --- the report ---------------------------------------------------------------------------


async def test_counts_requests_verifications_and_calls_by_method_and_line_type(
    db: Conn, client: Client, tenants: list[tuple[models.Tenant, str]]
) -> None:
    (me, key), _ = tenants
    # In the window, from its very first microsecond.
    dtmf_mobile = await add_request(db, me, T0, method="dtmf", line_type="mobile", status="verified")
    await add_call(db, dtmf_mobile, T0 + minutes(1), answered_after=8, talk=30.04)
    await add_call(db, dtmf_mobile, T0 + minutes(3))  # not answered
    voice_fixed = await add_request(db, me, T0 + minutes(60), method="voice", line_type="fixed", status="verified")
    await add_call(db, voice_fixed, T0 + minutes(61), answered_after=5, talk=12.5)
    inbound_mobile = await add_request(db, me, T0 + minutes(90), method="inbound", line_type="mobile")
    await add_call(db, inbound_mobile, T0 + minutes(91), answered_after=0, talk=5.02)
    dtmf_unknown = await add_request(db, me, T0 + minutes(120), method="dtmf", line_type="unknown", status="failed")
    await add_call(db, dtmf_unknown, T0 + minutes(121), answered_after=4, talk=20)
    # Answered 30 s before the window ends and never hung up (a lost
    # controller): its talk counts up to "to".
    await add_call(db, dtmf_unknown, T1 - dt.timedelta(seconds=40), answered_after=10)
    voice_mobile = await add_request(db, me, T1 - US, method="voice", line_type="mobile", status="no_answer")
    await add_call(db, voice_mobile, T1 - US)
    # Created a moment before the window, so not counted as a request; but
    # its second call started inside it, and calls count by their start.
    early = await add_request(db, me, T0 - US, method="dtmf", line_type="mobile", status="verified")
    await add_call(db, early, T0 - US, answered_after=5, talk=100)
    await add_call(db, early, T0 + minutes(2), answered_after=3, talk=7)
    # Created, and called, at the window's end: the end is excluded.
    late = await add_request(db, me, T1, method="dtmf", line_type="fixed", status="verified")
    await add_call(db, late, T1, answered_after=1, talk=60)
    await add_call(db, voice_fixed, T1, answered_after=1, talk=60)

    body = await get_usage(client, key, WINDOW)

    assert body == {
        "from": "2026-03-02T09:00:00Z",
        "to": "2026-03-02T19:00:00Z",
        "requests": {"total": 5, "by_method": {"dtmf": 2, "voice": 2, "inbound": 1, "sms": 0}},
        "verified": {
            "total": 3,
            "by_method": {"dtmf": 1, "voice": 1, "inbound": 1, "sms": 0},
            "by_line_type": {"mobile": 2, "fixed": 1},
        },
        "calls": {
            # 30.04 + 12.5 + 5.02 + 20 + 30 + 7
            "placed": 8,
            "answered": 6,
            "talk_seconds": 104.6,
            "by_method": {
                "dtmf": calls(5, 4, 87.0),  # 30.04 + 20 + 30 + 7 = 87.04
                "voice": calls(2, 1, 12.5),
                "inbound": calls(1, 1, 5.0),  # 5.02
                "sms": calls(0, 0, 0.0),
            },
            "by_line_type": {
                "mobile": calls(5, 3, 42.1),  # 30.04 + 5.02 + 7 = 42.06
                "fixed": calls(1, 1, 12.5),
                "unknown": calls(2, 2, 50.0),
            },
        },
        "sms": NO_SMS,
    }


async def test_a_tenant_with_nothing_gets_zeros_for_every_method(
    client: Client, tenants: list[tuple[models.Tenant, str]]
) -> None:
    (_, key), _ = tenants

    body = await get_usage(client, key, WINDOW)

    assert body == {
        **WINDOW,
        "requests": {"total": 0, "by_method": ZERO_METHODS},
        "verified": {"total": 0, "by_method": ZERO_METHODS, "by_line_type": {}},
        "calls": {
            **NO_CALLS,
            "by_method": {"dtmf": NO_CALLS, "voice": NO_CALLS, "inbound": NO_CALLS, "sms": NO_CALLS},
            "by_line_type": {},
        },
        "sms": NO_SMS,
    }


async def test_line_types_with_nothing_verified_are_left_out(
    db: Conn, client: Client, tenants: list[tuple[models.Tenant, str]]
) -> None:
    (me, key), _ = tenants
    for status in ("failed", "no_answer", "busy", "expired", "canceled", "hung_up", "rejected"):
        await add_request(db, me, T0 + minutes(5), method="voice", line_type="fixed", status=status)
    await add_request(db, me, T0 + minutes(5), method="dtmf", line_type="ip", status="verified")

    body = await get_usage(client, key, WINDOW)

    assert body["requests"] == {"total": 8, "by_method": {"dtmf": 1, "voice": 7, "inbound": 0, "sms": 0}}
    assert body["verified"] == {
        "total": 1,
        "by_method": {"dtmf": 1, "voice": 0, "inbound": 0, "sms": 0},
        "by_line_type": {"ip": 1},
    }
    assert body["calls"]["by_line_type"] == {}


async def test_each_tenant_sees_only_its_own_usage(
    db: Conn, client: Client, tenants: list[tuple[models.Tenant, str]]
) -> None:
    (first, first_key), (second, second_key) = tenants
    mine = await add_request(db, first, T0 + minutes(10), method="dtmf", line_type="mobile")
    await add_call(db, mine, T0 + minutes(11), answered_after=2, talk=10)
    theirs = await add_request(db, second, T0 + minutes(10), method="voice", line_type="fixed")
    await add_call(db, theirs, T0 + minutes(11), answered_after=2, talk=25)
    await add_call(db, theirs, T0 + minutes(12))

    first_body = await get_usage(client, first_key, WINDOW)
    second_body = await get_usage(client, second_key, WINDOW)

    assert first_body["requests"] == {"total": 1, "by_method": {"dtmf": 1, "voice": 0, "inbound": 0, "sms": 0}}
    assert first_body["verified"]["by_line_type"] == {"mobile": 1}
    assert first_body["calls"]["by_line_type"] == {"mobile": calls(1, 1, 10.0)}
    assert (first_body["calls"]["placed"], first_body["calls"]["talk_seconds"]) == (1, 10.0)
    assert second_body["requests"] == {"total": 1, "by_method": {"dtmf": 0, "voice": 1, "inbound": 0, "sms": 0}}
    assert second_body["verified"]["by_line_type"] == {"fixed": 1}
    assert second_body["calls"]["by_line_type"] == {"fixed": calls(2, 1, 25.0)}
    assert (second_body["calls"]["placed"], second_body["calls"]["talk_seconds"]) == (2, 25.0)


async def test_the_period_may_be_given_in_any_zone(
    db: Conn, client: Client, tenants: list[tuple[models.Tenant, str]]
) -> None:
    (me, key), _ = tenants
    await add_request(db, me, T0)
    await add_request(db, me, T1 - US)

    body = await get_usage(client, key, {"from": "2026-03-02T18:00:00+09:00", "to": "2026-03-02T14:00:00-05:00"})

    assert (body["from"], body["to"]) == ("2026-03-02T09:00:00Z", "2026-03-02T19:00:00Z")
    assert body["requests"]["total"] == 2


async def test_a_call_in_progress_counts_up_to_now_when_the_period_runs_on(
    db: Conn, client: Client, tenants: list[tuple[models.Tenant, str]]
) -> None:
    (me, key), _ = tenants
    now = dt.datetime.now(dt.UTC)
    request = await add_request(db, me, now - minutes(2), status="hung_up")
    await add_call(db, request, now - minutes(2), answered_after=60)  # talking for a minute so far

    body = await get_usage(client, key, {"from": iso(now - minutes(10)), "to": iso(now + minutes(60))})

    assert body["calls"]["answered"] == 1
    # Up to now, not to the end of the period an hour away.
    assert 60 <= body["calls"]["talk_seconds"] < 120


async def test_by_default_the_period_is_the_current_utc_day_so_far(
    db: Conn, client: Client, tenants: list[tuple[models.Tenant, str]]
) -> None:
    (me, key), _ = tenants
    before = dt.datetime.now(dt.UTC)
    day_start = before.replace(hour=0, minute=0, second=0, microsecond=0)
    await add_request(db, me, day_start, method="voice")
    await add_request(db, me, day_start - US, method="inbound")  # yesterday
    await add_request(db, me, before + minutes(60), method="dtmf")  # after now

    body = await get_usage(client, key)

    after = dt.datetime.now(dt.UTC)
    assert body["from"] == models.iso(day_start)
    assert before <= dt.datetime.fromisoformat(body["to"]) <= after
    assert body["requests"] == {"total": 1, "by_method": {"dtmf": 0, "voice": 1, "inbound": 0, "sms": 0}}


async def test_from_alone_runs_to_now_and_to_alone_from_the_start_of_the_day(
    db: Conn, client: Client, tenants: list[tuple[models.Tenant, str]]
) -> None:
    (me, key), _ = tenants
    now = dt.datetime.now(dt.UTC)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    await add_request(db, me, day_start - minutes(30))
    await add_request(db, me, day_start)

    since = await get_usage(client, key, {"from": iso(day_start - minutes(60))})
    until = await get_usage(client, key, {"to": iso(now + minutes(1))})

    assert since["requests"]["total"] == 2
    assert until["from"] == models.iso(day_start)
    assert until["requests"]["total"] == 1


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "code", "starts"),
    [
        ("from=yesterday", "invalid_field", "from: expected an ISO 8601 timestamp"),
        ("to=2026-03-02T25:00:00Z", "invalid_field", "to: expected an ISO 8601 timestamp"),
        ("from=", "invalid_field", "from: expected an ISO 8601 timestamp"),
        ("from=2026-03-02T09:00:00", "invalid_field", "from: the timestamp has no zone"),
        ("to=2026-03-02", "invalid_field", "to: the timestamp has no zone"),
        ("from=2026-03-02T09:00:00Z&to=2026-03-02T09:00:00Z", "invalid_field", "to: must be after from"),
        ("from=2026-03-02T09:00:00Z&to=2026-03-02T08:00:00Z", "invalid_field", "to: must be after from"),
        ("from=2026-03-02T09:00:00Z&to=2026-03-02T18:00:00%2B09:00", "invalid_field", "to: must be after from"),
        ("to=2020-01-01T00:00:00Z", "invalid_field", "to: must be after from"),
        ("from=2999-01-01T00:00:00Z", "invalid_field", "from: must be before to"),
        ("from=2025-01-01T00:00:00Z&to=2026-03-02T09:00:00Z", "invalid_field", "to: the period"),
        ("from=2020-01-01T00:00:00Z", "invalid_field", "from: the period"),
        ("from=2026-03-02T09:00:00Z&from=2026-03-02T10:00:00Z", "invalid_field", "from: given more than once"),
        ("to=2026-03-02T09:00:00Z&to=2026-03-02T09:00:00Z", "invalid_field", "to: given more than once"),
        ("since=2026-03-02T09:00:00Z", "unknown_field", "since: unknown query parameter"),
        ("from=2026-03-02T09:00:00Z&tenant_id=x", "unknown_field", "tenant_id: unknown query parameter"),
    ],
)
async def test_a_bad_query_is_refused_naming_the_parameter(
    client: Client, tenants: list[tuple[models.Tenant, str]], query: str, code: str, starts: str
) -> None:
    (_, key), _ = tenants

    resp = await client.get(f"/v1/usage?{query}", headers={"Authorization": f"Bearer {key}"})

    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == code
    assert error["message"].startswith(starts), error["message"]


async def test_an_unescaped_plus_gets_a_hint(client: Client, tenants: list[tuple[models.Tenant, str]]) -> None:
    (_, key), _ = tenants

    # "+" in a query string is a space: the server sees "2026-03-02T09:00:00 09:00".
    resp = await client.get("/v1/usage?from=2026-03-02T09:00:00+09:00", headers={"Authorization": f"Bearer {key}"})

    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_field"
    assert error["message"].startswith("from: expected an ISO 8601 timestamp")
    assert error["message"].endswith("(send a '+' as %2B)")


async def test_an_offset_sent_as_percent_2b_is_read(client: Client, tenants: list[tuple[models.Tenant, str]]) -> None:
    (_, key), _ = tenants

    resp = await client.get(
        "/v1/usage?from=2026-03-02T18:00:00%2B09:00&to=2026-03-03T04:00:00%2B09:00",
        headers={"Authorization": f"Bearer {key}"},
    )

    assert resp.status == 200
    assert (await resp.json())["from"] == "2026-03-02T09:00:00Z"


async def test_a_period_of_366_days_is_served(client: Client, tenants: list[tuple[models.Tenant, str]]) -> None:
    (_, key), _ = tenants

    body = await get_usage(client, key, {"from": "2025-03-02T09:00:00Z", "to": "2026-03-03T09:00:00Z"})

    assert body["requests"]["total"] == 0


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
async def test_no_usage_without_a_valid_key(client: Client, headers: dict[str, str]) -> None:
    resp = await client.get("/v1/usage?bogus=1", headers=headers)

    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_counts_sms_a_carrier_took_by_parts_encoding_and_outcome(
    client: Client, db: Conn, tenants: list[tuple[models.Tenant, str]]
) -> None:
    (me, key), _ = tenants
    texted = await add_request(db, me, T0 + minutes(1), method="voice", line_type="mobile", status="verified")
    # The request asked for sms first (channels), now on its call: it counts as sms.
    await db.execute(
        """UPDATE verifications SET channels = '[{"channel": "sms"}, {"channel": "voice", "after_seconds": 60}]'
           WHERE id = %s""",
        [texted],
    )
    for created, encoding, parts, outcome, submitted in (
        (T0 + minutes(1), "ucs2", 2, "delivered", True),
        (T0 + minutes(2), "gsm7", 1, None, True),
        (T0 + minutes(3), "gsm7", 1, "expired", True),
        (T0 + minutes(4), None, None, "canceled", False),  # never sent: not counted
        (T1, "gsm7", 1, "delivered", True),  # after the window
    ):
        await db.execute(
            """
            INSERT INTO sms_messages (verification_id, tenant_id, channel_index, status, created_at, encoding, parts,
                outcome, submitted_at)
            VALUES (%s, %s, 0, 'sent', %s, %s, %s, %s, CASE WHEN %s THEN %s::timestamptz END)
            """,
            [texted, me.id, created, encoding, parts, outcome, submitted, created],
        )

    body = await get_usage(client, key, WINDOW)

    assert body["requests"]["by_method"]["sms"] == 1
    assert body["sms"] == {
        "messages": 3,
        "parts": 4,
        "parts_by_encoding": {"gsm7": 2, "ucs2": 2},
        "messages_by_outcome": {"pending": 1, "delivered": 1, "undeliverable": 0, "expired": 1},
    }
