"""The Store's plumbing: a connection pool, the server keys, and pooled
connections that translate psycopg errors at the boundary (into
``errors.StoreError`` / ``StoreUnavailable``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ivr_auth import crypto, errors
from ivr_auth.store import sql

Row = dict[str, Any]


class Reader(Protocol):
    """Runs one of a set of named queries; its rows."""

    async def __call__(self, name: str, params: Mapping[str, Any] | None = None) -> list[Row]: ...


class Base:
    def __init__(self, pool: AsyncConnectionPool[Any], keys: crypto.Keys) -> None:
        self.pool = pool
        self.keys = keys
        self._checking: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        """A pooled connection; psycopg errors leave as StoreError / StoreUnavailable."""
        try:
            async with self.pool.connection() as conn:
                conn.row_factory = dict_row
                yield conn
        except psycopg.OperationalError as exc:
            self._check_pool()
            raise errors.StoreUnavailable(f"database unavailable: {exc}") from exc
        except TimeoutError as exc:  # pool exhausted or database gone
            raise errors.StoreUnavailable("database unavailable: no connection within the pool timeout") from exc
        except psycopg.Error as exc:
            raise errors.StoreError(f"database error: {type(exc).__name__}: {exc}") from exc

    def _check_pool(self) -> None:
        """A Postgres restart leaves every idle connection in the pool broken,
        and the pool would find out one checkout (one failed call) at a time:
        have it test them all now, and replace the broken ones."""
        if self._checking is None or self._checking.done():
            self._checking = asyncio.get_running_loop().create_task(self._check(), name="pool-check")

    async def _check(self) -> None:
        with contextlib.suppress(Exception):  # still down, or the pool closed: it reconnects by itself
            await self.pool.check()

    @contextlib.asynccontextmanager
    async def bounded_reads(self, queries: Mapping[str, str], timeout: float) -> AsyncIterator[Reader]:
        """One transaction whose statements are each cut off after
        ``timeout`` seconds (a scrape, a page): yields ``rows(name, params)``
        over the named ``queries``."""
        async with self.connection() as conn, conn.transaction():
            await conn.execute(sql.query("statement_timeout"), {"timeout_ms": str(max(1, int(timeout * 1000)))})

            async def rows(name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
                return await (await conn.execute(queries[name], params or {})).fetchall()

            yield rows

    async def _one(self, name: str, params: Mapping[str, Any] | None = None) -> Row | None:
        async with self.connection() as conn:
            cur = await conn.execute(sql.query(name), params or {})
            return await cur.fetchone() if cur.description else None

    async def _all(self, name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        async with self.connection() as conn:
            cur = await conn.execute(sql.query(name), params or {})
            return await cur.fetchall() if cur.description else []
