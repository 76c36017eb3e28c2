"""Operator sessions: a signed cookie carrying the operator's id, when it
was issued (Postgres's clock) and when it ends. Nothing is stored per
session; logging out moves the operator's ``sessions_valid_after`` on,
which ends every session issued before it (or at the same microsecond)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import uuid

from ivr_auth import crypto

COOKIE = "ivr_auth_dashboard"
PATH = "/dashboard"


@dataclasses.dataclass(frozen=True)
class Session:
    operator_id: uuid.UUID
    issued: dt.datetime
    expires: dt.datetime


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MICROSECOND = dt.timedelta(microseconds=1)


# Microseconds, exactly: Postgres's precision. The issue time is compared
# with the moment of a logout or a new token, which may come within the
# same millisecond.
def _us(at: dt.datetime) -> int:
    return (at - EPOCH) // MICROSECOND


def _from_us(us: int) -> dt.datetime:
    return EPOCH + us * MICROSECOND


def encode(keys: crypto.Keys, session: Session) -> str:
    payload = f"{session.operator_id}.{_us(session.issued)}.{_us(session.expires)}"
    return f"{payload}.{keys.session_tag(payload)}"


def decode(keys: crypto.Keys, value: str, now: dt.datetime) -> Session | None:
    """The session in a cookie, or None when it is forged, malformed or over."""
    payload, _, tag = value.rpartition(".")
    if not payload or not hmac.compare_digest(tag.encode(), keys.session_tag(payload).encode()):
        return None
    try:
        operator, issued, expires = payload.split(".")
        session = Session(uuid.UUID(operator), _from_us(int(issued)), _from_us(int(expires)))
    except (ValueError, OverflowError):
        return None
    return session if session.expires > now else None
