"""Postgres as ivr-auth reaches it: one connection pool, the store's named
queries run on it, and dedicated connections for what a pool cannot hold (a
LISTEN, a doctor's probe). psycopg's errors, and the pool's, are translated
here, where they enter, into ``errors.StoreError`` and its branches; no other
module of the service imports psycopg."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql as pg_sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ivr_auth import errors
from ivr_auth.store import sql

Row = dict[str, Any]
Params = Mapping[str, Any]

QUERIES = sql.load("database.sql")
# How long a dedicated connection may take to open.
CONNECT_TIMEOUT_SECONDS = 5.0
# A LISTEN connection without a notification for this long is probed.
LISTEN_PROBE_SECONDS = 30.0


def translate(exc: Exception) -> errors.StoreError:
    """Our error for one of psycopg's (or the pool's); raise it ``from exc``."""
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return errors.Duplicate(f"database error: {type(exc).__name__}: {exc}")
    if isinstance(exc, psycopg.OperationalError):  # the pool's PoolTimeout too
        return errors.StoreUnavailable(f"database unavailable: {exc}")
    if isinstance(exc, TimeoutError):
        return errors.StoreUnavailable("database unavailable: no connection within the pool timeout")
    return errors.StoreError(f"database error: {type(exc).__name__}: {exc}")


@dataclasses.dataclass(frozen=True)
class Notification:
    channel: str
    payload: str


class Connection:
    """One connection, pooled or dedicated, whose statements raise
    ``errors.StoreError`` (never psycopg's errors). Rows are dicts by column
    name; the repositories turn them into typed rows."""

    def __init__(self, conn: psycopg.AsyncConnection[Row], broken: Callable[[], None]) -> None:
        self._conn = conn
        self._broken = broken

    @property
    def backend_pid(self) -> int:
        return self._conn.info.backend_pid

    async def one(self, query: str, params: Params | None = None) -> Row | None:
        """The first row, or None (also for a statement that returns none)."""
        with self._translated():
            cur = await self._conn.execute(query, params or {})
            return await cur.fetchone() if cur.description else None

    async def all(self, query: str, params: Params | None = None) -> list[Row]:
        with self._translated():
            cur = await self._conn.execute(query, params or {})
            return await cur.fetchall() if cur.description else []

    async def execute(self, query: str | pg_sql.Composed, params: Params | None = None) -> None:
        with self._translated():
            await self._conn.execute(query, params or {})

    async def script(self, text: str) -> None:
        """Several statements without parameters (a migration), sent as one simple query."""
        with self._translated():
            await self._conn.execute(text.encode())

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A transaction on this connection (a savepoint inside another)."""
        with self._translated():
            async with self._conn.transaction():
                yield self

    async def notifications(self, probe_seconds: float) -> AsyncGenerator[Notification, None]:
        """The NOTIFYs of the channels this connection listens to, without
        end; ``SELECT 1`` after each ``probe_seconds`` without one, so that a
        connection that died quietly is found out."""
        while True:
            with self._translated():
                async for note in self._conn.notifies(timeout=probe_seconds):
                    yield Notification(note.channel, note.payload)
            await self.one(QUERIES["ping"])

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except (psycopg.Error, TimeoutError) as exc:
            if isinstance(exc, psycopg.OperationalError):
                self._broken()
            raise translate(exc) from exc


class Database:
    """The service's Postgres: built once by the composition root (or by
    ``store.Store.from_url``, the one way to open it), opened, and closed
    at the end."""

    def __init__(
        self, url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 30.0, name: str | None = None
    ) -> None:
        """``timeout``: how long a statement may wait for a pooled connection."""
        self.url = url
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            open=False,
            name=name,
            # A single statement commits by itself: no BEGIN/COMMIT round
            # trips around it. Several that must be atomic use transaction().
            kwargs={"autocommit": True, **_application_name(url, name)},
        )
        self._checking: asyncio.Task[None] | None = None

    async def open(self, *, wait: float | None = 10.0) -> None:
        """Start the pool; with ``wait``, until it has its first connections
        (else ``StoreUnavailable`` after that many seconds). ``None``: return
        at once, the pool connecting (and reconnecting) by itself."""
        try:
            await self._pool.open(wait=wait is not None, timeout=wait or 0.0)
        except psycopg.Error as exc:  # the pool closed itself
            raise translate(exc) from exc

    async def close(self, timeout: float = 5.0) -> None:
        await self._pool.close(timeout=timeout)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection in autocommit: each statement commits by itself
        (``transaction()`` for several that must be atomic)."""
        try:
            async with self._pool.connection() as conn:
                conn.row_factory = dict_row
                yield Connection(conn, self._check_pool)
        except (psycopg.Error, TimeoutError) as exc:
            if isinstance(exc, psycopg.OperationalError):
                self._check_pool()
            raise translate(exc) from exc

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    @contextlib.asynccontextmanager
    async def bounded(self, timeout: float) -> AsyncIterator[Connection]:
        """A transaction whose statements are each cut off after ``timeout``
        seconds (a scrape, a page)."""
        async with self.transaction() as conn:
            await conn.execute(QUERIES["statement_timeout"], {"timeout_ms": str(max(1, int(timeout * 1000)))})
            yield conn

    async def one(self, query: str, params: Params | None = None) -> Row | None:
        """One statement on a pooled connection."""
        async with self.connection() as conn:
            return await conn.one(query, params)

    async def all(self, query: str, params: Params | None = None) -> list[Row]:
        async with self.connection() as conn:
            return await conn.all(query, params)

    async def ping(self) -> None:
        await self.one(QUERIES["ping"])

    @contextlib.asynccontextmanager
    async def dedicated(self, *, connect_timeout: float = CONNECT_TIMEOUT_SECONDS) -> AsyncIterator[Connection]:
        """A connection of its own, outside the pool, in autocommit (each
        statement commits; ``transaction()`` for more), closed at the end."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=max(1, round(connect_timeout)), row_factory=dict_row
            )
        except psycopg.Error as exc:
            raise translate(exc) from exc
        try:
            async with conn:
                yield Connection(conn, _nothing)
        except psycopg.Error as exc:  # closing it
            raise translate(exc) from exc

    @contextlib.asynccontextmanager
    async def listen(
        self, channels: Sequence[str], *, probe_seconds: float = LISTEN_PROBE_SECONDS
    ) -> AsyncIterator[AsyncIterator[Notification]]:
        """LISTEN to ``channels`` on a dedicated connection (a pooled one goes
        back to the pool, and its LISTEN with it); yields the notifications,
        which end only with ``StoreUnavailable`` when the connection is lost."""
        async with self.dedicated() as conn:
            for channel in channels:
                await conn.execute(pg_sql.SQL("LISTEN {}").format(pg_sql.Identifier(channel)))
            async with contextlib.aclosing(conn.notifications(probe_seconds)) as notes:
                yield notes

    def _check_pool(self) -> None:
        """A Postgres restart leaves every idle connection in the pool broken,
        and the pool would find out one checkout (one failed call) at a time:
        have it test them all now, and replace the broken ones."""
        if self._checking is None or self._checking.done():
            self._checking = asyncio.get_running_loop().create_task(self._check(), name="pool-check")

    async def _check(self) -> None:
        with contextlib.suppress(Exception):  # still down, or the pool closed: it reconnects by itself
            await self._pool.check()


async def clock(conn: Connection) -> float:
    """Postgres's clock (seconds since the epoch) as the statement runs."""
    row = await conn.one(QUERIES["clock"])
    assert row is not None
    return float(row["epoch"])


def _application_name(url: str, name: str | None) -> dict[str, str]:
    """The pool's name as Postgres's application_name (pg_stat_activity,
    pg_stat_statements by process), unless the URL gives one."""
    if not name or "application_name" in psycopg.conninfo.conninfo_to_dict(url):
        return {}
    return {"application_name": f"ivr-auth {name}"}


def _nothing() -> None:
    return None
