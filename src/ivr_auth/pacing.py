"""Call pacing: a token bucket per trunk for calls per second. Pure logic:
the caller passes the time."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    burst: float  # most tokens held at once
    tokens: float = field(default=-1.0)
    updated_at: float = 0.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        if self.tokens < 0:
            self.tokens = self.burst

    def _refill(self, now: float) -> None:
        if now > self.updated_at:
            self.tokens = min(self.burst, self.tokens + (now - self.updated_at) * self.rate)
            self.updated_at = now

    def available(self, now: float) -> int:
        self._refill(now)
        return int(self.tokens)

    def take(self, now: float, count: int = 1) -> None:
        self._refill(now)
        if count > self.tokens + 1e-9:
            raise ValueError("not enough tokens")
        self.tokens -= count

    def spend(self, now: float) -> None:
        """One token spent that was granted elsewhere (a shared bucket): none
        are owed when this one is empty."""
        self._refill(now)
        self.tokens = max(0.0, self.tokens - 1)

    def wait_time(self, now: float) -> float:
        """Seconds until one token is available."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate
