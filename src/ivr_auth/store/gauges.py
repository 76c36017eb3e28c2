"""What the /metrics scrape reads from Postgres: figures shared by every API
and controller process on the database, read in one bounded transaction.
Gauges of what is in progress, and running totals kept by triggers
(``metric_counts``): nothing here grows with the tables' history."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ivr_auth.store import database, sql

QUERIES = sql.load("gauges.sql")

Labels = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Snapshot:
    requests_in_progress: Mapping[Labels, int]  # (method, status)
    queue_depth: int
    queue_oldest_age_seconds: float
    calls_in_progress: Mapping[Labels, int]  # (node, trunk)
    webhooks_pending: int
    # Running totals by name (requests_created, request_transitions,
    # dial_outcomes, webhooks, sms_outcomes), each by its labels.
    totals: Mapping[str, Mapping[Labels, int]]
    sms_pending: int = 0

    def total(self, name: str) -> Mapping[Labels, int]:
        return self.totals.get(name, {})


class Gauges:
    def __init__(self, db: database.Database) -> None:
        self._db = db

    async def read(self, timeout: float) -> Snapshot:
        """Raises ``errors.StoreError`` (or ``StoreUnavailable``) when Postgres
        cannot answer; each statement is cut off after ``timeout`` seconds."""
        async with self._db.bounded(timeout) as conn:
            return await _snapshot(conn)


async def _snapshot(conn: database.Connection) -> Snapshot:
    in_progress = await conn.all(QUERIES["requests_in_progress"])
    (queue,) = await conn.all(QUERIES["queue"])
    calls = await conn.all(QUERIES["calls_in_progress"])
    (pending,) = await conn.all(QUERIES["webhooks_pending"])
    (sms_pending,) = await conn.all(QUERIES["sms_pending"])
    totals: dict[str, dict[Labels, int]] = {}
    for r in await conn.all(QUERIES["totals"]):
        totals.setdefault(r["name"], {})[tuple(r["labels"])] = r["n"]
    return Snapshot(
        requests_in_progress={(r["method"], r["status"]): r["n"] for r in in_progress},
        queue_depth=queue["depth"],
        queue_oldest_age_seconds=queue["oldest_age_seconds"],
        calls_in_progress={(r["node"], r["trunk"]): r["n"] for r in calls},
        webhooks_pending=pending["n"],
        totals=totals,
        sms_pending=sms_pending["n"],
    )
