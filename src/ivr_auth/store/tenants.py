"""Tenants in Postgres: their settings, API keys (kept as keyed hashes)
and webhook secrets (sealed: signing needs them in clear)."""

from __future__ import annotations

import dataclasses
import hmac
import uuid

from ivr_auth import crypto, errors, models
from ivr_auth.store import database, sql
from ivr_auth.store.base import Base, Row


@dataclasses.dataclass(frozen=True)
class TenantChanges:
    """What ``update_tenant`` changes; None leaves a setting as it is."""

    caller_id: str | None = None
    clear_caller_id: bool = False
    default_language: str | None = None
    voice_require_key: bool | None = None
    inbound_numbers: tuple[str, ...] | None = None
    missed_call: bool | None = None
    # Caller IDs (E.164) presented in turn; () clears the pool.
    caller_id_pool: tuple[str, ...] | None = None


class Tenants(Base):
    # --- tenants ---------------------------------------------------------------------

    async def create_tenant(
        self, name: str, *, caller_id: str | None = None, default_language: str | None = None
    ) -> tuple[models.Tenant, str]:
        """A new tenant and its first API key (shown once, stored hashed)."""
        async with self.connection() as conn, conn.transaction():
            try:
                row = await conn.one(
                    sql.query("create_tenant"),
                    {"name": name, "caller_id": caller_id, "default_language": default_language},
                )
            except errors.Duplicate as exc:
                raise errors.Conflict(f"a tenant named {name!r} exists already") from exc
            assert row is not None
            tenant = models.Tenant.from_row(row)
            key = await self._add_key(conn, tenant.id)
            await self._seal_webhook_secret(conn, tenant.id, crypto.generate_secret())
        return tenant, key

    async def rotate_webhook_secret(self, tenant_name: str) -> str:
        """A new webhook signing secret for the tenant (shown once; the old one stops at once)."""
        secret = crypto.generate_secret()
        async with self.connection() as conn, conn.transaction():
            await self._seal_webhook_secret(conn, await self._id_by_name(conn, tenant_name), secret)
        return secret

    async def webhook_secret(self, tenant_id: uuid.UUID) -> str | None:
        row = await self._one("tenant_by_id", {"id": tenant_id})
        if row is None or row["webhook_secret_sealed"] is None:
            return None
        return self.keys.unseal(tenant_id, bytes(row["webhook_secret_sealed"]))

    async def _seal_webhook_secret(self, conn: database.Connection, tenant_id: uuid.UUID, secret: str) -> None:
        await conn.execute(
            sql.query("set_webhook_secret"), {"id": tenant_id, "sealed": self.keys.seal(tenant_id, secret)}
        )

    async def add_api_key(self, tenant_name: str) -> str:
        async with self.connection() as conn, conn.transaction():
            return await self._add_key(conn, await self._id_by_name(conn, tenant_name))

    async def tenant_by_name(self, name: str) -> models.Tenant:
        async with self.connection() as conn:
            return models.Tenant.from_row(await self._row_by_name(conn, name))

    async def _id_by_name(self, conn: database.Connection, name: str) -> uuid.UUID:
        tenant_id: uuid.UUID = (await self._row_by_name(conn, name))["id"]
        return tenant_id

    async def _row_by_name(self, conn: database.Connection, name: str) -> Row:
        row = await conn.one(sql.query("tenant_by_name"), {"name": name})
        if row is None:
            raise errors.NotFound(f"no tenant named {name!r}")
        return row

    async def _add_key(self, conn: database.Connection, tenant_id: uuid.UUID) -> str:
        key, prefix = crypto.new_api_key()
        await conn.execute(
            sql.query("create_api_key"),
            {"tenant_id": tenant_id, "prefix": prefix, "key_hash": self.keys.api_key_hash(key)},
        )
        return key

    async def update_tenant(self, name: str, changes: TenantChanges) -> models.Tenant:
        row = await self._one(
            "update_tenant",
            {
                "name": name,
                "set_caller_id": changes.caller_id is not None or changes.clear_caller_id,
                "caller_id": changes.caller_id,
                "set_default_language": changes.default_language is not None,
                "default_language": changes.default_language,
                "voice_require_key": changes.voice_require_key,
                "inbound_numbers": list(changes.inbound_numbers) if changes.inbound_numbers is not None else None,
                "missed_call": changes.missed_call,
                "caller_id_pool": list(changes.caller_id_pool) if changes.caller_id_pool is not None else None,
            },
        )
        if row is None:
            raise errors.NotFound(f"no tenant named {name!r}")
        return models.Tenant.from_row(row)

    async def next_pool_caller_id(self, tenant_id: uuid.UUID) -> str | None:
        """The next caller ID of the tenant's pool, in turn across every
        controller; None when it has no pool."""
        row = await self._one("next_pool_caller_id", {"id": tenant_id})
        return str(row["caller_id"]) if row is not None else None

    async def tenants_for_did(self, did: str, *, shared: bool) -> list[models.Tenant]:
        """Tenants whose users call ``did`` (E.164); ``shared`` when the number
        is one of the config's numbers (then tenants with none of their own too)."""
        return [models.Tenant.from_row(r) for r in await self._all("tenants_for_did", {"did": did, "shared": shared})]

    async def tenant(self, tenant_id: uuid.UUID) -> models.Tenant:
        row = await self._one("tenant_by_id", {"id": tenant_id})
        if row is None:
            raise errors.NotFound(f"no tenant {tenant_id}")
        return models.Tenant.from_row(row)

    async def tenant_for_key(self, api_key: str) -> models.Tenant | None:
        prefix = crypto.api_key_prefix(api_key)
        if prefix is None:
            return None
        row = await self._one("api_key_by_prefix", {"prefix": prefix})
        if row is None:
            return None
        if not hmac.compare_digest(bytes(row["key_hash"]), self.keys.api_key_hash(api_key)):
            return None
        return models.Tenant.from_row(row)
