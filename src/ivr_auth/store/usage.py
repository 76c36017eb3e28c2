"""A tenant's usage over a period, counted in Postgres: what operators bill
on. Requests count by when they were created, calls by when they started,
SMS by when they were written (those a carrier took); the period includes
its start and excludes its end."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping

from ivr_auth.store import database, sql

QUERIES = sql.load("usage.sql")


@dataclasses.dataclass(frozen=True)
class Calls:
    placed: int = 0
    answered: int = 0
    # From answer to hangup, summed, to 0.1 s.
    talk_seconds: float = 0.0

    @classmethod
    def from_row(cls, row: database.Row) -> Calls:
        return cls(placed=row["placed"], answered=row["answered"], talk_seconds=row["talk_seconds"])


@dataclasses.dataclass(frozen=True)
class Texts:
    """SMS a carrier took: messages and their parts (what carriers bill),
    parts by encoding, messages by outcome (``pending``: no final receipt)."""

    messages: int = 0
    parts: int = 0
    parts_by_encoding: Mapping[str, int] = dataclasses.field(default_factory=dict)
    messages_by_outcome: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: list[database.Row]) -> Texts:
        by_encoding: dict[str, int] = {}
        by_outcome: dict[str, int] = {}
        for row in rows:
            by_encoding[row["encoding"]] = by_encoding.get(row["encoding"], 0) + row["parts"]
            by_outcome[row["outcome"]] = by_outcome.get(row["outcome"], 0) + row["messages"]
        return cls(sum(by_outcome.values()), sum(by_encoding.values()), by_encoding, by_outcome)


@dataclasses.dataclass(frozen=True)
class Usage:
    """Only the methods and line types that occur are keys."""

    requests: int
    requests_by_method: Mapping[str, int]
    verified: int
    verified_by_method: Mapping[str, int]
    verified_by_line_type: Mapping[str, int]
    calls: Calls
    calls_by_method: Mapping[str, Calls]
    calls_by_line_type: Mapping[str, Calls]
    sms: Texts = Texts()


class Reports:
    def __init__(self, db: database.Database) -> None:
        self._db = db

    async def report(self, tenant_id: uuid.UUID, start: dt.datetime, end: dt.datetime) -> Usage:
        """``tenant_id``'s usage from ``start`` (included) to ``end`` (excluded)."""
        params = {"tenant_id": tenant_id, "from": start, "to": end}
        async with self._db.connection() as conn:
            requests = await conn.all(QUERIES["usage_requests"], params)
            calls = await conn.all(QUERIES["usage_calls"], params)
            texts = await conn.all(QUERIES["usage_sms"], params)
        return dataclasses.replace(_usage(requests, calls), sms=Texts.from_rows(texts))


def _usage(requests: list[database.Row], calls: list[database.Row]) -> Usage:
    # Each query returns one row per grouping: the total, each method, each line type.
    total: database.Row = {"requests": 0, "verified": 0}
    requests_by_method: dict[str, int] = {}
    verified_by_method: dict[str, int] = {}
    verified_by_line_type: dict[str, int] = {}
    for row in requests:
        if row["per"] == "total":
            total = row
        elif row["per"] == "method":
            requests_by_method[row["method"]] = row["requests"]
            verified_by_method[row["method"]] = row["verified"]
        elif row["verified"]:
            verified_by_line_type[row["line_type"]] = row["verified"]
    calls_total = Calls()
    calls_by_method: dict[str, Calls] = {}
    calls_by_line_type: dict[str, Calls] = {}
    for row in calls:
        if row["per"] == "total":
            calls_total = Calls.from_row(row)
        elif row["per"] == "method":
            calls_by_method[row["method"]] = Calls.from_row(row)
        else:
            calls_by_line_type[row["line_type"]] = Calls.from_row(row)
    return Usage(
        requests=total["requests"],
        requests_by_method=requests_by_method,
        verified=total["verified"],
        verified_by_method=verified_by_method,
        verified_by_line_type=verified_by_line_type,
        calls=calls_total,
        calls_by_method=calls_by_method,
        calls_by_line_type=calls_by_line_type,
    )
