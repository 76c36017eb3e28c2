"""The trunks' state shared by every controller that dials through them
(migration 13): the token buckets the claim takes from (``claim_paced``,
in ``verifications.sql``'s claim) and which trunks are down. A controller
that finds a trunk failing marks it down here; the others hear of it by
``NOTIFY`` on :data:`CHANNEL` and read it with :meth:`TrunkStates.down`."""

from __future__ import annotations

from dataclasses import dataclass

from ivr_auth.store import database, sql

QUERIES = sql.load("trunk_state.sql")
CHANNEL = "ivr_auth_trunks"


@dataclass(frozen=True)
class Down:
    trunk: str
    seconds: float
    by: str | None


class TrunkStates:
    def __init__(self, db: database.Database) -> None:
        self._db = db

    async def mark_down(self, trunk: str, seconds: float, by: str, burst: float) -> float:
        """Down for ``seconds`` from now (a later end already set stays);
        the seconds it is down for."""
        row = await self._db.one(QUERIES["mark_down"], {"trunk": trunk, "seconds": seconds, "by": by, "burst": burst})
        return float(row["seconds"]) if row is not None and row["seconds"] is not None else seconds

    async def down(self) -> list[Down]:
        rows = await self._db.all(QUERIES["down"])
        return [Down(r["trunk"], float(r["seconds"]), r["down_by"]) for r in rows]
