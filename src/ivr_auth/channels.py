"""A request's channels: the ordered list of ways it tries to reach the
person (an SMS, then a call, ...), each after a wait. Pure logic, no I/O;
the store moves a request from one channel to the next."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

# The channels a list may name, and those that place a call.
CHANNELS = ("sms", "voice", "dtmf")
CALLING = frozenset({"dtmf", "voice"})
MAX_STEPS = 4


@dataclasses.dataclass(frozen=True)
class Step:
    channel: str
    # Seconds after the previous channel started (0 for the first): the
    # request moves on then if it is still unverified, or sooner when the
    # previous channel failed.
    after_seconds: int = 0
    # Calls this channel may place (dtmf, voice): the request's
    # max_call_attempts, for each call channel of its own.
    max_call_attempts: int | None = None

    def public(self) -> dict[str, Any]:
        return {"channel": self.channel, "after_seconds": self.after_seconds}


class InvalidChannels(ValueError):
    """Raised with a message naming the entry at fault."""


def parse(raw: Any, *, ttl_seconds: int, max_call_attempts: int) -> tuple[Step, ...]:
    """The API's ``channels``: a list of ``{"channel": ..., "after_seconds": ...}``."""
    if not isinstance(raw, list) or not raw:
        raise InvalidChannels('channels must be a non-empty list such as [{"channel": "sms"}]')
    if len(raw) > MAX_STEPS:
        raise InvalidChannels(f"channels may name at most {MAX_STEPS} channels")
    steps: list[Step] = []
    start = 0
    for i, entry in enumerate(raw):
        where = f"channels[{i}]"
        if isinstance(entry, str):
            entry = {"channel": entry}
        if not isinstance(entry, Mapping):
            raise InvalidChannels(f'{where} must be an object such as {{"channel": "voice", "after_seconds": 60}}')
        unknown = set(entry) - {"channel", "after_seconds"}
        if unknown:
            raise InvalidChannels(f"{where} has unknown field(s): {', '.join(sorted(unknown))}")
        channel = entry.get("channel")
        if channel not in CHANNELS:
            raise InvalidChannels(f"{where}.channel must be one of {', '.join(CHANNELS)}")
        after = entry.get("after_seconds", 0)
        if isinstance(after, bool) or not isinstance(after, int):
            raise InvalidChannels(f"{where}.after_seconds must be a whole number of seconds")
        if i == 0 and after != 0:
            raise InvalidChannels("channels[0] starts at once: leave its after_seconds out")
        if i > 0 and after < 5:
            raise InvalidChannels(f"{where}.after_seconds must be at least 5 (the previous channel's time)")
        if i > 0 and steps[-1].channel == channel and channel != "sms":
            raise InvalidChannels(f"{where} repeats the channel before it; a call channel retries by itself")
        start += after
        if start >= ttl_seconds:
            raise InvalidChannels(
                f"{where} would start {start} s after the request, at or after its ttl_seconds ({ttl_seconds})"
            )
        steps.append(Step(channel, after, max_call_attempts if channel in CALLING else None))
    return tuple(steps)


def to_json(steps: Sequence[Step] | None) -> str | None:
    if not steps:
        return None
    return json.dumps(
        [
            {"channel": s.channel, "after_seconds": s.after_seconds}
            | ({"max_call_attempts": s.max_call_attempts} if s.max_call_attempts is not None else {})
            for s in steps
        ]
    )


def from_json(raw: Any) -> tuple[Step, ...] | None:
    """From the row's jsonb (psycopg gives lists and dicts)."""
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = json.loads(raw)
    return tuple(Step(str(e["channel"]), int(e.get("after_seconds", 0)), e.get("max_call_attempts")) for e in raw)


def calls(steps: Sequence[Step]) -> bool:
    return any(s.channel in CALLING for s in steps)


def texts(steps: Sequence[Step]) -> bool:
    return any(s.channel == "sms" for s in steps)
