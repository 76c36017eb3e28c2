"""The API keys this process found lately, and their tenants, so that a
request does not ask Postgres who sent it. Trusted only while the process's
LISTEN connection is up: every statement that revokes a key or changes a
tenant sends a NOTIFY (``tenants.TENANTS_CHANNEL``) that drops the tenant's
entries here at once (``api.listener``). While that connection is down the
cache is bypassed, and it is emptied when the connection comes back.

Keyed by the key's keyed hash (``crypto.Keys.api_key_hash``, the one the
store compares), never by the key. Only keys found are kept: an unknown key
always asks Postgres."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from ivr_auth import models

# Entries at most; the oldest goes first. Far more than the keys that send
# requests within one TTL in any installation we know of.
MAX_ENTRIES = 4096


class KeyCache:
    def __init__(
        self, ttl: float, *, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """``ttl``: seconds an entry is trusted; 0 keeps nothing."""
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[bytes, tuple[float, models.Tenant]] = {}
        # Trusted only while invalidations can reach it (the listener's connection is up).
        self._live = False
        # Bumped by every invalidation: a lookup that began before one may not store what it read.
        self._generation = 0

    @property
    def enabled(self) -> bool:
        return self._ttl > 0 and self._live

    @property
    def generation(self) -> int:
        """Read before asking Postgres; hand it to ``put``."""
        return self._generation

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key_hash: bytes) -> models.Tenant | None:
        if not self.enabled:
            return None
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        expires, tenant = entry
        if self._clock() >= expires:
            del self._entries[key_hash]
            return None
        return tenant

    def put(self, key_hash: bytes, tenant: models.Tenant, generation: int) -> None:
        """Keep what a lookup found, unless an invalidation came in while it
        ran (the row it read may be the one just revoked)."""
        if not self.enabled or generation != self._generation:
            return
        self._entries.pop(key_hash, None)
        while len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key_hash] = (self._clock() + self._ttl, tenant)

    def drop_tenant(self, tenant_id: uuid.UUID) -> None:
        self._generation += 1
        for key_hash in [h for h, (_, t) in self._entries.items() if t.id == tenant_id]:
            del self._entries[key_hash]

    def live(self) -> None:
        """Invalidations reach the cache again: trust it, starting empty."""
        self.clear()
        self._live = True

    def dead(self) -> None:
        """Invalidations no longer reach the cache: every lookup asks Postgres."""
        self._live = False
        self.clear()

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
