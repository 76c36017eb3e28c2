"""The webhook outbox in Postgres.

A request that reaches a terminal status (or ``delivered``) and has a
``callback_url`` gets one delivery row, written with the state change: no
state change without its webhook, and no webhook for a change that rolled
back. A terminal status's row is written by the statement that settles the
request, without its body, which the first sender renders from the
request (it no longer changes) and keeps; ``delivered``'s by ``enqueue``,
rendered at once, in the change's transaction. The row keeps the exact body, and
its id is the event id a receiver de-duplicates on (delivery is at least
once). Senders claim due rows with ``SKIP LOCKED`` and push them out of
reach for the length of one attempt, so several processes can send.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

from ivr_auth import crypto, models, states
from ivr_auth.store import database, sql

QUERIES = sql.load("outbox.sql")
# A webhook row written is announced here: the senders wake.
WEBHOOK_CHANNEL = "ivr_auth_webhooks"
EVENT_STATUSES = states.TERMINAL | {states.Status.DELIVERED}


@dataclasses.dataclass(frozen=True, repr=False)
class Delivery:
    id: uuid.UUID
    verification_id: uuid.UUID
    tenant_id: uuid.UUID
    url: str
    event_type: str
    body: str
    created_at: dt.datetime
    attempts: int
    webhook_secret_sealed: bytes | None

    @classmethod
    def from_row(cls, row: database.Row) -> Delivery:
        values = {f.name: row[f.name] for f in dataclasses.fields(cls)}
        if values["webhook_secret_sealed"] is not None:
            values["webhook_secret_sealed"] = bytes(values["webhook_secret_sealed"])
        return cls(**values)

    def __repr__(self) -> str:
        return f"Delivery(id={self.id}, verification_id={self.verification_id}, type={self.event_type})"


@dataclasses.dataclass(frozen=True)
class DeliveryLog:
    """A delivery as the events log shows it; ``attempt_log``: each attempt,
    oldest first ({attempt, at, status_code, error, duration_ms})."""

    event_id: uuid.UUID
    event_type: str
    url: str
    created_at: dt.datetime
    attempts: int
    delivered_at: dt.datetime | None
    gave_up_at: dt.datetime | None
    next_attempt_at: dt.datetime
    last_status_code: int | None
    last_error: str | None
    attempt_log: list[dict[str, Any]]

    @classmethod
    def from_row(cls, row: database.Row) -> DeliveryLog:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})


def event_body(verification: models.Verification, event_id: uuid.UUID, event_type: str, at: dt.datetime) -> str:
    """The request's public state, with the event it reports."""
    body = verification.public()
    body["event"] = {"id": str(event_id), "type": event_type, "created_at": models.iso(at)}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


async def enqueue(conn: database.Connection, verification: models.Verification) -> uuid.UUID | None:
    """Inside the transaction that just changed ``verification``: the webhook
    for its new status, if it is one that is reported and the request has a URL."""
    if verification.callback_url is None or verification.status not in EVENT_STATUSES:
        return None
    event_id = uuid.uuid4()
    event_type = f"verification.{verification.status.value}"
    now = dt.datetime.now(dt.UTC)
    await conn.execute(
        QUERIES["enqueue_webhook"],
        {
            "id": event_id,
            "verification_id": verification.id,
            "tenant_id": verification.tenant_id,
            "url": verification.callback_url,
            "event_type": event_type,
            "body": event_body(verification, event_id, event_type, now),
        },
    )
    return event_id


async def release(conn: database.Connection, delivery_id: uuid.UUID) -> None:
    """A webhook held for the process that made it, which cannot send it
    now: due at once, for any sender (who are woken)."""
    await conn.one(QUERIES["release_webhook"], {"id": delivery_id})


class Outbox:
    """The senders' side: claim, record each attempt, and read the log."""

    def __init__(self, db: database.Database, keys: crypto.Keys) -> None:
        self._db = db
        self._keys = keys

    async def claim(self, limit: int, hold_seconds: float) -> list[Delivery]:
        """Due deliveries, each with its body: one written without it (a
        terminal status's) is rendered from its request, which no longer
        changes, as it would have been then; ``record`` keeps it."""
        rows = await self._db.all(QUERIES["claim_webhooks"], {"limit": limit, "hold_seconds": hold_seconds})
        unrendered = [r["verification_id"] for r in rows if r["body"] is None]
        if unrendered:
            requests = {
                r["id"]: models.Verification.from_row(r)
                for r in await self._db.all(QUERIES["requests_to_render"], {"ids": unrendered})
            }
            for row in rows:
                if row["body"] is None:
                    row["body"] = event_body(
                        requests[row["verification_id"]], row["id"], row["event_type"], row["created_at"]
                    )
        return [Delivery.from_row(r) for r in rows]

    def secret(self, delivery: Delivery) -> str | None:
        if delivery.webhook_secret_sealed is None:
            return None
        return self._keys.unseal(delivery.tenant_id, delivery.webhook_secret_sealed)

    async def record(
        self,
        delivery: Delivery,
        *,
        status_code: int | None,
        error: str | None,
        duration_ms: int,
        delivered: bool,
        next_attempt_at: dt.datetime | None,
    ) -> None:
        """One attempt's result; ``next_attempt_at`` None (and not delivered): give up."""
        await self._db.one(
            QUERIES["record_webhook_attempt"],
            {
                "id": delivery.id,
                "status_code": status_code,
                "error": error,
                "duration_ms": duration_ms,
                "delivered": delivered,
                "give_up": not delivered and next_attempt_at is None,
                "next_attempt_at": next_attempt_at,
                "body": delivery.body,
            },
        )

    async def for_request(self, verification_id: uuid.UUID) -> list[DeliveryLog]:
        """The request's deliveries, each with its attempts (for the events log)."""
        return [DeliveryLog.from_row(r) for r in await self._db.all(QUERIES["webhooks_for"], {"id": verification_id})]
