"""``GET /v1/usage?from=&to=``: what the tenant used over a period, for
billing (operators bill per answered call, mobile and fixed lines apart)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn, TypeVar

from aiohttp import web

from ivr_auth import models
from ivr_auth.api import handlers, schemas
from ivr_auth.store import usage as store_usage

PARAMS = ("from", "to")
MAX_PERIOD = dt.timedelta(days=366)
EXAMPLE = "2026-11-23T00:00:00Z"

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Period:
    start: dt.datetime  # included, UTC
    end: dt.datetime  # excluded, UTC


def _invalid(param: str, message: str, code: str = "invalid_field") -> NoReturn:
    raise schemas.ApiError(422, code, f"{param}: {message}")


def parse_period(params: Iterable[tuple[str, str]], now: dt.datetime) -> Period:
    """The period the query string asks for: from the start of ``now``'s UTC
    day to ``now`` unless it says otherwise."""
    given: dict[str, str] = {}
    for name, value in params:
        if name not in PARAMS:
            # Cut short: the name is the client's text, echoed into its logs.
            shown = name if len(name) <= schemas.MAX_FIELD_NAME_ECHO else name[: schemas.MAX_FIELD_NAME_ECHO] + "..."
            _invalid(shown, f"unknown query parameter (known: {', '.join(PARAMS)})", "unknown_field")
        if name in given:
            _invalid(name, "given more than once")
        given[name] = value
    now = now.astimezone(dt.UTC)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = _timestamp("from", given["from"]) if "from" in given else day_start
    end = _timestamp("to", given["to"]) if "to" in given else now
    if not given:
        return Period(start, end)
    if end <= start:
        # Name what the client sent (``to`` when it sent both), and what that was held against.
        if "from" in given and "to" in given:
            _invalid("to", f"must be after from ({models.iso(start)})")
        if "to" in given:
            _invalid("to", f"must be after from (by default the start of the UTC day: {models.iso(start)})")
        _invalid("from", f"must be before to (by default now: {models.iso(end)})")
    if end - start > MAX_PERIOD:
        _invalid(
            "to" if "to" in given else "from",
            f"the period {models.iso(start)} to {models.iso(end)} is longer than {MAX_PERIOD.days} days",
        )
    return Period(start, end)


def _timestamp(param: str, text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        # A "+09:00" sent unescaped arrives as " 09:00": "+" is a space in a query string.
        hint = " (send a '+' as %2B)" if " " in text else ""
        _invalid(param, f"expected an ISO 8601 timestamp with a zone, such as {EXAMPLE}{hint}")
    if value.utcoffset() is None:
        _invalid(param, f"the timestamp has no zone: end it with Z or an offset such as +09:00 ({EXAMPLE})")
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        _invalid(param, "the timestamp is out of range")


@handlers.authenticated
async def get_usage(request: web.Request, tenant: models.Tenant) -> web.StreamResponse:
    period = parse_period(request.query.items(), dt.datetime.now(dt.UTC))
    usage = await request.app[handlers.STORE].usage.report(tenant.id, period.start, period.end)
    return handlers.json_response(public(period, usage))


def public(period: Period, usage: store_usage.Usage) -> dict[str, Any]:
    """The response body: every method listed, line types only where they occur."""
    return {
        "from": models.iso(period.start),
        "to": models.iso(period.end),
        "requests": {"total": usage.requests, "by_method": _per_method(usage.requests_by_method, 0)},
        "verified": {
            "total": usage.verified,
            "by_method": _per_method(usage.verified_by_method, 0),
            "by_line_type": dict(usage.verified_by_line_type),
        },
        "calls": {
            **_calls(usage.calls),
            "by_method": {
                method: _calls(calls)
                for method, calls in _per_method(usage.calls_by_method, store_usage.Calls()).items()
            },
            "by_line_type": {line_type: _calls(calls) for line_type, calls in usage.calls_by_line_type.items()},
        },
        "sms": {
            "messages": usage.sms.messages,
            "parts": usage.sms.parts,
            "parts_by_encoding": {name: usage.sms.parts_by_encoding.get(name, 0) for name in ENCODINGS},
            "messages_by_outcome": {name: usage.sms.messages_by_outcome.get(name, 0) for name in SMS_OUTCOMES},
        },
    }


# Every key listed, zero or not, as for the methods.
ENCODINGS = ("gsm7", "ucs2")
SMS_OUTCOMES = ("pending", "delivered", "undeliverable", "expired")


def _per_method(counts: Mapping[str, T], zero: T) -> dict[str, T]:
    return {method: counts.get(method, zero) for method in schemas.METHODS}


def _calls(calls: store_usage.Calls) -> dict[str, Any]:
    return dataclasses.asdict(calls)
