"""Postgres, the single source of truth and the queue: one ``Store`` holds
the database (``database.Database``, the only code that reaches Postgres
and where psycopg's errors are translated) and one repository per concern,
each with its named queries in a ``.sql`` file of its own.
"""

from __future__ import annotations

from ivr_auth import crypto
from ivr_auth.store import (
    calls,
    controls,
    dashboard,
    database,
    gauges,
    operators,
    outbox,
    sms,
    tenants,
    trunk_state,
    usage,
    verifications,
)


class Store:
    """Built once: by the composition root, else with ``from_url`` and
    opened with ``async with`` (the CLI, the bench, the tests). ``keys``
    hash and seal what the repositories keep (codes, API keys, secrets)."""

    def __init__(self, db: database.Database, keys: crypto.Keys) -> None:
        self.db = db
        self.keys = keys
        self.tenants = tenants.Tenants(db, keys)
        self.verifications = verifications.Verifications(db, keys)
        self.calls = calls.Calls(db)
        self.outbox = outbox.Outbox(db, keys)
        self.controls = controls.Controls(db, self.tenants)
        self.operators = operators.Operators(db, keys)
        self.dashboard = dashboard.Dashboard(db)
        self.gauges = gauges.Gauges(db)
        self.usage = usage.Reports(db)
        self.trunk_state = trunk_state.TrunkStates(db)
        self.sms = sms.Sms(db, keys, self.verifications)

    @classmethod
    def from_url(
        cls,
        database_url: str,
        server_secret: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 30.0,
        name: str | None = None,
    ) -> Store:
        """A store not yet open; ``timeout``: how long a statement may wait for a pooled connection."""
        db = database.Database(database_url, min_size=min_size, max_size=max_size, timeout=timeout, name=name)
        return cls(db, crypto.Keys.from_secret(server_secret))

    async def open(self, *, wait: float | None = 10.0) -> None:
        """``wait``: seconds to wait for the first connection (else
        ``StoreUnavailable``); None: none, the pool connects by itself."""
        await self.db.open(wait=wait)

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- health ----------------------------------------------------------------------

    async def ping(self) -> None:
        await self.db.ping()
