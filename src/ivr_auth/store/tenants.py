"""Tenants in Postgres: their settings, API keys (kept as keyed hashes)
and webhook secrets (sealed: signing needs them in clear)."""

from __future__ import annotations

import dataclasses
import hmac
import uuid

from ivr_auth import crypto, errors, models
from ivr_auth.store import database, sql

QUERIES = sql.load("tenants.sql")
# Every statement that changes a tenant's row or its API keys announces it
# here, the tenant's id as the payload (the API drops its cached keys).
TENANTS_CHANNEL = "ivr_auth_tenants"


@dataclasses.dataclass(frozen=True)
class TenantChanges:
    """What ``Tenants.update`` changes; None leaves a setting as it is."""

    caller_id: str | None = None
    clear_caller_id: bool = False
    default_language: str | None = None
    voice_require_key: bool | None = None
    inbound_numbers: tuple[str, ...] | None = None
    missed_call: bool | None = None
    # Caller IDs (E.164) presented in turn; () clears the pool.
    caller_id_pool: tuple[str, ...] | None = None


class Tenants:
    def __init__(self, db: database.Database, keys: crypto.Keys) -> None:
        self._db = db
        self._keys = keys

    async def create(
        self, name: str, *, caller_id: str | None = None, default_language: str | None = None
    ) -> tuple[models.Tenant, str]:
        """A new tenant and its first API key (shown once, stored hashed)."""
        async with self._db.transaction() as conn:
            try:
                row = await conn.one(
                    QUERIES["create_tenant"],
                    {"name": name, "caller_id": caller_id, "default_language": default_language},
                )
            except errors.Duplicate as exc:
                raise errors.Conflict(f"a tenant named {name!r} exists already") from exc
            assert row is not None
            tenant = models.Tenant.from_row(row)
            key = await self._add_key(conn, tenant.id)
            await self._seal_webhook_secret(conn, tenant.id, crypto.generate_secret())
        return tenant, key

    async def get(self, tenant_id: uuid.UUID) -> models.Tenant:
        row = await self._db.one(QUERIES["tenant_by_id"], {"id": tenant_id})
        if row is None:
            raise errors.NotFound(f"no tenant {tenant_id}")
        return models.Tenant.from_row(row)

    async def by_name(self, name: str) -> models.Tenant:
        async with self._db.connection() as conn:
            return await self._by_name(conn, name)

    async def for_key(self, api_key: str) -> models.Tenant | None:
        """The tenant whose active API key this is; None for any other string."""
        prefix = crypto.api_key_prefix(api_key)
        if prefix is None:
            return None
        row = await self._db.one(QUERIES["api_key_by_prefix"], {"prefix": prefix})
        if row is None:
            return None
        if not hmac.compare_digest(bytes(row["key_hash"]), self._keys.api_key_hash(api_key)):
            return None
        return models.Tenant.from_row(row)

    async def for_did(self, did: str, *, shared: bool) -> list[models.Tenant]:
        """Tenants whose users call ``did`` (E.164); ``shared`` when the number
        is one of the config's numbers (then tenants with none of their own too)."""
        rows = await self._db.all(QUERIES["tenants_for_did"], {"did": did, "shared": shared})
        return [models.Tenant.from_row(r) for r in rows]

    async def update(self, name: str, changes: TenantChanges) -> models.Tenant:
        row = await self._db.one(
            QUERIES["update_tenant"],
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
        row = await self._db.one(QUERIES["next_pool_caller_id"], {"id": tenant_id})
        return str(row["caller_id"]) if row is not None else None

    # --- secrets ---------------------------------------------------------------------

    async def add_api_key(self, tenant_name: str) -> str:
        async with self._db.transaction() as conn:
            tenant = await self._by_name(conn, tenant_name)
            return await self._add_key(conn, tenant.id)

    async def webhook_secret(self, tenant_id: uuid.UUID) -> str | None:
        row = await self._db.one(QUERIES["tenant_by_id"], {"id": tenant_id})
        if row is None or row["webhook_secret_sealed"] is None:
            return None
        return self._keys.unseal(tenant_id, bytes(row["webhook_secret_sealed"]))

    async def rotate_webhook_secret(self, tenant_name: str) -> str:
        """A new webhook signing secret for the tenant (shown once; the old one stops at once)."""
        secret = crypto.generate_secret()
        async with self._db.transaction() as conn:
            tenant = await self._by_name(conn, tenant_name)
            await self._seal_webhook_secret(conn, tenant.id, secret)
        return secret

    async def _by_name(self, conn: database.Connection, name: str) -> models.Tenant:
        row = await conn.one(QUERIES["tenant_by_name"], {"name": name})
        if row is None:
            raise errors.NotFound(f"no tenant named {name!r}")
        return models.Tenant.from_row(row)

    async def _add_key(self, conn: database.Connection, tenant_id: uuid.UUID) -> str:
        key, prefix = crypto.new_api_key()
        await conn.execute(
            QUERIES["create_api_key"],
            {"tenant_id": tenant_id, "prefix": prefix, "key_hash": self._keys.api_key_hash(key)},
        )
        return key

    async def _seal_webhook_secret(self, conn: database.Connection, tenant_id: uuid.UUID, secret: str) -> None:
        await conn.execute(
            QUERIES["set_webhook_secret"], {"id": tenant_id, "sealed": self._keys.seal(tenant_id, secret)}
        )
