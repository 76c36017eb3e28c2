"""What a drill measures, from its records alone (no I/O): the INVITEs the
trunk received (SIPp's message trace), the calls each request had
(call_attempts) and how each request ended. docs/drills.md defines each
measure; the functions here are those definitions."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ivr_auth import causes, states

# The statuses a request may still leave: after its drill's settle time, stuck.
OPEN = frozenset(s.value for s in states.Status) - frozenset(s.value for s in states.TERMINAL)
# A call that reached no one and may be tried again (the product's own rule),
# or that failed on its trunk's side (another call, uncounted, is its policy).
RETRY_OUTCOMES = frozenset(o.value for o in causes.Outcome if causes.retryable(o)) | {causes.Outcome.TRUNK_FAILED.value}
# Where a call's record says the trunk, not the callee, failed: not counted
# against max_call_attempts.
UNCOUNTED_OUTCOMES = frozenset({causes.Outcome.TRUNK_FAILED.value})
# A carrier counts new calls by the second.
WINDOW_SECONDS = 1.0
# The share over the trunk's cap the drill lets pass (timing jitter on one machine).
CAP_TOLERANCE = 0.10


@dataclass(frozen=True)
class Invite:
    """An INVITE received at the trunk: the number dialled (Request-URI user
    part), its dialog (Call-ID) and when it first came (Unix time)."""

    number: str
    call_id: str
    at: float


_SEPARATOR = re.compile(r"^-{20,}\s*(\d{4}-\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+)[^\n]*$", re.MULTILINE)
_INVITE_LINE = re.compile(r"^\s*INVITE sips?:([^@;>\s]+)@", re.MULTILINE)
_CALL_ID = re.compile(r"^(?:Call-ID|i)\s*:\s*(\S+)", re.MULTILINE | re.IGNORECASE)


def received_invites(messages: str) -> list[Invite]:
    """The dialogs a SIPp message trace (-trace_msg) shows INVITEd, once
    each, at the first INVITE of each Call-ID: a retransmission or a
    re-INVITE in the same dialog is not a new call. In the order received."""
    stamps = list(_SEPARATOR.finditer(messages))
    seen: dict[str, Invite] = {}
    for index, stamp in enumerate(stamps):
        end = stamps[index + 1].start() if index + 1 < len(stamps) else len(messages)
        block = messages[stamp.end() : end]
        head, _, rest = block.lstrip("\n").partition("\n")
        if "message received" not in head:
            continue
        invite = _INVITE_LINE.match(rest.lstrip("\n"))
        call_id = _CALL_ID.search(rest)
        if invite is None or call_id is None or call_id.group(1) in seen:
            continue
        # SIPp writes its local time.
        at = dt.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S.%f").astimezone().timestamp()
        seen[call_id.group(1)] = Invite(invite.group(1), call_id.group(1), at)
    return sorted(seen.values(), key=lambda i: i.at)


def max_in_window(times: Iterable[float], width: float = WINDOW_SECONDS) -> int:
    """The most events in any half-open window [t, t + width): the window
    that holds the most starts at one of them."""
    ordered = sorted(times)
    best = 0
    last = 0
    for first, start in enumerate(ordered):
        last = max(last, first)
        while last < len(ordered) and ordered[last] < start + width:
            last += 1
        best = max(best, last - first)
    return best


def mean_rate(times: Iterable[float]) -> float | None:
    """Events per second from the first to the last (n - 1 gaps over the
    span); None with fewer than two events or no time between them."""
    ordered = sorted(times)
    if len(ordered) < 2 or ordered[-1] <= ordered[0]:
        return None
    return (len(ordered) - 1) / (ordered[-1] - ordered[0])


def cap_exceeded(observed: float | None, cap: float, tolerance: float = CAP_TOLERANCE) -> bool:
    """More than ``tolerance`` over the cap (calls come whole: a cap of 10
    lets 11 in a second pass, 12 not)."""
    return observed is not None and observed > cap * (1 + tolerance) + 1e-9


@dataclass(frozen=True)
class Attempt:
    """One call_attempts row of a request (times as Unix time). ``reaped``:
    when a reaper settled the request while this call was still open (its
    controller was gone): the reaper hangs the channel up then."""

    attempt: int
    channel_id: str
    started: float
    ended: float | None = None
    answered: float | None = None
    outcome: str | None = None
    reaped: float | None = None

    @property
    def end(self) -> float | None:
        """When the call is known to have ended; None: never (still open)."""
        return self.ended if self.ended is not None else self.reaped


def dialled_twice(attempts: Sequence[Attempt], invites: int, max_call_attempts: int) -> list[str]:
    """Why a request was dialled more often than its retries justify (empty:
    it was not). A retry is justified after a call that reached no one and
    may be tried again (busy, no answer, unavailable; a trunk failure), or
    after a call that never answered whose controller died (the reaper sent
    it back to the queue). Not justified: two calls at once, a call after an
    answered one, more counted calls than max_call_attempts, or more INVITE
    dialogs at the trunk than the request has calls on record."""
    ordered = sorted(attempts, key=lambda a: (a.started, a.attempt))
    why = []
    for earlier, later in itertools.pairwise(ordered):
        end = earlier.end
        if end is None or later.started < end:
            why.append(f"call {later.attempt} began while call {earlier.attempt} was still up")
        elif earlier.outcome not in RETRY_OUTCOMES and not (earlier.reaped is not None and earlier.answered is None):
            why.append(f"call {later.attempt} after call {earlier.attempt} ended {earlier.outcome or 'unrecorded'}")
    counted = sum(a.outcome not in UNCOUNTED_OUTCOMES for a in ordered)
    if counted > max_call_attempts:
        why.append(f"{counted} calls counted, max_call_attempts {max_call_attempts}")
    if invites > len(ordered):
        why.append(f"{invites} INVITE dialogs at the trunk for {len(ordered)} call(s) on record")
    return why


@dataclass(frozen=True)
class Ending:
    """How one accepted request stood at the end of its drill. ``status``
    None: the request is not in the database. ``touched``: its call was in
    progress during the fault (or, inbound, its caller was calling then)."""

    status: str | None
    touched: bool
    expected: str = "verified"


def overdue(status: str, now: float, expires_at: float, since: float, *, longest_call: float, grace: float) -> bool:
    """An open request past the longest it may stay so: queued past its
    expiry, or in a call (``since``: when its last call began, or it last
    changed) for longer than the longest call; each with ``grace`` more (the
    reaper's pass, a dead controller's lease). Every open request overdue:
    the drill's wait is over, and they are stuck."""
    if status == states.Status.QUEUED.value:
        return now > expires_at + grace
    return now > since + longest_call + grace


def is_stuck(e: Ending) -> bool:
    """Still queued or in a call after the drill's settle time."""
    return e.status in OPEN


def is_lost(e: Ending) -> bool:
    """Accepted but gone, or ended in a way its drill does not allow: a
    request the fault did not touch must end as expected; one it touched may
    end in any terminal status that tells its client the truth (an error,
    a hang-up), but not by expiring: expiry means nobody ever served it."""
    if e.status is None:
        return True
    if e.status in OPEN:
        return False  # stuck, counted as such
    if e.status == states.Status.EXPIRED.value:
        return True
    return not e.touched and e.status != e.expected


def overlaps(start: float, end: float | None, window: tuple[float, float]) -> bool:
    """A span from ``start`` to ``end`` (None: still open) meets ``window``."""
    return start <= window[1] and (end is None or end >= window[0])


@dataclass(frozen=True)
class Settled:
    """When one request ended, for the time to recover."""

    finished: float | None
    status: str | None
    touched: bool
    # When its last call began (None: it had none).
    last_call: float | None


def time_to_recover(fault_at: float, requests: Sequence[Settled]) -> float | None:
    """From the fault to the later of: the first request verified on a call
    begun after the fault, and the last request the fault touched settled.
    None: no request was verified on a call begun after the fault, or one
    it touched never settled."""
    after = [
        r.finished
        for r in requests
        if r.status == "verified" and r.finished is not None and r.last_call is not None and r.last_call >= fault_at
    ]
    if not after:
        return None
    touched = [r.finished for r in requests if r.touched]
    if any(f is None for f in touched):
        return None
    return max([min(after), *(f for f in touched if f is not None)]) - fault_at
