"""Versioned schema migrations: ``migrations/NNNN_name.sql``, applied in
order, each in its own transaction, under an advisory lock so that several
processes starting at once apply each migration exactly once."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from ivr_auth import errors

logger = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
# Any constant unique to ivr-auth; taken with pg_advisory_xact_lock.
LOCK_ID = 0x1A7A_0001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files("ivr_auth.store").joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise errors.StoreError(f"migration files are not numbered 1..n without gaps: {versions}")
    return found


def latest_version() -> int:
    return len(available())


async def migrate(database_url: str) -> list[Migration]:
    """Apply what is missing; return what was applied."""
    applied: list[Migration] = []
    try:
        conn = await psycopg.AsyncConnection.connect(database_url, connect_timeout=10)
        async with conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for migration in available():
                if migration.version in done:
                    continue
                # The file is a script of several statements: run it as one simple query.
                await conn.execute(migration.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                logger.info("applied migration %04d_%s", migration.version, migration.name)
                applied.append(migration)
    except psycopg.Error as exc:
        raise errors.StoreError(f"migration failed: {exc}") from exc
    return applied


async def current_version(conn: psycopg.AsyncConnection[Any]) -> int:
    """The schema version of the database behind ``conn`` (0: never migrated)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        row = await cur.fetchone()
        if row is None or not row[0]:
            return 0
        await cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
        row = await cur.fetchone()
    return int(row[0]) if row else 0
