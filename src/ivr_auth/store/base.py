"""The Store's plumbing: the database and the server keys."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ivr_auth import crypto
from ivr_auth.store import database, sql

Row = database.Row


class Base:
    def __init__(self, db: database.Database, keys: crypto.Keys) -> None:
        self.db = db
        self.keys = keys

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[database.Connection]:
        async with self.db.connection() as conn:
            yield conn

    async def _one(self, name: str, params: Mapping[str, Any] | None = None) -> Row | None:
        return await self.db.one(sql.query(name), params)

    async def _all(self, name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return await self.db.all(sql.query(name), params)
