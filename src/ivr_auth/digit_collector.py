"""Collecting keyed digits: a pure state machine, fed digits and the time.

The caller owns the clock and the waiting: it feeds each DTMF digit with the
time it arrived and asks for the deadline of the next one. Rules follow the
habits of phone IVRs: ``#`` ends entry early, ``*`` starts the entry again,
and the first digit may take longer than the gaps between later ones.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

DIGITS = frozenset("0123456789")
KEYS = DIGITS | {"*", "#", "A", "B", "C", "D"}


class Ended(enum.Enum):
    MAX_DIGITS = "max_digits"
    TERMINATOR = "terminator"
    TIMEOUT = "timeout"
    HANGUP = "hangup"


@dataclass
class DigitCollector:
    max_digits: int
    started_at: float
    first_digit_timeout: float = 10.0
    inter_digit_timeout: float = 5.0
    terminator: str | None = "#"
    clear_key: str | None = "*"
    digits: list[str] = field(default_factory=list)
    last_key_at: float | None = None
    ended: Ended | None = None

    def __post_init__(self) -> None:
        if self.max_digits < 1:
            raise ValueError("max_digits must be at least 1")
        if self.terminator is not None and self.terminator == self.clear_key:
            raise ValueError("terminator and clear_key must differ")

    @property
    def done(self) -> bool:
        return self.ended is not None

    @property
    def value(self) -> str:
        return "".join(self.digits)

    def deadline(self) -> float:
        """When entry times out if no further key arrives."""
        if self.last_key_at is None:
            return self.started_at + self.first_digit_timeout
        return self.last_key_at + self.inter_digit_timeout

    def feed(self, key: str, now: float) -> bool:
        """Take one key; True once entry has ended."""
        if self.done:
            return True
        if key not in KEYS:
            raise ValueError(f"not a DTMF key: {key!r}")
        # A key that did arrive always counts, even past the deadline: only
        # tick() ends entry for lack of keys. (While a prompt plays the clock
        # has not really started, and a key at the edge is still the caller's.)
        self.last_key_at = now
        if key == self.terminator:
            self.ended = Ended.TERMINATOR
        elif key == self.clear_key:
            self.digits.clear()
        elif key in DIGITS:
            self.digits.append(key)
            if len(self.digits) >= self.max_digits:
                self.ended = Ended.MAX_DIGITS
        return self.done

    def tick(self, now: float) -> bool:
        """Note that time has passed; True once entry has ended."""
        if not self.done and now >= self.deadline():
            self.ended = Ended.TIMEOUT
        return self.done

    def hangup(self) -> None:
        if not self.done:
            self.ended = Ended.HANGUP

    def restart(self, now: float) -> None:
        """Start the first-key clock again (the prompt has just ended)."""
        if not self.done and self.last_key_at is None:
            self.started_at = now
