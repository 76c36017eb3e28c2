"""Versioned schema migrations: ``migrations/NNNN_name.sql``, applied in
order in one transaction, under an advisory lock so that several processes
starting at once apply each migration exactly once. Their bookkeeping's
queries are ``migrate.sql``."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from ivr_auth import errors
from ivr_auth.store import database, sql

logger = logging.getLogger(__name__)

QUERIES = sql.load("migrate.sql")
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


async def migrate(db: database.Database) -> list[Migration]:
    """Apply what is missing; return what was applied. Runs on a connection
    of its own: the pool need not be open."""
    applied: list[Migration] = []
    try:
        async with db.dedicated(connect_timeout=10) as conn, conn.transaction():
            await conn.execute(QUERIES["lock"], {"lock_id": LOCK_ID})
            await conn.execute(QUERIES["create_table"])
            done = {row["version"] for row in await conn.all(QUERIES["applied"])}
            for migration in available():
                if migration.version in done:
                    continue
                await conn.script(migration.sql)
                await conn.execute(QUERIES["record"], {"version": migration.version, "name": migration.name})
                logger.info("applied migration %04d_%s", migration.version, migration.name)
                applied.append(migration)
    except errors.StoreError as exc:
        raise errors.StoreError(f"migration failed: {exc}") from exc
    return applied


async def applied_versions(conn: database.Connection) -> list[int]:
    """The migrations applied to the database behind ``conn`` ([]: never migrated)."""
    row = await conn.one(QUERIES["exists"])
    if row is None or not row["found"]:
        return []
    return [int(r["version"]) for r in await conn.all(QUERIES["applied"])]


async def current_version(conn: database.Connection) -> int:
    """The schema version of the database behind ``conn`` (0: never migrated)."""
    return max(await applied_versions(conn), default=0)
