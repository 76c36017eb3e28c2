"""What the /metrics scrape reads from Postgres: figures shared by every API
and controller process on the database, read in one bounded transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from importlib import resources

from ivr_auth.store import base, sql

QUERIES = sql.parse(resources.files("ivr_auth.store").joinpath("gauges.sql").read_text(encoding="utf-8"))


@dataclasses.dataclass(frozen=True)
class Snapshot:
    requests: Mapping[tuple[str, str], int]  # (method, status)
    queue_depth: int
    queue_oldest_age_seconds: float
    calls_in_progress: Mapping[tuple[str, str], int]  # (node, trunk)
    dial_outcomes: Mapping[tuple[str, str], int]  # (outcome, Q.850 cause or "none")
    webhooks_pending: int
    webhooks_delivered: int
    webhooks_given_up: int
    webhook_attempts: int


async def read(store: base.Base, timeout: float) -> Snapshot:
    """Raises ``errors.StoreError`` (or ``StoreUnavailable``) when Postgres
    cannot answer; each statement is cut off after ``timeout`` seconds."""
    async with store.connection() as conn, conn.transaction():
        await conn.execute(QUERIES["statement_timeout"], {"timeout_ms": str(max(1, int(timeout * 1000)))})

        async def rows(name: str) -> list[base.Row]:
            return await (await conn.execute(QUERIES[name])).fetchall()

        requests = await rows("requests")
        (queue,) = await rows("queue")
        calls = await rows("calls_in_progress")
        outcomes = await rows("dial_outcomes")
        (hooks,) = await rows("webhooks")
    return Snapshot(
        requests={(r["method"], r["status"]): r["n"] for r in requests},
        queue_depth=queue["depth"],
        queue_oldest_age_seconds=queue["oldest_age_seconds"],
        calls_in_progress={(r["node"], r["trunk"]): r["n"] for r in calls},
        dial_outcomes={(r["outcome"], r["cause"]): r["n"] for r in outcomes},
        webhooks_pending=hooks["pending"],
        webhooks_delivered=hooks["delivered"],
        webhooks_given_up=hooks["given_up"],
        webhook_attempts=hooks["attempts"],
    )
