"""The calls in Postgres: one ``call_attempts`` row for each call placed or
taken, from its start to its end (outcome and hangup cause). Usage reports,
the dashboard's trunk figures and the per-number limits read them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from ivr_auth import models
from ivr_auth.store import database, sql

QUERIES = sql.load("calls.sql")


@dataclasses.dataclass(frozen=True)
class CallAttempt:
    attempt: int
    node: str
    trunk: str
    channel_id: str
    started_at: dt.datetime
    answered_at: dt.datetime | None
    ended_at: dt.datetime | None
    outcome: str | None
    cause: int | None
    cause_txt: str | None

    @classmethod
    def from_row(cls, row: database.Row) -> CallAttempt:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})


class Calls:
    def __init__(self, db: database.Database) -> None:
        self._db = db

    async def start(
        self, verification: models.Verification, *, controller: str, node: str, trunk: str, channel_id: str
    ) -> models.Tenant | None:
        """The request's current attempt (``call_attempts``) is on the phone
        through ``channel_id``, which a request being called keeps; returns
        its tenant (None: deleted meanwhile)."""
        row = await self._db.one(
            QUERIES["start_call_attempt"],
            {
                "id": verification.id,
                "tenant_id": verification.tenant_id,
                "attempt": verification.call_attempts,
                "controller": controller,
                "node": node,
                "trunk": trunk,
                "channel_id": channel_id,
            },
        )
        return models.Tenant.from_row(row) if row else None

    async def answer(self, channel_id: str) -> None:
        await self._db.one(QUERIES["answer_call_attempt"], {"channel_id": channel_id})

    async def end(self, channel_id: str, outcome: str, cause: int | None, cause_txt: str | None) -> None:
        """The first end recorded of a call stands."""
        await self._db.one(
            QUERIES["end_call_attempt"],
            {"channel_id": channel_id, "outcome": outcome, "cause": cause, "cause_txt": cause_txt},
        )

    async def for_request(self, verification_id: uuid.UUID) -> list[CallAttempt]:
        """A request's calls, in order."""
        return [CallAttempt.from_row(r) for r in await self._db.all(QUERIES["calls_for"], {"id": verification_id})]
