"""What the drill reads of its requests in the database: how each stands,
its calls (with the controller that made each, and when a reaper settled
the request of a dead controller's call) and which are still open."""

from __future__ import annotations

from collections import defaultdict

import psycopg

from ivr_auth_devkit.drill import measure
from ivr_auth_devkit.drill.verdict import Row


async def records(
    database_url: str, reference: str
) -> tuple[dict[str, Row], dict[str, list[tuple[measure.Attempt, str]]]]:
    """A drill's requests, and the calls of each with the controller that made it."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
        cur = await db.execute(
            "SELECT id::text, phone, status, reason, max_call_attempts, extract(epoch FROM created_at)::float8, "
            "extract(epoch FROM finished_at)::float8 FROM verifications WHERE reference = %s",
            (reference,),
        )
        rows = {r[0]: Row(*r[1:]) for r in await cur.fetchall()}
        cur = await db.execute(
            "SELECT a.verification_id::text, a.attempt, a.channel_id, extract(epoch FROM a.started_at)::float8, "
            "extract(epoch FROM a.ended_at)::float8, extract(epoch FROM a.answered_at)::float8, a.outcome, "
            "a.controller FROM call_attempts a JOIN verifications v ON v.id = a.verification_id "
            "WHERE v.reference = %s ORDER BY a.started_at",
            (reference,),
        )
        calls = await cur.fetchall()
        # When a reaper settled a request whose controller was gone.
        cur = await db.execute(
            "SELECT e.verification_id::text, extract(epoch FROM e.at)::float8 FROM verification_events e "
            "JOIN verifications v ON v.id = e.verification_id "
            "WHERE v.reference = %s AND e.detail ? 'lost_controller' ORDER BY e.at",
            (reference,),
        )
        reaped: dict[str, list[float]] = defaultdict(list)
        for vid, at in await cur.fetchall():
            reaped[vid].append(at)
    attempts: dict[str, list[tuple[measure.Attempt, str]]] = defaultdict(list)
    for vid, number, channel, started, ended, answered, outcome, controller in calls:
        settled_at = None
        if ended is None:
            settled_at = next((at for at in reaped.get(vid, []) if at >= started), None)
        attempts[vid].append(
            (measure.Attempt(number, channel, started, ended, answered, outcome, settled_at), controller)
        )
    return rows, attempts


async def open_requests(database_url: str, ids: list[str]) -> list[tuple[str, str, float, float]] | None:
    """(id, status, expires_at, since) of each request in ``ids`` still
    open, ``since`` when its last call began or it last changed; None
    while the database does not answer."""
    try:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
            cur = await db.execute(
                "SELECT v.id::text, v.status, extract(epoch FROM v.expires_at)::float8, extract(epoch FROM "
                "greatest(v.updated_at, (SELECT max(a.started_at) FROM call_attempts a "
                "WHERE a.verification_id = v.id)))::float8 "
                "FROM verifications v WHERE v.id = ANY(%s::uuid[]) AND v.status = ANY(%s)",
                (ids, sorted(measure.OPEN)),
            )
            return [(str(i), str(s), float(e), float(t)) for i, s, e, t in await cur.fetchall()]
    except psycopg.OperationalError:
        return None


async def calls_up(database_url: str, reference: str) -> dict[str, tuple[int, int]]:
    """(inbound, outbound) calls up now of a drill's requests, by the controller holding each."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
        cur = await db.execute(
            "SELECT a.controller, count(*) FILTER (WHERE v.method = 'inbound'), "
            "count(*) FILTER (WHERE v.method <> 'inbound') FROM call_attempts a "
            "JOIN verifications v ON v.id = a.verification_id "
            "WHERE v.reference = %s AND a.ended_at IS NULL GROUP BY a.controller",
            (reference,),
        )
        return {str(c): (int(i), int(o)) for c, i, o in await cur.fetchall()}
