"""The SMS outbox in Postgres: a message per sms channel started, written in
the statement that starts it (store/verifications.sql), claimed under a
lease by the `ivr-auth sms` senders, and settled by the carrier's answer
and delivery receipts. The request moves with it: sent, delivered, or on
to its next channel when the message failed (the transition statement)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

from ivr_auth import crypto, models, reasons, states
from ivr_auth.store import database, sql, verifications

QUERIES = sql.load("sms.sql")
# A message became due (the senders wake; they poll anyway).
SMS_CHANNEL = "ivr_auth_sms"

# Receipt states (SMPP 3.4, 5.2.28 and the receipt text's stat:) after which
# the message was not delivered, with what the request then says; a state
# not listed (ACCEPTD, ENROUTE) is a word on the way.
UNDELIVERED: dict[str, tuple[str, reasons.Reason]] = {
    "EXPIRED": ("expired", reasons.Reason.SMS_EXPIRED),
    "UNDELIV": ("undeliverable", reasons.Reason.SMS_UNDELIVERABLE),
    "REJECTD": ("undeliverable", reasons.Reason.SMS_UNDELIVERABLE),
    "DELETED": ("undeliverable", reasons.Reason.SMS_UNDELIVERABLE),
    "UNKNOWN": ("undeliverable", reasons.Reason.SMS_UNDELIVERABLE),
}
DELIVERED = "DELIVRD"


@dataclasses.dataclass(frozen=True, repr=False)
class Outgoing:
    """One SMS due, claimed under a lease. ``code`` is the code in clear:
    never log it (the repr leaves it out)."""

    id: uuid.UUID
    verification_id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_name: str
    phone: str
    language: str
    code: str
    attempt: int
    expires_at: dt.datetime

    def __repr__(self) -> str:
        return f"Outgoing(id={self.id}, verification_id={self.verification_id}, attempt={self.attempt})"


@dataclasses.dataclass(frozen=True)
class Message:
    """A row of sms_messages, for the request's log and the tests."""

    id: uuid.UUID
    verification_id: uuid.UUID
    channel_index: int
    status: str
    attempts: int
    carrier: str | None
    encoding: str | None
    parts: int | None
    created_at: dt.datetime
    submitted_at: dt.datetime | None
    finished_at: dt.datetime | None
    outcome: str | None
    command_status: int | None
    receipt_stat: str | None
    receipt_err: str | None
    last_error: str | None

    @classmethod
    def from_row(cls, row: database.Row) -> Message:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    def public(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "channel_index": self.channel_index,
            "status": self.status,
            "attempts": self.attempts,
            "carrier": self.carrier,
            "encoding": self.encoding,
            "parts": self.parts,
            "created_at": models.iso(self.created_at),
            "submitted_at": models.iso(self.submitted_at),
            "finished_at": models.iso(self.finished_at),
            "outcome": self.outcome,
            "command_status": self.command_status,
            "receipt_stat": self.receipt_stat,
            "receipt_err": self.receipt_err,
        }


def outcome_of(stats: list[str | None]) -> str | None:
    """The message's end from its parts' last receipts: DELIVRD when every
    part says so, the first undelivered state when a part has one, else
    None (still on the way)."""
    for stat in stats:
        if stat is not None and stat in UNDELIVERED:
            return stat
    if stats and all(stat == DELIVERED for stat in stats):
        return DELIVERED
    return None


class Sms:
    def __init__(self, db: database.Database, keys: crypto.Keys, requests: verifications.Verifications) -> None:
        self._db = db
        self._keys = keys
        self._requests = requests

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Outgoing]:
        if limit <= 0:
            return []
        rows = await self._db.all(QUERIES["claim"], {"owner": owner, "limit": limit, "lease_seconds": lease_seconds})
        out = []
        for row in rows:
            sealed = row["code_sealed"]
            if sealed is None:  # the request ended in the meantime; claim checked it was queued
                continue
            out.append(
                Outgoing(
                    id=row["id"],
                    verification_id=row["verification_id"],
                    tenant_id=row["tenant_id"],
                    tenant_name=row["tenant_name"],
                    phone=row["phone"],
                    language=row["language"],
                    code=self._keys.open_code(row["verification_id"], bytes(sealed)),
                    attempt=row["attempt"],
                    expires_at=row["expires_at"],
                )
            )
        return out

    async def submitted(
        self, sms_id: uuid.UUID, *, carrier: str, message_ids: list[str], encoding: str, parts: int
    ) -> None:
        """Every part accepted by ``carrier``: the message sent, the request
        (if still waiting for it) queued -> sent."""
        async with self._db.transaction() as conn:
            row = await conn.one(
                QUERIES["submitted"],
                {"id": sms_id, "carrier": carrier, "message_ids": message_ids, "encoding": encoding, "parts": parts},
            )
            if row is None:
                return
            await self._requests.move(
                conn,
                row["verification_id"],
                [states.Status.QUEUED],
                states.Status.SENT,
                reason=reasons.Reason.SMS_SENT,
                detail={"carrier": carrier, "parts": parts, "encoding": encoding, "attempt": row["attempts"]},
                channel_index=row["channel_index"],
            )

    async def refused(self, sms_id: uuid.UUID, *, carrier: str, command_status: int, error: str) -> None:
        """The carrier refused the message for good: the request is
        rejected, or moves on to its next channel."""
        async with self._db.transaction() as conn:
            row = await conn.one(
                QUERIES["refused"],
                {"id": sms_id, "carrier": carrier, "command_status": command_status, "error": error},
            )
            if row is None:
                return
            await self._requests.move(
                conn,
                row["verification_id"],
                [states.Status.QUEUED],
                states.Status.REJECTED,
                reason=reasons.Reason.SMS_REJECTED,
                detail={"carrier": carrier, "command_status": command_status, "error": error},
                channel_index=row["channel_index"],
            )

    async def retry_later(self, sms_id: uuid.UUID, *, delay: float, error: str) -> bool:
        """Due again after ``delay`` seconds; False when its request no longer
        waits for it or would expire first (then it is canceled: drop it)."""
        row = await self._db.one(QUERIES["retry_later"], {"id": sms_id, "delay": delay, "error": error})
        return row is not None

    async def receipt(self, carrier: str, message_id: str, *, stat: str, err: str | None) -> bool:
        """One part's delivery receipt; False when no part of that id was
        sent through ``carrier`` (yet: the receipt may have beaten
        ``submitted``). The message ends with its parts' outcome, and the
        request with it: delivered, or unreachable (or on to its next
        channel)."""
        stat = stat.upper()
        async with self._db.transaction() as conn:
            message = await conn.one(QUERIES["receipt_message"], {"carrier": carrier, "message_id": message_id})
            if message is None:
                return False
            stats_row = await conn.one(
                QUERIES["record_part"],
                {"carrier": carrier, "message_id": message_id, "stat": stat, "err": err, "sms_id": message["id"]},
            )
            assert stats_row is not None
            if message["status"] != "sent":
                return True  # already ended (or a late word on a canceled one)
            ended = outcome_of(list(stats_row["stats"] or []))
            if ended is None:
                return True
            # The message's end, and the request's move with it.
            if ended == DELIVERED:
                status, outcome, reason = "delivered", "delivered", reasons.Reason.SMS_DELIVERED
                sources, to_status = [states.Status.SENT], states.Status.DELIVERED
            else:
                (outcome, reason), status = UNDELIVERED[ended], "failed"
                sources, to_status = [states.Status.QUEUED, states.Status.SENT], states.Status.UNREACHABLE
            await conn.execute(
                QUERIES["message_ended"],
                {"id": message["id"], "status": status, "outcome": outcome, "stat": ended, "err": err},
            )
            await self._requests.move(
                conn,
                message["verification_id"],
                sources,
                to_status,
                reason=reason,
                detail={"carrier": carrier, "stat": ended, "err": err, "parts": message["parts"]},
                channel_index=message["channel_index"],
            )
            return True

    async def messages(self, verification_id: uuid.UUID) -> list[Message]:
        rows = await self._db.all(QUERIES["messages_for"], {"id": verification_id})
        return [Message.from_row(r) for r in rows]
