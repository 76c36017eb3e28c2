"""A verification's life: statuses, which changes are allowed, and the
retry policy for calls that were not answered. Pure logic, no I/O."""

from __future__ import annotations

import datetime as dt
import enum

from ivr_auth import causes


class Status(enum.StrEnum):
    QUEUED = "queued"
    CALLING = "calling"
    IN_CALL = "in_call"
    DELIVERED = "delivered"
    VERIFIED = "verified"
    FAILED = "failed"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"
    HUNG_UP = "hung_up"
    EXPIRED = "expired"
    CANCELED = "canceled"
    ERROR = "error"


TERMINAL = frozenset(
    {
        Status.VERIFIED,
        Status.FAILED,
        Status.NO_ANSWER,
        Status.BUSY,
        Status.REJECTED,
        Status.UNREACHABLE,
        Status.HUNG_UP,
        Status.EXPIRED,
        Status.CANCELED,
        Status.ERROR,
    }
)
IN_PROGRESS = frozenset({Status.CALLING, Status.IN_CALL})
# A code can still be checked (POST .../check) in these.
CHECKABLE = frozenset({Status.QUEUED, Status.CALLING, Status.IN_CALL, Status.DELIVERED})
CANCELABLE = frozenset({Status.QUEUED, Status.CALLING, Status.IN_CALL, Status.DELIVERED})

ALLOWED: dict[Status, frozenset[Status]] = {
    # queued -> in_call / verified directly: an inbound request, whose user calls us.
    Status.QUEUED: frozenset(
        {Status.CALLING, Status.IN_CALL, Status.EXPIRED, Status.CANCELED, Status.VERIFIED, Status.FAILED}
    ),
    Status.CALLING: frozenset(
        {
            Status.IN_CALL,
            Status.QUEUED,
            Status.NO_ANSWER,
            Status.BUSY,
            Status.REJECTED,
            Status.UNREACHABLE,
            Status.ERROR,
            Status.CANCELED,
            Status.EXPIRED,
            Status.VERIFIED,
            Status.FAILED,
        }
    ),
    Status.IN_CALL: frozenset(
        {
            Status.VERIFIED,
            Status.FAILED,
            Status.HUNG_UP,
            Status.DELIVERED,
            Status.ERROR,
            Status.CANCELED,
            Status.EXPIRED,
        }
    ),
    Status.DELIVERED: frozenset({Status.VERIFIED, Status.FAILED, Status.EXPIRED, Status.CANCELED}),
}


def can_move(src: Status, dst: Status) -> bool:
    return dst in ALLOWED.get(src, frozenset())


def sources_of(dst: Status) -> list[str]:
    """Every status a request may move to ``dst`` from (for guarded updates)."""
    return sorted(src.value for src, targets in ALLOWED.items() if dst in targets)


UNANSWERED_STATUS = {
    causes.Outcome.BUSY: Status.BUSY,
    causes.Outcome.NO_ANSWER: Status.NO_ANSWER,
    causes.Outcome.REJECTED: Status.REJECTED,
    causes.Outcome.UNREACHABLE: Status.UNREACHABLE,
    causes.Outcome.ERROR: Status.ERROR,
}


def after_unanswered(
    outcome: causes.Outcome,
    *,
    call_attempts: int,
    max_call_attempts: int,
    retry_delay: dt.timedelta,
    expires_at: dt.datetime,
    now: dt.datetime,
) -> tuple[Status, dt.datetime | None]:
    """Where a request goes after a call that was not answered: back to the
    queue for another try (busy / no answer, attempts and time left), or to
    the terminal status for the outcome."""
    final = UNANSWERED_STATUS[outcome]
    if not causes.retryable(outcome) or call_attempts >= max_call_attempts:
        return final, None
    retry_at = now + retry_delay
    if retry_at >= expires_at:
        return final, None
    return Status.QUEUED, retry_at
