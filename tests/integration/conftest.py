"""Fixtures shared by the tests against the real Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from ivr_auth import stack

Conn = psycopg.AsyncConnection[dict[str, Any]]


@pytest.fixture
async def db(local_stack: stack.Endpoints) -> AsyncIterator[Conn]:
    """A connection of the test's own, beside the Store, to look at rows directly."""
    conn = await psycopg.AsyncConnection.connect(local_stack.database_url, autocommit=True, row_factory=dict_row)
    async with conn:
        yield conn
