"""What the operators' dashboard reads and writes in Postgres: each
controller's report of itself, and the overview the page shows (the
operators and their logins are ``operators``). The page's JSON is shaped
here, by plain functions of the rows read.

Phone numbers leave this module masked (``phone.mask``); codes never enter it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ivr_auth import phone
from ivr_auth.store import database, gauges, sql

QUERIES = sql.load("dashboard.sql")
# Trunk figures on the page cover the calls that started this long ago.
TRUNK_WINDOW_SECONDS = 900
MAX_CHANGED = 200
# Tenants listed by name in today's counts; the quieter ones share a line.
TOP_TENANTS = 20


@dataclasses.dataclass(frozen=True)
class ControllerReport:
    name: str
    node: str
    ari_connected: bool
    calls: int
    # [{"name", "up", "retry_in_seconds", "calls"}]
    trunks: Sequence[Mapping[str, Any]]
    started_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class Cursor:
    event_id: int
    webhook_attempt_id: int


class Dashboard:
    def __init__(self, db: database.Database) -> None:
        self._db = db

    # --- controllers ---------------------------------------------------------------------

    async def report_controller(self, report: ControllerReport) -> None:
        params = dataclasses.asdict(report)
        params["trunks"] = json.dumps(list(report.trunks))
        await self._db.one(QUERIES["report_controller"], params)

    async def forget_controller(self, name: str) -> None:
        await self._db.one(QUERIES["forget_controller"], {"name": name})

    # --- the overview --------------------------------------------------------------------

    async def cursor(self) -> Cursor:
        """What moved last: the page is sent again when this changes."""
        row = await self._db.one(QUERIES["cursor"])
        assert row is not None
        return Cursor(row["event_id"], row["webhook_attempt_id"])

    async def changed_requests(self, after_event_id: int) -> list[str]:
        rows = await self._db.all(QUERIES["changed_requests"], {"after": after_event_id})
        return [str(r["id"]) for r in rows[:MAX_CHANGED]]

    async def overview(
        self,
        *,
        since: dt.datetime | None,
        recent: int,
        trunks: Sequence[str],
        stale_seconds: float,
        timeout: float = 2.0,
    ) -> dict[str, Any]:
        """Everything the page shows but a request's detail, in one transaction."""
        async with self._db.bounded(timeout) as conn:
            (queue,) = await conn.all(gauges.QUERIES["queue"])
            live = await conn.all(QUERIES["live_calls"])
            latest = await conn.all(QUERIES["recent"], {"limit": recent})
            # The one figure that grows with the day's traffic: callers that
            # refresh often ask for it less often (since None).
            day = None if since is None else await conn.all(QUERIES["tenant_day"], {"since": since})
            ctrls = await conn.all(QUERIES["controllers"])
            trunk_rows = await conn.all(QUERIES["trunk_recent"], {"window_s": TRUNK_WINDOW_SECONDS})
        return page(
            queue, live, latest, day, ctrls, trunk_rows, since=since, trunks=trunks, stale_seconds=stale_seconds
        )

    async def request_detail(self, verification_id: uuid.UUID) -> dict[str, Any] | None:
        """A request as the page shows it: its number masked, no code, no hashes."""
        row = await self._db.one(QUERIES["request"], {"id": verification_id})
        if row is None:
            return None
        detail = dict(row)
        detail["id"] = str(row["id"])
        detail["phone"] = masked(row)
        detail.pop("purged_at")
        return detail


# --- the page ----------------------------------------------------------------------------


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


def page(
    queue: Mapping[str, Any],
    live: Iterable[Mapping[str, Any]],
    latest: Iterable[Mapping[str, Any]],
    day: Iterable[Mapping[str, Any]] | None,
    ctrls: Iterable[Mapping[str, Any]],
    trunk_rows: Iterable[Mapping[str, Any]],
    *,
    since: dt.datetime | None,
    trunks: Sequence[str],
    stale_seconds: float,
) -> dict[str, Any]:
    """The overview the page shows, from what ``Dashboard.overview`` read."""
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
