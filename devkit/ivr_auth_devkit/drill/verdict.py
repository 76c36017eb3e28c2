"""A drill's record (the requests it made, its fault, what the trunk
received) and its verdict from what the database says of each request. No
I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ivr_auth_devkit.drill import measure, report


@dataclass
class Req:
    method: str
    phone: str
    code: str = ""
    id: str = ""
    refused: str = ""


@dataclass
class Fault:
    """When the fault began and ended (Unix time); ``controller``: only the
    calls of this controller were hit."""

    began: float
    ended: float
    controller: str | None = None


@dataclass
class Drill:
    name: str
    index: int
    requests: list[Req] = field(default_factory=list)
    fault: Fault | None = None
    invites: list[measure.Invite] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return f"drill:{self.name}"

    def number(self, kind: int, i: int) -> str:
        """Outbound callee (kind 1, E.164) or inbound caller (kind 2, national)."""
        return f"+8190{self.index}{kind}{i:06d}" if kind == 1 else f"090{self.index}{kind}{i:06d}"


@dataclass(frozen=True)
class Row:
    phone: str
    status: str
    reason: str | None
    max_call_attempts: int
    created: float
    finished: float | None


def judge(
    drill: Drill,
    rows: Mapping[str, Row],
    attempts: Mapping[str, Sequence[tuple[measure.Attempt, str]]],
    *,
    asterisk: str,
    cap: float,
    recovers: bool,
) -> report.Result:
    """The drill's figures and verdict from its records: the requests it
    made, how each stands in the database (``rows``, by id), the calls of
    each with the controller that made it, and the INVITE dialogs the trunk
    received (docs/drills.md, The measures)."""
    by_number: dict[str, int] = Counter(i.number for i in drill.invites)
    times = [i.at for i in drill.invites]
    result = report.Result(
        drill=drill.name,
        asterisk=asterisk,
        requests=sum(bool(r.id) for r in drill.requests),
        refused=sum(bool(r.refused) for r in drill.requests),
        invites=len(drill.invites),
        cps_max=measure.max_in_window(times),
        cps_mean=measure.mean_rate(times),
        cap=cap,
        recovers=recovers,
        notes=list(drill.notes),
    )
    fault = drill.fault
    window = (fault.began, fault.ended) if fault else None
    settled: list[measure.Settled] = []
    outcomes: Counter[str] = Counter()
    hit: Counter[str] = Counter()
    # Calls up the moment the fault began (on the killed controller, for a kill), by method.
    up: Counter[str] = Counter()
    for r in drill.requests:
        if not r.id:
            continue
        row = rows.get(r.id)
        if fault is not None and any(
            measure.overlaps(a.started, a.end, (fault.began, fault.began))
            for a, controller in attempts.get(r.id, ())
            if fault.controller in (None, controller)
        ):
            up[r.method] += 1
        calls = attempts.get(r.id, ())
        touched = False
        if window is not None and fault is not None:
            touched = any(
                measure.overlaps(a.started, a.end, window)
                for a, controller in calls
                if fault.controller in (None, controller)
            )
            if r.method == "inbound" and row is not None and row.created < fault.began:
                touched = touched or row.finished is None or row.finished >= fault.began
        status = row.status if row else None
        ending = measure.Ending(status, touched)
        # An end other than verified says why (its reason).
        ended = status or "absent"
        if row is not None and status != "verified" and row.reason:
            ended += f"/{row.reason}"
        outcomes[ended + (" (hit)" if touched else "")] += 1
        if touched:
            hit[ended] += 1
        if measure.is_lost(ending):
            result.lost += 1
            result.notes.append(f"lost: {r.method} {r.id} {status or 'absent'} ({row.reason if row else ''})")
        if measure.is_stuck(ending):
            result.stuck += 1
            result.notes.append(f"stuck: {r.method} {r.id} still {status}")
        if r.method == "dtmf" and row is not None:
            why = measure.dialled_twice([a for a, _ in calls], by_number.get(row.phone, 0), row.max_call_attempts)
            if why:
                result.dialled_twice += 1
                result.notes.append(f"dialled twice: {r.id}: {'; '.join(why)}")
        last_call = max((a.started for a, _ in calls), default=None)
        settled.append(measure.Settled(row.finished if row else None, status, touched, last_call))
    result.outcomes = dict(outcomes)
    if fault is not None:
        where = f" on {fault.controller}" if fault.controller else ""
        in_flight = ", ".join(f"{method} {n}" for method, n in sorted(up.items())) or "none"
        result.notes.append(f"calls up when the fault began{where}: {in_flight}")
    if hit:
        spoilt = sum(n for ended, n in hit.items() if ended != "verified")
        detail = ", ".join(f"{status} {n}" for status, n in sorted(hit.items()))
        result.notes.append(f"hit by the fault: {sum(hit.values())} ({detail}); {spoilt} not verified")
    if recovers and fault is not None:
        result.recover_seconds = measure.time_to_recover(fault.began, settled)
    return result
