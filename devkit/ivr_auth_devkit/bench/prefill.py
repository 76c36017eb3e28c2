"""A day's volume already in the tables, for the bench's cpu_growth_ratio:
requests of one tenant created today, all ended, with their status events
and call attempts, written set-based straight into Postgres (no webhooks,
no API). Only the requests' own tables are written: the counters the
store keeps by trigger (limits, metric totals) leave these rows out."""

from __future__ import annotations

import time
from typing import Any

import psycopg

# 85% verified, 7% failed (wrong code), 5% no_answer, 3% hung up in the
# call; phones from 40,000 numbers, none of them the bench's own. "Today"
# in UTC and in Tokyo (the dashboard's default day) at once: the rows fall
# between the later of the two midnights and two minutes ago. One statement
# writes each request with its children from the same generated rows (a
# join back to the new requests would be planned on the empty table's
# statistics).
PREFILL = """
WITH src AS MATERIALIZED (
    SELECT gen_random_uuid() AS id, n,
           day + (now() - interval '2 min' - day) * (n::float8 / %(count)s) AS at,
           (ARRAY['verified', 'failed', 'no_answer', 'hung_up'])[s] AS status,
           (ARRAY['code_matched', 'code_attempts_exhausted', 'no_answer', 'callee_hung_up'])[s] AS reason
    FROM generate_series(1, %(count)s) AS n,
         LATERAL (SELECT CASE WHEN n %% 100 < 85 THEN 1 WHEN n %% 100 < 92 THEN 2
                              WHEN n %% 100 < 97 THEN 3 ELSE 4 END AS s) AS kind,
         LATERAL (SELECT greatest(
             date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
             date_trunc('day', now() AT TIME ZONE 'Asia/Tokyo') AT TIME ZONE 'Asia/Tokyo') AS day) AS today
), requests AS (
    INSERT INTO verifications (
        id, tenant_id, method, phone, line_type, code_hash, code_length, language, status, reason,
        code_attempts, max_code_attempts, call_attempts, max_call_attempts, created_at, updated_at,
        expires_at, next_attempt_at, node, channel_id, answered_at, finished_at, answered_by)
    SELECT id, %(tenant)s, 'dtmf', '+8180' || lpad((n %% 40000)::text, 8, '0'), 'mobile',
           sha256(n::text::bytea), 6, 'ja', status, reason,
           CASE WHEN status = 'failed' THEN 3 ELSE 0 END, 3, 1, 3, at, at + interval '9 s',
           at + interval '5 min', at, 'prefill', 'ivrauth-' || replace(id::text, '-', '') || '-1',
           CASE WHEN status <> 'no_answer' THEN at + interval '4 s' END, at + interval '9 s',
           CASE WHEN status <> 'no_answer' THEN 'human' END
    FROM src
    RETURNING 1
), events AS (
    -- queued, calling, then in_call and the result (or no_answer straight from calling)
    INSERT INTO verification_events (verification_id, at, type, from_status, to_status, detail)
    SELECT src.id, src.at + step.after, 'status', step.from_status, step.to_status, step.detail
    FROM src
    CROSS JOIN LATERAL (VALUES
        (interval '0', NULL, 'queued', '{"method": "dtmf", "ttl_seconds": 300}'::jsonb),
        (interval '1 s', 'queued', 'calling', '{"node": "prefill", "attempt": 1}'::jsonb),
        (interval '4 s', 'calling', CASE WHEN src.status = 'no_answer' THEN 'no_answer' ELSE 'in_call' END,
         '{"setup_seconds": 3.0}'::jsonb),
        (interval '9 s', 'in_call', src.status, '{"source": "call"}'::jsonb)
    ) AS step(after, from_status, to_status, detail)
    WHERE src.status <> 'no_answer' OR step.from_status IS DISTINCT FROM 'in_call'
    RETURNING 1
), attempts AS (
    INSERT INTO call_attempts (
        verification_id, attempt, controller, node, trunk, channel_id, started_at, answered_at, ended_at,
        outcome, cause, cause_txt)
    SELECT id, 1, 'prefill', 'prefill', 'trunk', 'ivrauth-' || replace(id::text, '-', '') || '-1',
           at + interval '1 s', CASE WHEN status <> 'no_answer' THEN at + interval '4 s' END, at + interval '9 s',
           status, CASE WHEN status = 'no_answer' THEN 19 ELSE 16 END,
           CASE WHEN status = 'no_answer' THEN 'No user responding' ELSE 'Normal Clearing' END
    FROM src
    RETURNING 1
)
SELECT (SELECT count(*) FROM requests), (SELECT count(*) FROM events), (SELECT count(*) FROM attempts)
"""
TABLES = ("verifications", "verification_events", "call_attempts")
ANALYZE = "ANALYZE verifications, verification_events, call_attempts"


async def prefill_day(conn: psycopg.AsyncConnection[Any], tenant_id: str, count: int) -> dict[str, float]:
    """Writes ``count`` ended requests of today for ``tenant_id`` in one
    statement, then ANALYZEs the tables; the rows written by table, and the
    seconds it took."""
    began = time.monotonic()
    async with conn.transaction():
        # Without the tables' triggers and foreign-key checks: a row trigger
        # that updates the tenant's one counters row for each of 200,000 rows
        # in one transaction walks that row's ever longer version chain (the
        # prefill took minutes), and each row's NOTIFY would reach the
        # service. The store's own counters do not see these rows: the bench's
        # limits are far above them.
        await conn.execute("SET LOCAL session_replication_role = replica")
        cur = await conn.execute(PREFILL, {"tenant": tenant_id, "count": count})
        row = await cur.fetchone()
    assert row is not None
    await conn.execute(ANALYZE)
    return {**dict(zip(TABLES, map(int, row), strict=True)), "seconds": round(time.monotonic() - began, 1)}
