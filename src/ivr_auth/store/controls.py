"""Tenant controls in Postgres: limits, API keys, the operator's event log
(refusals, alarms, purges), retention purges and prefix alarms."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Mapping
from typing import Any

from ivr_auth import errors, models
from ivr_auth.store import database, sql, tenants

QUERIES = sql.load("controls.sql")
# A limit given as this is cleared back to the config's default.
DEFAULT = -1


@dataclasses.dataclass(frozen=True)
class LimitChanges:
    """None leaves a setting as it is; ``DEFAULT`` (-1) goes back to the
    config's, and so do no line types, ``()``."""

    allowed_countries: tuple[str, ...] | None = None
    allowed_prefixes: tuple[str, ...] | None = None
    allowed_line_types: tuple[str, ...] | None = None
    requests_per_minute: int | None = None
    sends_per_phone: int | None = None
    sends_per_phone_window_seconds: int | None = None
    daily_call_budget: int | None = None
    failure_cooldown_seconds: int | None = None
    retention_days: int | None = None
    daily_sms_budget: int | None = None


INT_LIMITS = (
    "requests_per_minute",
    "sends_per_phone",
    "sends_per_phone_window_seconds",
    "daily_call_budget",
    "failure_cooldown_seconds",
    "retention_days",
    "daily_sms_budget",
)


@dataclasses.dataclass(frozen=True)
class TenantEvent:
    """One line of the operator's log: a refusal, an alarm, a revoked key."""

    id: int
    at: dt.datetime
    type: str
    detail: dict[str, Any]

    @classmethod
    def from_row(cls, row: database.Row) -> TenantEvent:
        return cls(row["id"], row["at"], row["type"], row["detail"])


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """A tenant's API key as the operator sees it: its prefix, never the key."""

    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: database.Row) -> ApiKey:
        return cls(row["prefix"], row["created_at"], row["revoked_at"])


@dataclasses.dataclass(frozen=True)
class PrefixAlarm:
    """Calls to numbers starting with ``prefix`` in the window, and how many of them verified."""

    prefix: str
    placed: int
    verified: int

    @classmethod
    def from_row(cls, row: database.Row) -> PrefixAlarm:
        return cls(row["prefix"], row["placed"], row["verified"])


class Controls:
    def __init__(self, db: database.Database, tenants: tenants.Tenants) -> None:
        self._db = db
        self._tenants = tenants

    async def set_limits(self, name: str, changes: LimitChanges) -> models.Tenant:
        tenant = await self._tenants.by_name(name)
        params: dict[str, Any] = {
            "id": tenant.id,
            "allowed_countries": list(changes.allowed_countries) if changes.allowed_countries is not None else None,
            "allowed_prefixes": list(changes.allowed_prefixes) if changes.allowed_prefixes is not None else None,
            "set_allowed_line_types": changes.allowed_line_types is not None,
            "allowed_line_types": list(changes.allowed_line_types or ()) or None,
        }
        for key in INT_LIMITS:
            value = getattr(changes, key)
            params[f"set_{key}"] = value is not None
            params[key] = None if value is None or value == DEFAULT else value
        row = await self._db.one(QUERIES["update_tenant_limits"], params)
        assert row is not None
        return models.Tenant.from_row(row)

    async def log(self, tenant_id: uuid.UUID | None, kind: str, detail: Mapping[str, Any]) -> None:
        await self._db.one(
            QUERIES["log_tenant_event"],
            {"tenant_id": tenant_id, "type": kind, "detail": json.dumps(detail, default=str)},
        )

    async def events(self, tenant_id: uuid.UUID, *, limit: int = 50, with_global: bool = True) -> list[TenantEvent]:
        """Newest first; ``with_global``: also the service-wide ones (prefix alarms)."""
        rows = await self._db.all(
            QUERIES["tenant_events_for"], {"tenant_id": tenant_id, "with_global": with_global, "limit": limit}
        )
        return [TenantEvent.from_row(r) for r in rows]

    async def api_keys(self, name: str) -> list[ApiKey]:
        tenant = await self._tenants.by_name(name)
        return [ApiKey.from_row(r) for r in await self._db.all(QUERIES["api_keys_for"], {"tenant_id": tenant.id})]

    async def revoke_api_key(self, name: str, prefix: str) -> None:
        """A revoked key is refused from the next request on."""
        tenant = await self._tenants.by_name(name)
        if not await self._db.all(QUERIES["revoke_api_key"], {"tenant_id": tenant.id, "prefix": prefix}):
            raise errors.NotFound(f"tenant {name!r} has no active API key with prefix {prefix!r}")
        await self.log(tenant.id, "api_key_revoked", {"prefix": prefix})

    async def purge(self, default_days: int, *, batch: int = 500) -> int:
        """Anonymise finished requests past their retention (in batches until
        none is left) and drop old operator events; returns requests purged."""
        total = 0
        while True:
            rows = await self._db.all(QUERIES["purge_finished"], {"default_days": default_days, "limit": batch})
            total += len(rows)
            if len(rows) < batch:
                break
        await self._db.one(QUERIES["purge_tenant_events"], {"default_days": default_days})
        return total

    async def prefix_alarms(
        self, *, digits: int, window_seconds: int, min_calls: int, max_ratio: float
    ) -> list[PrefixAlarm]:
        """Prefixes being called a lot with few verified (call pumping), each
        logged once per window as a service-wide ``prefix_alarm`` event."""
        rows = await self._db.all(
            QUERIES["prefix_alarms"],
            {"length": digits + 1, "window": window_seconds, "min_calls": min_calls, "max_ratio": max_ratio},
        )
        found = [PrefixAlarm.from_row(r) for r in rows]
        for alarm in found:
            await self.log(None, "prefix_alarm", {**dataclasses.asdict(alarm), "window_seconds": window_seconds})
        return found
