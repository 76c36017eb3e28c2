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
    # sms: the carrier took the message (every part).
    SENT = "sent"
    # voice: the code was read out; sms: every part's receipt says delivered.
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
CHECKABLE = frozenset({Status.QUEUED, Status.CALLING, Status.IN_CALL, Status.SENT, Status.DELIVERED})
CANCELABLE = frozenset({Status.QUEUED, Status.CALLING, Status.IN_CALL, Status.SENT, Status.DELIVERED})
# Where the channel in use ended without a verification: the request moves
# on to its next channel from these, if it has one and time left.
CHANNEL_FAILED = frozenset(
    {Status.NO_ANSWER, Status.BUSY, Status.REJECTED, Status.UNREACHABLE, Status.HUNG_UP, Status.ERROR}
)

ALLOWED: dict[Status, frozenset[Status]] = {
    # queued -> in_call / verified directly: an inbound request, whose user calls us.
    # queued -> sent / rejected / unreachable: an SMS taken or refused by the carrier.
    Status.QUEUED: frozenset(
        {
            Status.CALLING,
            Status.IN_CALL,
            Status.SENT,
            Status.REJECTED,
            Status.UNREACHABLE,
            Status.EXPIRED,
            Status.CANCELED,
            Status.VERIFIED,
            Status.FAILED,
        }
    ),
    Status.SENT: frozenset(
        {
            Status.DELIVERED,
            Status.UNREACHABLE,
            Status.QUEUED,
            Status.VERIFIED,
            Status.FAILED,
            Status.EXPIRED,
            Status.CANCELED,
        }
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
            # not a retry of the call: the next channel of the request's list
            Status.QUEUED,
        }
    ),
    # delivered -> queued: the request's next channel starts (channels).
    Status.DELIVERED: frozenset({Status.VERIFIED, Status.FAILED, Status.EXPIRED, Status.CANCELED, Status.QUEUED}),
}


def can_move(src: Status, dst: Status) -> bool:
    return dst in ALLOWED.get(src, frozenset())


def sources_of(dst: Status) -> list[str]:
    """Every status a request may move to ``dst`` from (for guarded updates)."""
    return sorted(src.value for src, targets in ALLOWED.items() if dst in targets)


UNANSWERED_STATUS = {
    causes.Outcome.BUSY: Status.BUSY,
    causes.Outcome.NO_ANSWER: Status.NO_ANSWER,
    causes.Outcome.CALLEE_UNAVAILABLE: Status.NO_ANSWER,
    causes.Outcome.REJECTED: Status.REJECTED,
    causes.Outcome.UNREACHABLE: Status.UNREACHABLE,
    # Once the trunks have failed it too often (``after_trunk_failure``).
    causes.Outcome.TRUNK_FAILED: Status.UNREACHABLE,
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


def trunk_failure_limit(trunks: int, max_call_attempts: int) -> int:
    """How many of a request's calls may fail on their trunk's side before it
    ends: as many per trunk as the callee may be called. A trunk outage then
    costs a request no more calls on each trunk than a callee who never
    answers would, and a node with more trunks gets more chances to find
    one that works."""
    return trunks * max_call_attempts


def after_trunk_failure(
    *,
    trunk_failures: int,
    max_trunk_failures: int,
    retry_in: dt.timedelta,
    expires_at: dt.datetime,
    now: dt.datetime,
) -> tuple[Status, dt.datetime | None]:
    """Where a request goes after a call that failed on its trunk's side
    (``trunk_failures`` counts that call too): back to the queue, the call
    not counted as an attempt, for when a trunk can take it (``retry_in``:
    zero when another is up now), while failures and time remain; else
    ``unreachable``."""
    if trunk_failures >= max_trunk_failures:
        return Status.UNREACHABLE, None
    retry_at = now + retry_in
    if retry_at >= expires_at:
        return Status.UNREACHABLE, None
    return Status.QUEUED, retry_at
