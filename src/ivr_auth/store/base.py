"""The Store's plumbing: the database and the server keys."""

from __future__ import annotations

from ivr_auth import crypto
from ivr_auth.store import database

Row = database.Row


class Base:
    def __init__(self, db: database.Database, keys: crypto.Keys) -> None:
        self.db = db
        self.keys = keys
