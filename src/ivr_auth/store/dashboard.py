"""What the operators' dashboard reads and writes in Postgres: operators and
their logins, each controller's report of itself, and the overview.

Phone numbers leave this module masked (``phone.mask``); codes never enter it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ivr_auth import crypto, errors, phone
from ivr_auth.store import base, gauges, sql

QUERIES = sql.load("dashboard.sql")
# Trunk figures on the page cover the calls that started this long ago.
TRUNK_WINDOW_SECONDS = 900
MAX_CHANGED = 200
# Tenants listed by name in today's counts; the quieter ones share a line.
TOP_TENANTS = 20


@dataclasses.dataclass(frozen=True)
class Operator:
    id: uuid.UUID
    name: str
    # Postgres's clock when it was looked up: a login is issued at this time.
    at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class ControllerReport:
    name: str
    node: str
    ari_connected: bool
    calls: int
    # [{"name", "up", "retry_in_seconds", "calls"}]
    trunks: Sequence[Mapping[str, Any]]
    started_at: dt.datetime


async def _one(store: base.Base, name: str, params: Mapping[str, Any] | None = None) -> base.Row | None:
    return await store.db.one(QUERIES[name], params)


async def _all(store: base.Base, name: str, params: Mapping[str, Any] | None = None) -> list[base.Row]:
    return await store.db.all(QUERIES[name], params)


# --- operators -----------------------------------------------------------------------


async def add_operator(store: base.Base, name: str, *, replace: bool = False) -> str:
    """A new operator (or, with ``replace``, a new token for one, which ends
    its sessions); returns the token, shown once."""
    token, prefix = crypto.new_api_key(crypto.OPERATOR_TOKEN_PREFIX)
    params = {"name": name, "prefix": prefix, "token_hash": store.keys.api_key_hash(token)}
    row = await _one(store, "replace_operator_token" if replace else "create_operator", params)
    if row is None:
        if replace:
            raise errors.NotFound(f"no operator named {name!r}")
        raise errors.Conflict(f"an operator named {name!r} exists (use --new-token to replace its token)")
    return token


async def revoke_operator(store: base.Base, name: str) -> None:
    if await _one(store, "revoke_operator", {"name": name}) is None:
        raise errors.NotFound(f"no active operator named {name!r}")


async def operators(store: base.Base) -> list[base.Row]:
    return await _all(store, "list_operators")


async def operator_for_token(store: base.Base, token: str) -> Operator | None:
    prefix = crypto.api_key_prefix(token, crypto.OPERATOR_TOKEN_PREFIX)
    if prefix is None:
        return None
    row = await _one(store, "operator_by_prefix", {"prefix": prefix})
    if row is None or not hmac.compare_digest(bytes(row["token_hash"]), store.keys.api_key_hash(token)):
        return None
    return Operator(row["id"], row["name"], row["now"])


async def operator_session(store: base.Base, operator_id: uuid.UUID, issued: dt.datetime) -> Operator | None:
    row = await _one(store, "operator_session", {"id": operator_id, "issued": issued})
    return None if row is None else Operator(row["id"], row["name"])


async def end_sessions(store: base.Base, operator_id: uuid.UUID) -> None:
    await _one(store, "end_operator_sessions", {"id": operator_id})


# --- controllers -----------------------------------------------------------------------


async def report_controller(store: base.Base, report: ControllerReport) -> None:
    params = dataclasses.asdict(report)
    params["trunks"] = json.dumps(list(report.trunks))
    await _one(store, "report_controller", params)


async def forget_controller(store: base.Base, name: str) -> None:
    await _one(store, "forget_controller", {"name": name})


# --- the overview ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cursor:
    event_id: int
    webhook_attempt_id: int


async def cursor(store: base.Base) -> Cursor:
    row = await _one(store, "cursor")
    assert row is not None
    return Cursor(row["event_id"], row["webhook_attempt_id"])


async def changed_requests(store: base.Base, after_event_id: int) -> list[str]:
    rows = await _all(store, "changed_requests", {"after": after_event_id})
    return [str(r["id"]) for r in rows[:MAX_CHANGED]]


def masked(row: Mapping[str, Any]) -> str:
    if row.get("purged_at") is not None:
        return "(purged)"
    return phone.mask(str(row["phone"]))


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def request_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """One line of the recent requests: masked, with its timings in seconds."""
    return {
        "id": str(row["id"]),
        "tenant": row["tenant"],
        "method": row["method"],
        "status": row["status"],
        "reason": row["reason"],
        "phone": masked(row),
        "created_at": row["created_at"],
        "call_attempts": row["call_attempts"],
        "cause": row["last_cause"],
        "cause_txt": row["last_cause_txt"],
        "timings": {
            "to_first_call": _seconds(row["created_at"], row["first_call_at"]),
            "answer_to_result": _seconds(row["answered_at"], row["finished_at"]),
            "total": _seconds(row["created_at"], row["finished_at"]),
            "result_to_webhook": _seconds(row["finished_at"], row["webhook_at"]),
        },
    }


def tenant_counts(rows: Iterable[Mapping[str, Any]], top: int | None = None) -> list[dict[str, Any]]:
    """{tenant, total, by_status} per tenant, busiest first; past the
    ``top`` busiest, the rest summed in one line (tenant None, ``others``: how many)."""
    top = TOP_TENANTS if top is None else top
    by_tenant: dict[str, dict[str, int]] = {}
    for r in rows:
        by_tenant.setdefault(r["tenant"], {})[r["status"]] = r["n"]
    ranked = sorted(by_tenant.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    out: list[dict[str, Any]] = [
        {"tenant": name, "total": sum(counts.values()), "by_status": dict(sorted(counts.items()))}
        for name, counts in ranked[:top]
    ]
    if len(ranked) > top:
        rest: dict[str, int] = {}
        for _, counts in ranked[top:]:
            for status, n in counts.items():
                rest[status] = rest.get(status, 0) + n
        out.append(
            {
                "tenant": None,
                "others": len(ranked) - top,
                "total": sum(rest.values()),
                "by_status": dict(sorted(rest.items())),
            }
        )
    return out


def trunk_health(
    configured: Sequence[str], controllers: Sequence[Mapping[str, Any]], recent: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Each trunk: down when a live controller has it down, with the calls
    in progress its controllers report and its last minutes' figures."""
    stats = {r["trunk"]: r for r in recent}
    names = list(dict.fromkeys([*configured, *(t["name"] for c in controllers for t in c["trunks"]), *stats]))
    out = []
    for name in names:
        reports = [t for c in controllers if c["live"] for t in c["trunks"] if t.get("name") == name]
        down = [t for t in reports if not t.get("up", True)]
        row = stats.get(name, {})
        out.append(
            {
                "name": name,
                "state": "down" if down else ("up" if reports else "unknown"),
                "retry_in_seconds": max((t.get("retry_in_seconds") or 0 for t in down), default=None),
                "calls": sum(int(t.get("calls", 0)) for t in reports),
                "recent_calls": row.get("calls", 0),
                "recent_answered": row.get("answered", 0),
                "recent_trunk_failures": row.get("trunk_failures", 0),
            }
        )
    return out


async def overview(
    store: base.Base,
    *,
    since: dt.datetime | None,
    recent: int,
    trunks: Sequence[str],
    stale_seconds: float,
    timeout: float = 2.0,
) -> dict[str, Any]:
    """Everything the page shows but a request's detail, in one transaction."""
    async with store.db.bounded(timeout) as conn:
        (queue,) = await conn.all(gauges.QUERIES["queue"])
        live = await conn.all(QUERIES["live_calls"])
        latest = await conn.all(QUERIES["recent"], {"limit": recent})
        # The one figure that grows with the day's traffic: callers that
        # refresh often ask for it less often (since None).
        day = None if since is None else await conn.all(QUERIES["tenant_day"], {"since": since})
        ctrls = await conn.all(QUERIES["controllers"])
        trunk_rows = await conn.all(QUERIES["trunk_recent"], {"window_s": TRUNK_WINDOW_SECONDS})
    controllers = [
        {
            "name": c["name"],
            "node": c["node"],
            "ari_connected": c["ari_connected"],
            "calls": c["calls"],
            "trunks": c["trunks"],
            "started_at": c["started_at"],
            "seen_seconds_ago": round(c["seen_seconds_ago"], 1),
            "live": c["seen_seconds_ago"] <= stale_seconds,
        }
        for c in ctrls
    ]
    nodes: dict[str, dict[str, Any]] = {}
    for c in controllers:
        node = nodes.setdefault(c["node"], {"name": c["node"], "controllers": 0, "connected": 0, "calls": 0})
        if c["live"]:
            node["controllers"] += 1
            node["connected"] += int(c["ari_connected"])
            node["calls"] += c["calls"]
    for node in nodes.values():
        node["state"] = "up" if node["connected"] else ("down" if node["controllers"] else "gone")
    return {
        "queue": {"depth": queue["depth"], "oldest_age_seconds": round(queue["oldest_age_seconds"], 1)},
        "live_calls": [
            {
                "id": str(r["id"]),
                "tenant": r["tenant"],
                "method": r["method"],
                "status": r["status"],
                "phone": masked(r),
                "node": r["node"],
                "trunk": r["trunk"],
                "attempt": r["attempt"],
                "answered": r["answered_at"] is not None,
                "seconds": round(r["seconds"], 1),
            }
            for r in live
        ],
        "recent": [request_summary(r) for r in latest],
        "tenants_today": None if day is None else tenant_counts(day),
        "day_started_at": since,
        "nodes": sorted(nodes.values(), key=lambda n: n["name"]),
        "controllers": controllers,
        "trunks": trunk_health(trunks, controllers, trunk_rows),
    }


async def request_detail(store: base.Base, verification_id: uuid.UUID) -> base.Row | None:
    row = await _one(store, "request", {"id": verification_id})
    if row is None:
        return None
    detail = dict(row)
    detail["id"] = str(row["id"])
    detail["phone"] = masked(row)
    detail.pop("purged_at")
    return detail
