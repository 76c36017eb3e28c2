"""Operator sessions: a signed cookie carrying the operator's id, when it
was issued (Postgres's clock) and when it ends. Nothing is stored per
session; logging out moves the operator's ``sessions_valid_after`` on,
which ends every session issued before it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import math
import uuid

from ivr_auth import crypto

COOKIE = "ivr_auth_dashboard"
PATH = "/dashboard"


@dataclasses.dataclass(frozen=True)
class Session:
    operator_id: uuid.UUID
    issued: dt.datetime
    expires: dt.datetime


def _ms(at: dt.datetime) -> int:
    # Up, not down: a login in the same millisecond as the token's
    # replacement must not predate it.
    return math.ceil(at.timestamp() * 1000)


def _from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def encode(keys: crypto.Keys, session: Session) -> str:
    payload = f"{session.operator_id}.{_ms(session.issued)}.{_ms(session.expires)}"
    return f"{payload}.{keys.session_tag(payload)}"


def decode(keys: crypto.Keys, value: str, now: dt.datetime) -> Session | None:
    """The session in a cookie, or None when it is forged, malformed or over."""
    payload, _, tag = value.rpartition(".")
    if not payload or not hmac.compare_digest(tag.encode(), keys.session_tag(payload).encode()):
        return None
    try:
        operator, issued, expires = payload.split(".")
        session = Session(uuid.UUID(operator), _from_ms(int(issued)), _from_ms(int(expires)))
    except ValueError:
        return None
    return session if session.expires > now else None
