"""What the /metrics scrape reads from Postgres: figures shared by every API
and controller process on the database, read in one bounded transaction.
Gauges of what is in progress, and running totals kept by triggers
(``metric_counts``): nothing here grows with the tables' history."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from importlib import resources

from ivr_auth.store import base, sql

QUERIES = sql.parse(resources.files("ivr_auth.store").joinpath("gauges.sql").read_text(encoding="utf-8"))

Labels = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Snapshot:
    requests_in_progress: Mapping[Labels, int]  # (method, status)
    queue_depth: int
    queue_oldest_age_seconds: float
    calls_in_progress: Mapping[Labels, int]  # (node, trunk)
    webhooks_pending: int
    # Running totals by name (requests_created, request_transitions,
    # dial_outcomes, webhooks), each by its labels.
    totals: Mapping[str, Mapping[Labels, int]]

    def total(self, name: str) -> Mapping[Labels, int]:
        return self.totals.get(name, {})


async def read(store: base.Base, timeout: float) -> Snapshot:
    """Raises ``errors.StoreError`` (or ``StoreUnavailable``) when Postgres
    cannot answer; each statement is cut off after ``timeout`` seconds."""
    async with store.bounded_reads(QUERIES, timeout) as rows:
        in_progress = await rows("requests_in_progress")
        (queue,) = await rows("queue")
        calls = await rows("calls_in_progress")
        (pending,) = await rows("webhooks_pending")
        totals: dict[str, dict[Labels, int]] = {}
        for r in await rows("totals"):
            totals.setdefault(r["name"], {})[tuple(r["labels"])] = r["n"]
    return Snapshot(
        requests_in_progress={(r["method"], r["status"]): r["n"] for r in in_progress},
        queue_depth=queue["depth"],
        queue_oldest_age_seconds=queue["oldest_age_seconds"],
        calls_in_progress={(r["node"], r["trunk"]): r["n"] for r in calls},
        webhooks_pending=pending["n"],
        totals=totals,
    )
