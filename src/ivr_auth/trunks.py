"""Which trunk the next outbound call leaves through. Pure logic: the caller
passes the time (monotonic seconds).

- Every trunk has its own pacing: at most ``max_channels`` calls at once and
  ``calls_per_second`` new ones (a token bucket).
- The next call takes a trunk of the lowest ``priority`` number among those
  that are up and have a free channel and a token; trunks of one priority
  take turns. A saturated trunk overflows to the next priority.
- A trunk whose call failed on the trunk's side (``causes.trunk_failure``)
  is down for ``retry_seconds``: skipped while another trunk is up, then
  tried again.
- When every trunk is down, calls still go out, through the trunk whose
  cooldown ends first. A trunk is marked down by a single failed call, and
  a carrier may answer 503 for one bad destination: stalling the whole node
  on that would turn one callee's trouble into everyone's wait, and a node
  with one trunk would stop dialling after any 503. A request whose call
  failed on a trunk waits, uncounted, until a trunk is up (``until_up``),
  and ends after ``states.trunk_failure_limit`` such calls.

Several controllers may dial through one trunk: its limits hold across all
of them. Each controller's ``Trunks`` says what it could start now
(``offers``); the claim (``claim_paced`` in Postgres) takes the trunk's
shared tokens and counts its calls in progress by whoever placed them, and
gives each request claimed its trunk (``take``). A trunk failing for one
controller is marked down in Postgres and every controller hears of it
(``down_for``). This ``Trunks`` is the controller's own view: its calls,
its tokens (never more than the shared ones), the trunks' health as last
heard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ivr_auth import config, pacing

# A trunk's bucket holds this many seconds' worth of calls (at least one): so
# that no second sees more than ``calls_per_second`` new calls (carriers
# count by the second; a bucket a second deep would let twice that through
# after a quiet spell), and a fast trunk still takes a few calls a claim.
BURST_SECONDS = 0.05


def burst_for(calls_per_second: float) -> float:
    return float(max(1, math.floor(calls_per_second * BURST_SECONDS)))


@dataclass(frozen=True)
class Offer:
    """What a controller could start on one trunk now, for the claim:
    ``rank`` lower first (equal ranks take turns, the first listed first)."""

    name: str
    rank: int
    room: int
    rate: float
    burst: float
    max_channels: int


@dataclass
class Trunk:
    cfg: config.TrunkConfig
    bucket: pacing.TokenBucket
    index: int
    channels: int = 0
    # Monotonic time the trunk's cooldown ends; None: never failed since.
    down_until: float | None = None

    def up(self, now: float) -> bool:
        return self.down_until is None or now >= self.down_until

    @property
    def free(self) -> int:
        return self.cfg.max_channels - self.channels


class Trunks:
    def __init__(self, trunks: Sequence[config.TrunkConfig], retry_seconds: float) -> None:
        if not trunks:
            raise ValueError("at least one trunk is needed")
        if retry_seconds <= 0:
            raise ValueError("retry_seconds must be positive")
        self.retry_seconds = retry_seconds
        self._trunks = [
            Trunk(cfg, pacing.TokenBucket(rate=cfg.calls_per_second, burst=burst_for(cfg.calls_per_second)), index)
            for index, cfg in enumerate(trunks)
        ]
        self._by_name = {t.cfg.name: t for t in self._trunks}
        # Per priority: the position (in config order) where the next turn starts.
        self._turn: dict[int, int] = {}

    @classmethod
    def from_config(cls, cfg: config.Config) -> Trunks:
        return cls(cfg.outbound_trunks, cfg.dialer.trunk_retry_seconds)

    def __getitem__(self, name: str) -> Trunk:
        return self._by_name[name]

    @property
    def names(self) -> list[str]:
        return [t.cfg.name for t in self._trunks]

    def _eligible(self, now: float) -> tuple[list[Trunk], bool]:
        """The trunks calls may take now, and whether they are all down."""
        up = [t for t in self._trunks if t.up(now)]
        if up:
            return up, False
        return sorted(self._trunks, key=lambda t: (t.down_until or 0.0, t.cfg.priority, t.index)), True

    @staticmethod
    def _room(trunk: Trunk, now: float) -> int:
        return max(0, min(trunk.free, trunk.bucket.available(now)))

    def capacity(self, now: float) -> int:
        """How many calls could be started now."""
        eligible, _ = self._eligible(now)
        return sum(self._room(t, now) for t in eligible)

    def offers(self, now: float) -> list[Offer]:
        """The trunks calls may take now with room on them, best first: by
        priority, those of one priority from the one whose turn it is (when
        every trunk is down: the one whose cooldown ends first, then the next)."""
        eligible, all_down = self._eligible(now)
        if all_down:
            ranked = list(enumerate(eligible))
        else:
            ranked = []
            for priority in sorted({t.cfg.priority for t in eligible}):
                group = [t for t in self._trunks if t.cfg.priority == priority]
                start = self._turn.get(priority, 0)
                turns = [group[(start + step) % len(group)] for step in range(len(group))]
                ranked += [(priority, t) for t in turns if t in eligible]
        return [
            Offer(t.cfg.name, rank, room, float(t.cfg.calls_per_second), float(t.bucket.burst), t.cfg.max_channels)
            for rank, t in ranked
            if (room := self._room(t, now)) > 0
        ]

    def take(self, name: str, now: float) -> config.TrunkConfig:
        """A call claimed for this trunk (by ``claim_paced``) starts: its
        channel and token are taken here too, and the next of its priority
        has the next turn."""
        trunk = self._by_name[name]
        trunk.bucket.spend(now)
        trunk.channels += 1
        group = [t for t in self._trunks if t.cfg.priority == trunk.cfg.priority]
        self._turn[trunk.cfg.priority] = (group.index(trunk) + 1) % len(group)
        return trunk.cfg

    def acquire(self, now: float) -> config.TrunkConfig | None:
        """Take a channel and a token on the trunk the next call should use;
        None when no trunk can take a call now."""
        eligible, all_down = self._eligible(now)
        usable = [t for t in eligible if self._room(t, now) > 0]
        if not usable:
            return None
        chosen = usable[0] if all_down else self._next_in_turn(usable)
        chosen.bucket.take(now)
        chosen.channels += 1
        return chosen.cfg

    def _next_in_turn(self, usable: list[Trunk]) -> Trunk:
        best = min(t.cfg.priority for t in usable)
        group = [t for t in self._trunks if t.cfg.priority == best]
        start = self._turn.get(best, 0)
        for step in range(len(group)):
            position = (start + step) % len(group)
            if group[position] in usable:
                self._turn[best] = (position + 1) % len(group)
                return group[position]
        raise AssertionError("a usable trunk of the best priority was not in its group")

    def release(self, name: str) -> None:
        """The call on this trunk is over: its channel is free again."""
        trunk = self._by_name[name]
        trunk.channels = max(0, trunk.channels - 1)

    def failed(self, name: str, now: float) -> None:
        """A call on this trunk failed on the trunk's side: skip it for a while."""
        self._by_name[name].down_until = now + self.retry_seconds

    def down_for(self, name: str, now: float, seconds: float) -> None:
        """Another controller found this trunk failing: skip it for ``seconds``
        (a later end already known stays)."""
        trunk = self._by_name.get(name)
        if trunk is None or seconds <= 0:
            return
        until = now + seconds
        trunk.down_until = until if trunk.down_until is None else max(trunk.down_until, until)

    def until_up(self, now: float) -> float:
        """Seconds until some trunk is up: 0.0 when one is now."""
        return max(0.0, min(0.0 if t.down_until is None else t.down_until - now for t in self._trunks))

    def other_up(self, name: str, now: float) -> bool:
        """Another trunk than ``name`` is up (the request may fail over to it)."""
        return any(t.up(now) for t in self._trunks if t.cfg.name != name)

    def down(self, now: float) -> list[str]:
        return [t.cfg.name for t in self._trunks if not t.up(now)]

    def wait_time(self, now: float) -> float | None:
        """Seconds until a token is due on a trunk calls may take that has a
        free channel; None when every such trunk is full (a call's end frees
        one, and says so). A cooldown ending may change which trunks calls
        may take: that time counts too."""
        eligible, _ = self._eligible(now)
        waits = [t.bucket.wait_time(now) for t in eligible if t.free > 0]
        ends = [t.down_until - now for t in self._trunks if t.down_until is not None and t.down_until > now]
        if not waits:
            return min(ends, default=None)
        return min(waits + ends)


def sip_timers(timeout_seconds: float) -> dict[str, str]:
    """PJSIP's ``timer_t1`` and ``timer_b`` (ms) for a trunk that does not
    answer an INVITE within ``timeout_seconds``: PJSIP refuses a timer B under
    64 x T1 (and a T1 under 100 ms), so T1 follows from the time-out wanted."""
    t1 = math.ceil(timeout_seconds * 1000 / 64)
    return {"sip_timer_t1": str(t1), "sip_timer_b": str(64 * t1)}
