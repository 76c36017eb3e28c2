"""The operators who may open the dashboard, in Postgres: their tokens
(kept as keyed hashes, shown once) and their logins."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import uuid

from ivr_auth import crypto, errors
from ivr_auth.store import database, sql

QUERIES = sql.load("operators.sql")


@dataclasses.dataclass(frozen=True)
class Operator:
    id: uuid.UUID
    name: str
    # Postgres's clock when it was looked up: a login is issued at this time.
    at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Listed:
    """An operator as ``ivr-auth operator list`` shows one: its token's prefix, never the token."""

    name: str
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: database.Row) -> Listed:
        return cls(row["name"], row["prefix"], row["created_at"], row["revoked_at"])


class Operators:
    def __init__(self, db: database.Database, keys: crypto.Keys) -> None:
        self._db = db
        self._keys = keys

    async def add(self, name: str, *, replace: bool = False) -> str:
        """A new operator (or, with ``replace``, a new token for one, which ends
        its sessions); returns the token, shown once."""
        token, prefix = crypto.new_api_key(crypto.OPERATOR_TOKEN_PREFIX)
        params = {"name": name, "prefix": prefix, "token_hash": self._keys.api_key_hash(token)}
        row = await self._db.one(QUERIES["replace_operator_token" if replace else "create_operator"], params)
        if row is None:
            if replace:
                raise errors.NotFound(f"no operator named {name!r}")
            raise errors.Conflict(f"an operator named {name!r} exists (use --new-token to replace its token)")
        return token

    async def revoke(self, name: str) -> None:
        if await self._db.one(QUERIES["revoke_operator"], {"name": name}) is None:
            raise errors.NotFound(f"no active operator named {name!r}")

    async def all(self) -> list[Listed]:
        return [Listed.from_row(r) for r in await self._db.all(QUERIES["list_operators"])]

    async def for_token(self, token: str) -> Operator | None:
        prefix = crypto.api_key_prefix(token, crypto.OPERATOR_TOKEN_PREFIX)
        if prefix is None:
            return None
        row = await self._db.one(QUERIES["operator_by_prefix"], {"prefix": prefix})
        if row is None or not hmac.compare_digest(bytes(row["token_hash"]), self._keys.api_key_hash(token)):
            return None
        return Operator(row["id"], row["name"], row["now"])

    async def session(self, operator_id: uuid.UUID, issued: dt.datetime) -> Operator | None:
        """The operator of a login issued at ``issued``, while that login is still good."""
        row = await self._db.one(QUERIES["operator_session"], {"id": operator_id, "issued": issued})
        return None if row is None else Operator(row["id"], row["name"])

    async def end_sessions(self, operator_id: uuid.UUID) -> None:
        await self._db.one(QUERIES["end_operator_sessions"], {"id": operator_id})
