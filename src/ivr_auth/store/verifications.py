"""Verification requests in Postgres, the single source of truth and the
queue: created by the API, claimed and settled by the controllers, checked
by the API and FastAGI.

Every state change goes through ``transition``, which guards on the current
status and appends to the event log in the same statement; the webhook of
the new status is written to the outbox in the same transaction. New work
and cancels are announced on the NOTIFY channels below (a hint: the
controllers poll anyway).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

from ivr_auth import channels as channel_list
from ivr_auth import crypto, errors, limits, models, reasons, states, trunks
from ivr_auth.store import database, outbox, sql

QUERIES = sql.load("verifications.sql")
# New work is announced here (the dialers wake), and requests settled while
# their call goes on here (its controller hangs up).
QUEUE_CHANNEL = "ivr_auth_queue"
CANCEL_CHANNEL = "ivr_auth_cancel"
# Every change of a request's status is announced here, the request's id as
# the payload (the API's long-poll GET waits on it).
STATUS_CHANNEL = "ivr_auth_status"


@dataclasses.dataclass(frozen=True)
class NewVerification:
    tenant_id: uuid.UUID
    method: str
    phone: str
    line_type: str
    code: str
    language: str
    reference: str | None
    callback_url: str | None
    ttl_seconds: int
    max_code_attempts: int
    max_call_attempts: int
    idempotency_key: str | None
    request_hash: bytes | None
    inbound_number: str | None = None
    ask_code: bool = False
    # The ordered channels (``method`` is the first's); None: ``method`` alone.
    channels: tuple[channel_list.Step, ...] | None = None

    @property
    def plan(self) -> tuple[channel_list.Step, ...]:
        return self.channels or (channel_list.Step(self.method),)


@dataclasses.dataclass(frozen=True)
class CallEnd:
    """How a call ended, recorded on its call_attempts row (the first end recorded stands)."""

    channel_id: str
    outcome: str
    cause: int | None
    cause_txt: str | None


@dataclasses.dataclass(frozen=True)
class Created:
    verification: models.Verification
    code: str | None
    created: bool


@dataclasses.dataclass(frozen=True)
class Event:
    """One line of a request's event log (``type`` status: a state change)."""

    id: int
    at: dt.datetime
    type: str
    from_status: str | None
    to_status: str | None
    detail: dict[str, Any]

    @classmethod
    def from_row(cls, row: database.Row) -> Event:
        return cls(row["id"], row["at"], row["type"], row["from_status"], row["to_status"], row["detail"])


def _limit_params(policy: limits.Policy | None) -> dict[str, Any]:
    """insert_verification's limit parameters: ``checked`` false without a policy."""
    if policy is None:
        return dict.fromkeys(
            (
                "requests_per_minute",
                "sends_per_phone",
                "phone_window",
                "failure_cooldown",
                "daily_call_budget",
                "daily_sms_budget",
            ),
            0,
        ) | {"checked": False}
    return {
        "checked": True,
        "daily_sms_budget": policy.daily_sms_budget,
        "requests_per_minute": policy.requests_per_minute,
        "sends_per_phone": policy.sends_per_phone,
        "phone_window": policy.sends_per_phone_window_seconds,
        "failure_cooldown": policy.failure_cooldown_seconds,
        "daily_call_budget": policy.daily_call_budget,
    }


# The ends of a channel a request moves on from to its next one (channels).
_FALL_STATUSES = sorted(s.value for s in states.CHANNEL_FAILED)

# Takes a terminal status's webhook to send now; False: it cannot now.
WebhookSink = Callable[[outbox.Delivery], bool]


class Verifications:
    def __init__(self, db: database.Database, keys: crypto.Keys) -> None:
        self._db = db
        self._keys = keys
        self._webhook_sink: WebhookSink | None = None
        self._webhook_hold: float | None = None

    def hand_webhooks_to(self, sink: WebhookSink, hold_seconds: float) -> None:
        """A terminal status this process sets (in a statement of its own)
        has its webhook handed to ``sink`` at once, rendered from the row
        just written, and held from other senders for ``hold_seconds`` (the
        length of one attempt): no claim, no read, no wake-up. A sink that
        refuses releases it to every sender; a process that dies holding it
        leaves it due once the hold runs out."""
        self._webhook_sink = sink
        self._webhook_hold = hold_seconds

    # --- the API's side ----------------------------------------------------------------

    async def create(self, new: NewVerification, policy: limits.Policy | None = None) -> Created:
        """Insert and wake the dialers; or, for a repeated Idempotency-Key with
        the same body, return the first request (and its code) again. With a
        ``policy``, a new request over one of its limits raises
        ``limits.RateLimited`` (a replay never does: it creates nothing)."""
        verification_id = uuid.uuid4()
        params = {
            "id": verification_id,
            "tenant_id": new.tenant_id,
            "method": new.method,
            "phone": new.phone,
            "line_type": new.line_type,
            "code_hash": self._keys.code_hash(verification_id, new.code),
            "code_sealed": self._keys.seal_code(verification_id, new.code),
            "code_length": len(new.code),
            "language": new.language,
            "reference": new.reference,
            "callback_url": new.callback_url,
            "max_code_attempts": new.max_code_attempts,
            "max_call_attempts": new.max_call_attempts,
            "idempotency_key": new.idempotency_key,
            "request_hash": new.request_hash,
            "ttl_seconds": new.ttl_seconds,
            "inbound_number": new.inbound_number,
            "ask_code": new.ask_code,
            "channels": channel_list.to_json(new.channels),
            # What the limits count: a call (the budget), an SMS (its budget),
            # either one a send to the number.
            "calls": channel_list.calls(new.plan),
            "texts": channel_list.texts(new.plan),
        }
        params.update(_limit_params(policy))
        if new.idempotency_key is not None:
            existing = await self._by_idempotency_key(new)
            if existing is not None:
                return self._replayed(existing, new)
        row = await self._db.one(QUERIES["insert_verification"], params)
        assert row is not None
        if row["refused_reason"] is not None:
            assert policy is not None
            raise limits.refused(policy, row["refused_reason"], row["refused_retry_after"], row["refused_count"])
        if row["id"] is not None:
            return Created(models.Verification.from_row(row), new.code, created=True)
        # Another create with this Idempotency-Key got in first, meanwhile.
        existing = await self._by_idempotency_key(new)
        if existing is None:  # and rolled back
            raise errors.Conflict("a request with this Idempotency-Key is being processed; retry")
        return self._replayed(existing, new)

    async def _by_idempotency_key(self, new: NewVerification) -> database.Row | None:
        return await self._db.one(
            QUERIES["verification_by_idempotency_key"],
            {"tenant_id": new.tenant_id, "idempotency_key": new.idempotency_key},
        )

    def _replayed(self, row: database.Row, new: NewVerification) -> Created:
        first = models.Verification.from_row(row)
        if first.request_hash != new.request_hash:
            raise errors.IdempotencyMismatch()
        code = self._keys.open_code(first.id, first.code_sealed) if first.code_sealed else None
        return Created(first, code, created=False)

    async def get(self, tenant_id: uuid.UUID, verification_id: uuid.UUID) -> models.Verification:
        row = await self._db.one(QUERIES["verification_for_tenant"], {"id": verification_id, "tenant_id": tenant_id})
        if row is None:
            raise errors.NotFound()
        return models.Verification.from_row(row)

    async def get_by_id(self, verification_id: uuid.UUID) -> models.Verification | None:
        row = await self._db.one(QUERIES["verification_by_id"], {"id": verification_id})
        return models.Verification.from_row(row) if row else None

    async def cancel(self, tenant_id: uuid.UUID, verification_id: uuid.UUID) -> models.Verification:
        current = await self.get(tenant_id, verification_id)
        if current.status not in states.CANCELABLE:
            raise errors.Conflict(f"the request is {current.status.value} and can no longer be canceled")
        async with self._db.connection() as conn:
            canceled = await self._transition(
                conn,
                verification_id,
                sorted(s.value for s in states.CANCELABLE),
                states.Status.CANCELED,
                reason=reasons.Reason.CANCELED,
                detail={"by": "api"},
                release=True,
                notify_cancel=True,
            )
        if canceled is None:
            settled = await self.get(tenant_id, verification_id)
            raise errors.Conflict(f"the request is {settled.status.value} and can no longer be canceled")
        return canceled

    async def check_code(
        self, tenant_id: uuid.UUID | None, verification_id: uuid.UUID, code: str, *, source: str
    ) -> tuple[models.Verification, bool]:
        """Compare a code (constant time); a wrong one counts against
        max_code_attempts, and the last allowed wrong one fails the request.
        ``tenant_id`` None: any tenant's (the operator's own dialplan, FastAGI)."""
        async with self._db.transaction() as conn:
            if tenant_id is None:
                row = await conn.one(QUERIES["lock_verification_by_id"], {"id": verification_id})
            else:
                row = await conn.one(QUERIES["lock_verification"], {"id": verification_id, "tenant_id": tenant_id})
            if row is None:
                raise errors.NotFound()
            current = models.Verification.from_row(row)
            if current.status not in states.CHECKABLE:
                raise errors.Conflict(f"the request is {current.status.value}; no code can be checked")
            if current.expires_at <= dt.datetime.now(dt.UTC):
                raise errors.Conflict("the request has expired")
            if self._keys.code_matches(current.id, code, current.code_hash):
                return await self._settle_check(
                    conn, current, states.Status.VERIFIED, reasons.Reason.CODE_MATCHED, source
                ), True
            after = await self._record_wrong_code(conn, current.id, source)
            if after.code_attempts >= after.max_code_attempts:
                return await self._settle_check(
                    conn, current, states.Status.FAILED, reasons.Reason.CODE_ATTEMPTS_EXHAUSTED, source
                ), False
            return after, False

    async def _settle_check(
        self,
        conn: database.Connection,
        current: models.Verification,
        to_status: states.Status,
        reason: reasons.Reason,
        source: str,
    ) -> models.Verification:
        # Settled on the web page while the phone is still ringing or in the
        # call: that call has nothing left to do, hang it up.
        hang_up = current.status in states.IN_PROGRESS | {states.Status.DELIVERED} and source == "api"
        settled = await self._transition(
            conn,
            current.id,
            [current.status.value],
            to_status,
            reason=reason,
            detail={"source": source},
            release=True,
            notify_cancel=hang_up,
        )
        assert settled is not None  # the row is locked FOR UPDATE in this transaction
        return settled

    async def events(self, verification_id: uuid.UUID) -> list[Event]:
        """The request's event log, oldest first."""
        return [Event.from_row(r) for r in await self._db.all(QUERIES["events_for"], {"id": verification_id})]

    # --- the queue (controller side) ---------------------------------------------------

    async def claim(
        self, owner: str, node: str, offers: Sequence[trunks.Offer], lease_seconds: float
    ) -> tuple[list[models.Verification], int]:
        """The due requests the trunks ``offers`` can take now (claimed, each
        with its ``trunk``), and how many more are due that none could take."""
        if not offers:
            return [], 0
        rows = await self._db.all(
            QUERIES["claim"],
            {
                "owner": owner,
                "node": node,
                "lease_seconds": lease_seconds,
                "trunks": [o.name for o in offers],
                "ranks": [o.rank for o in offers],
                "rooms": [o.room for o in offers],
                "rates": [o.rate for o in offers],
                "bursts": [o.burst for o in offers],
                "max_channels": [o.max_channels for o in offers],
            },
        )
        found = [models.Verification.from_row(r) for r in rows]
        claimed = [v for v in found if v.status is states.Status.CALLING]
        return claimed, len(found) - len(claimed)

    async def transition(
        self,
        verification_id: uuid.UUID,
        from_statuses: Iterable[states.Status],
        to_status: states.Status,
        *,
        reason: reasons.Reason | None = None,
        cause: int | None = None,
        cause_txt: str | None = None,
        channel_id: str | None = None,
        next_attempt_at: dt.datetime | None = None,
        detail: Mapping[str, Any] | None = None,
        answered_by: str | None = None,
        uncounted: bool = False,
        answered_call: str | None = None,
        ended_call: CallEnd | None = None,
    ) -> models.Verification | None:
        """Guarded state change; None when the request was no longer in any of
        ``from_statuses`` (canceled or settled meanwhile). Leaving the call
        states (settled, requeued, read out) releases the controller's lease.
        ``uncounted``: the call that ends here (one that failed on its trunk)
        gives its attempt back. ``answered_call``, ``ended_call``: the call
        (channel id) answered, or ended, recorded in the same statement (the
        end whether or not the request moved)."""
        release = to_status in states.TERMINAL or to_status in (states.Status.QUEUED, states.Status.DELIVERED)
        # One statement in autocommit, unless its webhook is rendered now
        # (delivered): then with the row it reports, in one transaction.
        eager = to_status in outbox.EVENT_STATUSES and to_status not in states.TERMINAL
        async with self._db.transaction() if eager else self._db.connection() as conn:
            return await self._transition(
                conn,
                verification_id,
                [s.value for s in from_statuses],
                to_status,
                reason=reason,
                cause=cause,
                cause_txt=cause_txt,
                channel_id=channel_id,
                next_attempt_at=next_attempt_at,
                detail=detail,
                release=release,
                answered_by=answered_by,
                uncounted=uncounted,
                answered_call=answered_call,
                ended_call=ended_call,
                notify_queue=to_status is states.Status.QUEUED,
                # Committed with this one statement: its webhook may go now.
                hold_webhook=not eager,
            )

    async def _transition(
        self,
        conn: database.Connection,
        verification_id: uuid.UUID,
        from_statuses: list[str],
        to_status: states.Status,
        *,
        reason: reasons.Reason | None = None,
        cause: int | None = None,
        cause_txt: str | None = None,
        channel_id: str | None = None,
        next_attempt_at: dt.datetime | None = None,
        detail: Mapping[str, Any] | None = None,
        release: bool = False,
        answered_by: str | None = None,
        uncounted: bool = False,
        answered_call: str | None = None,
        ended_call: CallEnd | None = None,
        notify_queue: bool = False,
        notify_cancel: bool = False,
        hold_webhook: bool = False,
        channel_index: int | None = None,
    ) -> models.Verification | None:
        """The transition statement on ``conn``; ``channel_index``: only
        while the request is still on that channel of its list; a status whose webhook is
        rendered now (delivered) needs ``conn`` in a transaction.
        ``hold_webhook``: the statement commits by itself (autocommit), so its
        webhook may be handed to this process's sender, if it has one."""
        hold = self._webhook_hold if hold_webhook and self._webhook_sink is not None else None
        event_detail = dict(detail or {})
        for key, value in (("reason", reason.value if reason else None), ("cause", cause), ("cause_txt", cause_txt)):
            if value is not None:
                event_detail.setdefault(key, value)
        row = await conn.one(
            QUERIES["transition"],
            {
                "id": verification_id,
                "from_statuses": from_statuses,
                "to_status": to_status.value,
                "terminal": to_status in states.TERMINAL,
                "release": release,
                "reason": reason.value if reason else None,
                "cause": cause,
                "cause_txt": cause_txt,
                "channel_id": channel_id,
                "next_attempt_at": next_attempt_at,
                "detail": json.dumps(event_detail, default=str),
                "answered_by": answered_by,
                "uncounted": uncounted,
                "answer_channel": answered_call,
                "end_channel": ended_call.channel_id if ended_call else None,
                "end_outcome": ended_call.outcome if ended_call else None,
                "end_cause": ended_call.cause if ended_call else None,
                "end_cause_txt": ended_call.cause_txt if ended_call else None,
                # A terminal status's webhook: in this statement, rendered by its sender.
                "webhook": to_status in states.TERMINAL,
                "notify_queue": notify_queue,
                "notify_cancel": notify_cancel,
                "hold_seconds": hold,
                "fall_statuses": _FALL_STATUSES,
                "channel_index": channel_index,
            },
        )
        if row is None:
            return None
        changed = models.Verification.from_row(row)
        if hold is not None and row["webhook_id"] is not None:
            await self._hand_over(conn, changed, row)
        if to_status not in states.TERMINAL:
            # The webhook, if any (delivered), rendered now, in the same transaction.
            await outbox.enqueue(conn, changed)
        return changed

    async def move(
        self,
        conn: database.Connection,
        verification_id: uuid.UUID,
        from_statuses: Iterable[states.Status],
        to_status: states.Status,
        *,
        reason: reasons.Reason,
        detail: Mapping[str, Any],
        channel_index: int,
    ) -> models.Verification | None:
        """A guarded state change in the caller's transaction (``conn``), while
        the request is still on its channel ``channel_index`` (the SMS
        outbox's answers and receipts); None: it no longer was."""
        return await self._transition(
            conn,
            verification_id,
            [s.value for s in from_statuses],
            to_status,
            reason=reason,
            detail=detail,
            release=False,
            channel_index=channel_index,
        )

    async def _hand_over(self, conn: database.Connection, changed: models.Verification, row: database.Row) -> None:
        assert self._webhook_sink is not None
        sealed = row["webhook_secret_sealed"]
        delivery = outbox.Delivery(
            id=row["webhook_id"],
            verification_id=changed.id,
            tenant_id=changed.tenant_id,
            url=row["webhook_url"],
            event_type=row["webhook_event_type"],
            body=outbox.event_body(changed, row["webhook_id"], row["webhook_event_type"], row["webhook_created_at"]),
            created_at=row["webhook_created_at"],
            attempts=0,
            webhook_secret_sealed=bytes(sealed) if sealed is not None else None,
        )
        if not self._webhook_sink(delivery):
            await outbox.release(conn, delivery.id)

    # --- inbound calls ---------------------------------------------------------------

    async def inbound_pending(self, phone: str, did: str) -> models.Verification | None:
        """The newest open inbound request for a call from ``phone`` to ``did`` (both E.164)."""
        row = await self._db.one(QUERIES["inbound_pending"], {"phone": phone, "did": did})
        return models.Verification.from_row(row) if row else None

    async def take_inbound(
        self,
        verification_id: uuid.UUID,
        *,
        owner: str,
        node: str,
        channel_id: str,
        lease_seconds: float,
        detail: Mapping[str, Any],
    ) -> models.Verification | None:
        """queued -> in_call for an inbound call that keys the code, under a
        lease; None when the request was settled or expired meanwhile."""
        row = await self._db.one(
            QUERIES["take_inbound"],
            {
                "id": verification_id,
                "owner": owner,
                "node": node,
                "channel_id": channel_id,
                "lease_seconds": lease_seconds,
                "detail": json.dumps(detail, default=str),
            },
        )
        return models.Verification.from_row(row) if row else None

    async def requeue_unplaced(self, verification_id: uuid.UUID, channel_id: str, error: str, delay: float) -> bool:
        """Back to the queue for a call that was never placed; the attempt does not count."""
        row = await self._db.one(
            QUERIES["requeue_unplaced"],
            {
                "id": verification_id,
                "channel_id": channel_id,
                "delay": delay,
                "detail": json.dumps({"reason": "not_placed", "error": error}),
            },
        )
        return row is not None

    async def requeue_failover(
        self,
        verification_id: uuid.UUID,
        channel_id: str,
        *,
        trunk: str,
        cause: int,
        cause_txt: str,
        delay: float = 0.0,
    ) -> bool:
        """Back to the queue after a call that failed on its trunk: at once,
        for another trunk that is up, or after ``delay`` seconds, when one
        will be. The attempt does not count, the call stays on record
        (outcome ``trunk_failed``). False: settled elsewhere meanwhile."""
        detail: dict[str, Any] = {"reason": "trunk_failover", "trunk": trunk, "cause": cause, "cause_txt": cause_txt}
        if delay > 0:
            detail.update(reason="trunk_down", retry_in_seconds=round(delay, 3))
        row = await self._db.one(
            QUERIES["requeue_failover"],
            {
                "id": verification_id,
                "channel_id": channel_id,
                "cause": cause,
                "cause_txt": cause_txt,
                "delay": delay,
                "detail": json.dumps(detail),
            },
        )
        return row is not None

    async def heartbeat(self, owner: str, ids: list[uuid.UUID], lease_seconds: float) -> None:
        if ids:
            await self._db.one(QUERIES["heartbeat"], {"owner": owner, "ids": ids, "lease_seconds": lease_seconds})

    async def expire_queued(self, *, batch: int = 500) -> int:
        """Expire what ran out, ``batch`` at a time until none is left; the count."""
        total = 0
        while True:
            async with self._db.transaction() as conn:
                rows = await conn.all(QUERIES["expire_queued"], {"limit": batch})
                for row in rows:
                    await outbox.enqueue(conn, models.Verification.from_row(row))
            total += len(rows)
            if len(rows) < batch:
                return total

    async def advance_channels(self, *, batch: int = 500) -> list[models.Verification]:
        """Move the requests whose next channel's time came on to it (``batch``
        at a time until none is left); the requests moved."""
        moved: list[models.Verification] = []
        while True:
            rows = await self._db.all(QUERIES["advance_channels"], {"limit": batch})
            moved.extend(models.Verification.from_row(r) for r in rows)
            if len(rows) < batch:
                return moved

    @contextlib.asynccontextmanager
    async def orphans(self) -> AsyncIterator[tuple[list[models.Verification], database.Connection]]:
        """Requests whose controller's lease ran out, locked for settling in
        the yielded transaction (settle them with ``settle_orphan``)."""
        async with self._db.transaction() as conn:
            rows = await conn.all(QUERIES["orphans"])
            yield [models.Verification.from_row(r) for r in rows], conn

    async def settle_orphan(
        self,
        conn: database.Connection,
        orphan: models.Verification,
        to_status: states.Status,
        *,
        next_attempt_at: dt.datetime | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        await self._transition(
            conn,
            orphan.id,
            [orphan.status.value],
            to_status,
            reason=reasons.Reason.CONTROLLER_LOST if to_status is not states.Status.QUEUED else None,
            next_attempt_at=next_attempt_at,
            detail=detail,
            release=True,
            notify_queue=to_status is states.Status.QUEUED,
        )

    async def log_event(self, verification_id: uuid.UUID, kind: str, detail: Mapping[str, Any]) -> None:
        await self._db.one(
            QUERIES["log_event"], {"id": verification_id, "type": kind, "detail": json.dumps(detail, default=str)}
        )

    async def wrong_code(self, verification_id: uuid.UUID, *, source: str) -> models.Verification:
        async with self._db.transaction() as conn:
            return await self._record_wrong_code(conn, verification_id, source)

    async def _record_wrong_code(
        self, conn: database.Connection, verification_id: uuid.UUID, source: str
    ) -> models.Verification:
        row = await conn.one(QUERIES["record_wrong_code"], {"id": verification_id})
        if row is None:
            raise errors.NotFound()
        detail = {"source": source, "attempt": row["code_attempts"]}
        await conn.execute(
            QUERIES["log_event"], {"id": verification_id, "type": "wrong_code", "detail": json.dumps(detail)}
        )
        return models.Verification.from_row(row)

    async def set_answered_by(self, verification_id: uuid.UUID, answered_by: str) -> None:
        await self._db.one(QUERIES["set_answered_by"], {"id": verification_id, "answered_by": answered_by})
