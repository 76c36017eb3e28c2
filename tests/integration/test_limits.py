"""Tenant controls and abuse limits through the real API and Postgres:
refusals trip at the configured counts and recover, disallowed
destinations are refused before anything is queued, every refusal is in
the operator's log; numbers with letters or extensions are refused; only the
line types a tenant may call are called; only requests that placed a call
count against a number; keys are revoked; the retention purge removes what
it should and nothing else; prefix alarms fire once."""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ivr_auth import cli, cli_tenant, config, errors, models
from ivr_auth import store as store_mod
from ivr_auth.api import app as api_app
from ivr_auth.store import controls

pytestmark = pytest.mark.integration

Conn = psycopg.AsyncConnection[dict[str, Any]]
Client = TestClient[web.Request, web.Application]
CFG = config.from_mapping(
    {
        "limits": {"requests_per_minute": 6, "sends_per_phone": 3, "sends_per_phone_window_seconds": 600},
        "inbound": {"numbers": ["050-1234-5678"]},
    }
)


@pytest.fixture
async def me(db: Conn, tenant: tuple[models.Tenant, str]) -> AsyncIterator[tuple[models.Tenant, str]]:
    yield tenant
    await db.execute("DELETE FROM tenants WHERE id = %s", [tenant[0].id])


@pytest.fixture
async def client(store: store_mod.Store) -> AsyncIterator[Client]:
    async with TestClient(TestServer(api_app.make_app(CFG, store, {}))) as served:
        yield served


async def create(client: Client, key: str, phone: str, method: str = "dtmf") -> tuple[int, dict[str, Any], Any]:
    resp = await client.post(
        "/v1/verifications", json={"phone": phone, "method": method}, headers={"Authorization": f"Bearer {key}"}
    )
    body = await resp.json()
    if resp.status == 201:
        # Never left queued for a controller some other test may run.
        await resp.release()
    return resp.status, body, resp.headers


async def cancel_all(db: Conn, tenant_id: uuid.UUID) -> None:
    await db.execute(
        "UPDATE verifications SET status = 'canceled' WHERE tenant_id = %s AND status = 'queued'", [tenant_id]
    )


async def called_all(db: Conn, tenant_id: uuid.UUID) -> None:
    """Settles the tenant's queued requests as a call that was not answered."""
    await db.execute(
        "UPDATE verifications SET status = 'no_answer', call_attempts = 1 WHERE tenant_id = %s AND status = 'queued'",
        [tenant_id],
    )


async def refusals(store: store_mod.Store, tenant_id: uuid.UUID) -> list[controls.TenantEvent]:
    events = await store.controls.events(tenant_id, with_global=False)
    return [e for e in events if e.type == "refused"]


async def test_sends_per_phone_trip_at_the_count_and_recover(
    client: Client, me: tuple[models.Tenant, str], store: store_mod.Store, db: Conn
) -> None:
    tenant, key = me
    for _ in range(3):
        status, body, _ = await create(client, key, "090-1111-2222")
        assert status == 201, body
    await called_all(db, tenant.id)

    status, body, headers = await create(client, key, "090-1111-2222")

    assert status == 429, body
    assert body["error"]["code"] == "rate_limited"
    assert 590 <= int(headers["Retry-After"]) <= 600
    # Another number is not affected.
    other, _, _ = await create(client, key, "090-3333-4444")
    assert other == 201
    await cancel_all(db, tenant.id)
    # Ten minutes later (the window moved on) it is allowed again.
    await db.execute(
        "UPDATE verifications SET created_at = created_at - interval '11 minutes' WHERE tenant_id = %s", [tenant.id]
    )
    again, _, _ = await create(client, key, "090-1111-2222")
    assert again == 201
    await cancel_all(db, tenant.id)
    (refused,) = await refusals(store, tenant.id)
    assert refused.detail["reason"] == "sends_per_phone"
    assert refused.detail["phone"] == "+81********22"


async def test_requests_per_minute_per_tenant(
    client: Client, me: tuple[models.Tenant, str], tenant: tuple[models.Tenant, str], db: Conn
) -> None:
    _, key = me
    # Inbound requests call nobody: only the per-minute limit applies.
    for n in range(6):
        status, body, _ = await create(client, key, f"090-5555-000{n}", method="dtmf")
        assert status == 201, body
    await cancel_all(db, me[0].id)

    status, body, headers = await create(client, key, "090-5555-0009")

    assert status == 429, body
    assert "minute" in body["error"]["message"]
    assert 1 <= int(headers["Retry-After"]) <= 60


async def test_concurrent_creates_cannot_pass_a_limit_together(
    client: Client, me: tuple[models.Tenant, str], db: Conn
) -> None:
    _, key = me
    results = await asyncio.gather(*(create(client, key, "090-7777-8888") for _ in range(10)))
    await cancel_all(db, me[0].id)

    assert sorted(status for status, _, _ in results) == [201] * 3 + [429] * 7


async def test_disallowed_country_is_refused_before_anything_is_queued(
    client: Client, me: tuple[models.Tenant, str], store: store_mod.Store, db: Conn
) -> None:
    tenant, key = me
    await store.controls.set_limits(tenant.name, controls.LimitChanges(allowed_countries=("JP",)))

    status, body, _ = await create(client, key, "+44 20 7946 0000")

    assert status == 403, body
    assert body["error"]["code"] == "destination_not_allowed"
    cur = await db.execute("SELECT count(*) AS n FROM verifications WHERE tenant_id = %s", [tenant.id])
    row = await cur.fetchone()
    assert row is not None
    assert row["n"] == 0
    (refused,) = await refusals(store, tenant.id)
    assert refused.detail["reason"] == "country_not_allowed"


async def test_denied_prefix_is_refused_for_every_tenant(
    client: Client, me: tuple[models.Tenant, str], store: store_mod.Store
) -> None:
    # Even for a tenant allowed every line type, 0570 (Navi Dial) is never called.
    await store.controls.set_limits(me[0].name, controls.LimitChanges(allowed_line_types=LINE_TYPES))

    status, body, _ = await create(client, me[1], "0570-01-2345")

    assert status == 403, body
    assert body["error"]["message"] == "phone: numbers starting +81570 are never called"


async def stored(db: Conn, tenant_id: uuid.UUID) -> int:
    cur = await db.execute("SELECT count(*) AS n FROM verifications WHERE tenant_id = %s", [tenant_id])
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


# --- what a phone number may be -------------------------------------------------------------

LINE_TYPES = ("mobile", "fixed", "fixed_or_mobile", "ip", "toll_free", "premium_rate", "shared_cost", "uan")
DEFAULT_LINE_TYPES = "mobile, fixed, fixed_or_mobile and ip"


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("090-ABCD-EFGH", "phone: letters are not accepted ('A'); write the number in digits"),
        ("O90-1234-5678", "phone: letters are not accepted ('O' is a letter, not the digit 0)"),
        ("090-1234-5678 ext. 9", "phone: extensions cannot be called; give the number without its extension"),
    ],
)
async def test_letters_and_extensions_are_refused_and_nothing_is_stored(
    client: Client, me: tuple[models.Tenant, str], db: Conn, typed: str, says: str
) -> None:
    tenant, key = me

    status, body, _ = await create(client, key, typed)

    assert status == 422, body
    assert body["error"] == {"code": "invalid_phone", "message": says}
    assert await stored(db, tenant.id) == 0


async def test_full_width_input_is_read(client: Client, me: tuple[models.Tenant, str], db: Conn) -> None:
    status, body, _ = await create(
        client, me[1], "\uff10\uff19\uff10\u30fc\uff11\uff12\uff13\uff14\u30fc\uff15\uff16\uff17\uff18"
    )
    await cancel_all(db, me[0].id)

    assert status == 201, body
    assert (body["phone"], body["line_type"]) == ("+819012345678", "mobile")


@pytest.mark.parametrize(
    ("typed", "e164", "kind"),
    [
        ("0120-123-456", "+81120123456", "toll_free"),
        ("0800-123-4567", "+818001234567", "toll_free"),
        ("0570-123-456", "+81570123456", "uan"),  # in limits.denied_prefixes as well
        ("0990-123-456", "+81990123456", "premium_rate"),  # likewise
    ],
)
@pytest.mark.parametrize("method", ["dtmf", "voice", "inbound"])
async def test_line_types_not_called_are_refused_by_name_and_logged(
    client: Client,
    me: tuple[models.Tenant, str],
    store: store_mod.Store,
    db: Conn,
    typed: str,
    e164: str,
    kind: str,
    method: str,
) -> None:
    tenant, key = me

    status, body, _ = await create(client, key, typed, method)

    assert status == 403, body
    assert body["error"] == {
        "code": "destination_not_allowed",
        "message": f"phone: {e164} is a {kind} number; this service calls {DEFAULT_LINE_TYPES} numbers",
    }
    assert await stored(db, tenant.id) == 0
    (refused,) = await refusals(store, tenant.id)
    assert refused.detail["reason"] == "line_type_not_allowed"
    assert refused.detail["method"] == method
    assert refused.detail["phone"] == e164[:3] + "*" * (len(e164) - 5) + e164[-2:]


async def limits_command(store: store_mod.Store, *argv: str) -> str:
    """``ivr-auth tenant limits ...`` on the test database; what it prints."""
    args = cli._parser().parse_args(["tenant", "limits", *argv])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert await cli_tenant._limits(CFG, args, store) == 0
    return out.getvalue()


async def test_a_tenant_allowed_toll_free_numbers_gets_them_called(
    client: Client, me: tuple[models.Tenant, str], store: store_mod.Store, db: Conn
) -> None:
    tenant, key = me
    shown = await limits_command(
        store, tenant.name, *(arg for kind in ("mobile", "fixed", "toll_free") for arg in ("--allow-line-type", kind))
    )
    assert "allowed line types              mobile, fixed, toll_free\n" in shown

    status, body, _ = await create(client, key, "0120-123-456")
    await cancel_all(db, tenant.id)
    assert status == 201, body
    assert (body["phone"], body["line_type"]) == ("+81120123456", "toll_free")
    # What the tenant was not allowed stays refused: IP numbers now, and premium rate.
    for typed, kind in (("050-1234-5678", "ip"), ("0990-123-456", "premium_rate")):
        status, body, _ = await create(client, key, typed)
        assert status == 403, body
        assert f"is a {kind} number; this service calls mobile, fixed and toll_free numbers" in body["error"]["message"]

    shown = await limits_command(store, tenant.name, "--allow-line-type", "default")
    assert "allowed line types              mobile, fixed, fixed_or_mobile, ip  (default)\n" in shown
    assert (await store.tenants.by_name(tenant.name)).allowed_line_types is None
    status, body, _ = await create(client, key, "0120-123-456")
    assert status == 403, body


async def test_the_database_keeps_no_empty_list_of_line_types(me: tuple[models.Tenant, str], db: Conn) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        await db.execute("UPDATE tenants SET allowed_line_types = '{}' WHERE id = %s", [me[0].id])


# --- what counts against a number -----------------------------------------------------------


async def created_id(client: Client, db: Conn, key: str, phone: str) -> uuid.UUID:
    status, body, _ = await create(client, key, phone)
    assert status == 201, body
    # A minute old: out of the way of requests_per_minute (its counter too),
    # inside the number's window.
    await db.execute(
        "UPDATE verifications SET created_at = created_at - interval '61 seconds' WHERE id = %s", [body["id"]]
    )
    await db.execute(
        "UPDATE tenant_counters SET minute_counts = array_fill(0, ARRAY[60])"
        " FROM verifications v WHERE v.id = %s AND tenant_counters.tenant_id = v.tenant_id",
        [body["id"]],
    )
    return uuid.UUID(body["id"])


async def place_call(store: store_mod.Store, db: Conn, tenant_id: uuid.UUID, vid: uuid.UUID) -> str:
    """What a controller does to call a request: claim it, start its call."""
    await db.execute(
        "UPDATE verifications SET status = 'calling', call_attempts = call_attempts + 1 WHERE id = %s", [vid]
    )
    channel = f"limits-{vid}"
    verification = await store.verifications.get(tenant_id, vid)
    await store.calls.start(verification, controller="c", node="n", trunk="t", channel_id=channel)
    return channel


async def test_only_requests_that_placed_a_call_count_against_the_number(
    client: Client, me: tuple[models.Tenant, str], store: store_mod.Store, db: Conn
) -> None:
    tenant, key = me
    number = "090-6666-0001"
    # Canceled while queued, more often than sends_per_phone (3): nobody was called.
    for _ in range(5):
        await store.verifications.cancel(tenant.id, await created_id(client, db, key, number))
    # Two canceled after their call was placed.
    for _ in range(2):
        vid = await created_id(client, db, key, number)
        await place_call(store, db, tenant.id, vid)
        await store.verifications.cancel(tenant.id, vid)
    # One whose call failed on its trunk: its attempt is given back
    # (call_attempts 0 again) and it is canceled while queued, but the call
    # left for the carrier.
    vid = await created_id(client, db, key, number)
    channel = await place_call(store, db, tenant.id, vid)
    assert await store.verifications.requeue_failover(
        vid, channel, trunk="t", cause=34, cause_txt="Circuit/channel congestion"
    )
    assert (await store.verifications.get(tenant.id, vid)).call_attempts == 0
    await store.verifications.cancel(tenant.id, vid)

    status, body, _ = await create(client, key, number)

    assert status == 429, body
    assert body["error"]["message"].startswith("this number was called or sent a code 3 times in the last 600 s")


async def test_open_requests_count_against_the_number_before_their_call(
    client: Client, me: tuple[models.Tenant, str], db: Conn
) -> None:
    tenant, key = me
    for _ in range(3):
        await created_id(client, db, key, "090-6666-0002")  # queued: each may still call

    status, body, _ = await create(client, key, "090-6666-0002")
    await cancel_all(db, tenant.id)

    assert status == 429, body


# --- the counters the limits read (tenant_counters) --------------------------------------------


async def counters(db: Conn, tenant_id: uuid.UUID) -> dict[str, Any]:
    """The tenant's counters beside a recount from the tables they stand for."""
    cur = await db.execute(
        """SELECT c.queued_calls, c.day_calls, c.day = (now() AT TIME ZONE 'UTC')::date AS today,
            (SELECT count(*) FROM verifications v WHERE v.tenant_id = c.tenant_id AND v.status = 'queued'
               AND v.method IN ('dtmf', 'voice')) AS queued_recount,
            (SELECT count(*) FROM call_attempts a JOIN verifications v ON v.id = a.verification_id
              WHERE v.tenant_id = c.tenant_id AND v.method IN ('dtmf', 'voice')
                AND a.started_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS day_recount
        FROM tenant_counters c WHERE c.tenant_id = %s""",
        [tenant_id],
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def test_the_daily_call_budget_counts_calls_placed_and_to_come_and_gives_back(
    client: Client, me: tuple[models.Tenant, str], store: store_mod.Store, db: Conn
) -> None:
    tenant, key = me
    await store.controls.set_limits(tenant.name, controls.LimitChanges(daily_call_budget=3))
    first = await created_id(client, db, key, "090-8888-0001")
    second = await created_id(client, db, key, "090-8888-0002")
    channel = await place_call(store, db, tenant.id, first)  # one placed, one to come
    third = await created_id(client, db, key, "090-8888-0003")  # 3: the budget is used up

    status, body, headers = await create(client, key, "090-8888-0004")
    used_up = await counters(db, tenant.id)
    # A queued request canceled gives its call back.
    await store.verifications.cancel(tenant.id, third)
    after_cancel, _, _ = await create(client, key, "090-8888-0005")
    # A call never placed is not counted, but its request is queued again: its call is still to come.
    await store.verifications.requeue_unplaced(first, channel, "test", 0.0)
    after_unplaced, _, _ = await create(client, key, "090-8888-0006")
    await store.verifications.cancel(tenant.id, first)
    again, _, _ = await create(client, key, "090-8888-0007")
    final = await counters(db, tenant.id)
    await cancel_all(db, tenant.id)

    assert status == 429, body
    assert body["error"]["message"] == "today's call budget of 3 is used up (resets at 00:00 UTC)"
    assert 1 <= int(headers["Retry-After"]) <= 86400
    assert (used_up["queued_calls"], used_up["day_calls"]) == (2, 1)
    assert (after_cancel, after_unplaced, again) == (201, 429, 201)
    assert second is not None
    assert (final["queued_calls"], final["day_calls"]) == (final["queued_recount"], final["day_recount"]) == (3, 0)


async def test_concurrent_creates_cannot_pass_the_budget_or_the_minute_together(
    client: Client, me: tuple[models.Tenant, str], store: store_mod.Store, db: Conn
) -> None:
    tenant, key = me
    await store.controls.set_limits(tenant.name, controls.LimitChanges(daily_call_budget=4))
    budget = await asyncio.gather(*(create(client, key, f"090-8888-11{n:02}") for n in range(10)))
    await cancel_all(db, tenant.id)
    await store.controls.set_limits(tenant.name, controls.LimitChanges(daily_call_budget=0))
    # Two of the minute's 6 are left.
    minute = await asyncio.gather(*(create(client, key, f"090-8888-12{n:02}") for n in range(10)))
    await cancel_all(db, tenant.id)

    assert sorted(status for status, _, _ in budget) == [201] * 4 + [429] * 6
    assert sorted(status for status, _, _ in minute) == [201] * 2 + [429] * 8
    assert {body["error"]["message"] for status, body, _ in minute if status == 429} == {
        "more than 6 requests in a minute; slow down"
    }


async def test_the_minute_moves_on(client: Client, me: tuple[models.Tenant, str], db: Conn) -> None:
    tenant, key = me
    for n in range(6):
        assert (await create(client, key, f"090-8888-13{n:02}"))[0] == 201
    await cancel_all(db, tenant.id)
    full, _, headers = await create(client, key, "090-8888-1399")
    # The ring's seconds 61 s older: those creates left the minute.
    await db.execute(
        "UPDATE tenant_counters SET minute_seconds = (SELECT array_agg(s - 61) FROM unnest(minute_seconds) s)"
        " WHERE tenant_id = %s",
        [tenant.id],
    )
    moved_on, _, _ = await create(client, key, "090-8888-1399")
    await cancel_all(db, tenant.id)

    assert full == 429
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert moved_on == 201


async def test_the_failure_cooldown_only_when_turned_on(
    client: Client, me: tuple[models.Tenant, str], store: store_mod.Store, db: Conn
) -> None:
    tenant, key = me
    failed = await created_id(client, db, key, "090-8888-1400")
    await db.execute(
        "UPDATE verifications SET status = 'failed', finished_at = now() - interval '10 seconds' WHERE id = %s",
        [failed],
    )
    off, _, _ = await create(client, key, "090-8888-1400")
    await cancel_all(db, tenant.id)
    await store.controls.set_limits(tenant.name, controls.LimitChanges(failure_cooldown_seconds=60))
    cooling, body, headers = await create(client, key, "090-8888-1400")
    other, _, _ = await create(client, key, "090-8888-1401")
    await db.execute("UPDATE verifications SET finished_at = now() - interval '61 seconds' WHERE id = %s", [failed])
    cooled, _, _ = await create(client, key, "090-8888-1400")
    await cancel_all(db, tenant.id)

    assert (off, cooling, other, cooled) == (201, 429, 201, 201)
    assert body["error"]["message"] == "a request to this number failed just now; try again later"
    assert 49 <= int(headers["Retry-After"]) <= 51


async def test_limits_back_to_default(store: store_mod.Store, me: tuple[models.Tenant, str]) -> None:
    ctl = store.controls
    changed = await ctl.set_limits(me[0].name, controls.LimitChanges(sends_per_phone=1, daily_call_budget=10))
    assert (changed.sends_per_phone, changed.daily_call_budget) == (1, 10)

    back = await ctl.set_limits(me[0].name, controls.LimitChanges(sends_per_phone=controls.DEFAULT))

    assert back.sends_per_phone is None
    assert back.daily_call_budget == 10


async def test_revoked_key_is_refused(
    client: Client, store: store_mod.Store, me: tuple[models.Tenant, str], db: Conn
) -> None:
    tenant, old_key = me
    new_key = await store.tenants.add_api_key(tenant.name)
    ctl = store.controls

    await ctl.revoke_api_key(tenant.name, old_key.split("_")[1])

    old, _, _ = await create(client, old_key, "090-2222-3333")
    new, _, _ = await create(client, new_key, "090-2222-3333")
    await cancel_all(db, tenant.id)
    assert (old, new) == (401, 201)
    keys = await ctl.api_keys(tenant.name)
    assert [k.revoked_at is not None for k in keys] == [True, False]
    with pytest.raises(errors.NotFound, match="no active API key"):
        await ctl.revoke_api_key(tenant.name, old_key.split("_")[1])


async def test_retention_purge_removes_what_it_should_and_nothing_else(
    client: Client, store: store_mod.Store, me: tuple[models.Tenant, str], db: Conn
) -> None:
    tenant, key = me
    ctl = store.controls
    await ctl.set_limits(tenant.name, controls.LimitChanges(retention_days=30))
    made = []
    for phone in ("090-1000-0001", "090-1000-0002", "090-1000-0003"):
        status, body, _ = await create(client, key, phone)
        assert status == 201
        made.append(uuid.UUID(body["id"]))
    old_done, recent_done, still_open = made
    await store.verifications.cancel(tenant.id, old_done)
    await store.verifications.cancel(tenant.id, recent_done)
    await db.execute("UPDATE verifications SET finished_at = now() - interval '31 days' WHERE id = %s", [old_done])
    await db.execute("UPDATE verifications SET finished_at = now() - interval '29 days' WHERE id = %s", [recent_done])
    await db.execute("UPDATE verifications SET created_at = now() - interval '40 days' WHERE id = %s", [still_open])

    assert await ctl.purge(default_days=90) >= 1

    rows = {
        r["id"]: r
        for r in await (await db.execute("SELECT * FROM verifications WHERE id = ANY(%s)", [made])).fetchall()
    }
    purged = rows[old_done]
    assert purged["purged_at"] is not None
    assert purged["phone"] == "+81********01"
    assert purged["reference"] is None
    assert purged["status"] == "canceled"  # the outcome stays, for usage
    assert await store.verifications.events(old_done) == []
    for kept in (recent_done, still_open):
        assert rows[kept]["purged_at"] is None
        assert rows[kept]["phone"].startswith("+8190")
        assert await store.verifications.events(kept) != []
    await cancel_all(db, tenant.id)


async def test_prefix_alarm_fires_once_per_window(
    store: store_mod.Store, me: tuple[models.Tenant, str], db: Conn
) -> None:
    tenant, _ = me
    # A prefix no other test calls: +8170 (070 mobiles), 20 calls, none verified.
    prefix_phone = "+8170" + uuid.uuid4().int.__str__()[:8]
    for _ in range(20):
        vid = uuid.uuid4()
        await db.execute(
            "INSERT INTO verifications (id, tenant_id, method, phone, code_hash, code_length, language, status,"
            " max_code_attempts, max_call_attempts, expires_at)"
            " VALUES (%s, %s, 'dtmf', %s, '\\x00', 6, 'ja', 'no_answer', 3, 1, now())",
            [vid, tenant.id, prefix_phone],
        )
        await db.execute(
            "INSERT INTO call_attempts (verification_id, attempt, controller, node, trunk, channel_id)"
            " VALUES (%s, 1, 'c', 'n', 't', %s)",
            [vid, f"alarm-{vid}"],
        )
    ctl = store.controls
    cfg = {"digits": 12, "window_seconds": 3600, "min_calls": 20, "max_ratio": 0.2}

    first = await ctl.prefix_alarms(**cfg)  # type: ignore[arg-type]
    second = await ctl.prefix_alarms(**cfg)  # type: ignore[arg-type]

    mine = [a for a in first if a.prefix == prefix_phone[:13]]
    assert len(mine) == 1
    assert (mine[0].placed, mine[0].verified) == (20, 0)
    assert [a for a in second if a.prefix == prefix_phone[:13]] == []
    await db.execute(
        "DELETE FROM tenant_events WHERE type = 'prefix_alarm' AND detail ->> 'prefix' = %s", [prefix_phone[:13]]
    )
