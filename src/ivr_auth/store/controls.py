"""Tenant controls in Postgres: limits, API keys, the operator's event log
(refusals, alarms, purges), retention purges and prefix alarms."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping
from typing import Any

from ivr_auth import errors, models
from ivr_auth.store import sql, tenants

Row = dict[str, Any]
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


INT_LIMITS = (
    "requests_per_minute",
    "sends_per_phone",
    "sends_per_phone_window_seconds",
    "daily_call_budget",
    "failure_cooldown_seconds",
    "retention_days",
)


class Controls:
    def __init__(self, store: tenants.Tenants) -> None:
        self._store = store

    async def _all(self, name: str, params: Mapping[str, Any]) -> list[Row]:
        return await self._store.db.all(sql.query(name), params)

    async def tenant_by_name(self, name: str) -> models.Tenant:
        return await self._store.tenant_by_name(name)

    async def set_limits(self, name: str, changes: LimitChanges) -> models.Tenant:
        tenant = await self.tenant_by_name(name)
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
        (row,) = await self._all("update_tenant_limits", params)
        return models.Tenant.from_row(row)

    async def log(self, tenant_id: uuid.UUID | None, kind: str, detail: Mapping[str, Any]) -> None:
        await self._all(
            "log_tenant_event", {"tenant_id": tenant_id, "type": kind, "detail": json.dumps(detail, default=str)}
        )

    async def events(self, tenant_id: uuid.UUID, *, limit: int = 50, with_global: bool = True) -> list[Row]:
        """Newest first; ``with_global``: also the service-wide ones (prefix alarms)."""
        return await self._all(
            "tenant_events_for", {"tenant_id": tenant_id, "with_global": with_global, "limit": limit}
        )

    async def api_keys(self, name: str) -> list[Row]:
        tenant = await self.tenant_by_name(name)
        return await self._all("api_keys_for", {"tenant_id": tenant.id})

    async def revoke_api_key(self, name: str, prefix: str) -> None:
        """A revoked key is refused from the next request on."""
        tenant = await self.tenant_by_name(name)
        if not await self._all("revoke_api_key", {"tenant_id": tenant.id, "prefix": prefix}):
            raise errors.NotFound(f"tenant {name!r} has no active API key with prefix {prefix!r}")
        await self.log(tenant.id, "api_key_revoked", {"prefix": prefix})

    async def purge(self, default_days: int, *, batch: int = 500) -> int:
        """Anonymise finished requests past their retention (in batches until
        none is left) and drop old operator events; returns requests purged."""
        total = 0
        while True:
            rows = await self._all("purge_finished", {"default_days": default_days, "limit": batch})
            total += len(rows)
            if len(rows) < batch:
                break
        await self._all("purge_tenant_events", {"default_days": default_days})
        return total

    async def prefix_alarms(self, *, digits: int, window_seconds: int, min_calls: int, max_ratio: float) -> list[Row]:
        """Prefixes being called a lot with few verified (call pumping), each
        logged once per window as a service-wide ``prefix_alarm`` event."""
        found = await self._all(
            "prefix_alarms",
            {"length": digits + 1, "window": window_seconds, "min_calls": min_calls, "max_ratio": max_ratio},
        )
        for alarm in found:
            await self.log(None, "prefix_alarm", {**alarm, "window_seconds": window_seconds})
        return found
