"""One trunk, one limit, with real Asterisk, SIPp and Postgres: two
controllers dialling through one trunk keep to its calls_per_second and
max_channels together (the claim takes the trunk's shared tokens and counts
its calls by whoever placed them), not each on its own."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import psycopg
import pytest

from ivr_auth import connections
from ivr_auth_devkit import sipp
from tests.e2e.conftest import Api, Starter, service_config

pytestmark = pytest.mark.e2e

CPS = 2.0
CHANNELS = 3
REQUESTS = 12
CODE = "4711"
# Start times are recorded a few awaits after the token: allow that much jitter.
TOLERANCE = 0.15
FINAL = {"verified", "failed", "unreachable", "no_answer", "busy", "rejected", "hung_up", "error", "expired"}


async def calls(database_url: str, ids: list[str]) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=psycopg.rows.dict_row
    ) as conn:
        cur = await conn.execute(
            "SELECT controller, trunk, started_at, ended_at FROM call_attempts"
            " WHERE verification_id = ANY(%s::uuid[]) ORDER BY started_at",
            (ids,),
        )
        return list(await cur.fetchall())


def most_in_a_second(starts: list[dt.datetime], second: float) -> int:
    return max(sum(1 for t in starts if s <= t < s + dt.timedelta(seconds=second)) for s in starts)


def most_at_once(found: list[dict[str, Any]]) -> int:
    edges = sorted([(c["started_at"], 1) for c in found] + [(c["ended_at"], -1) for c in found])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


async def test_two_controllers_on_one_trunk_keep_its_limits_together(
    api: Api, start_service: Starter, local_stack: connections.Connections
) -> None:
    cfg = service_config(trunk={"calls_per_second": CPS, "max_channels": CHANNELS})
    handset = sipp.Handset(
        port=cfg.trunk.port, host=cfg.trunk.host, keys=CODE + "#", calls=REQUESTS, timeout=120, first_key_ms=1000
    )
    async with handset:
        first = await start_service(api=False, cfg=cfg)
        created = [await api.create(f"+8190222200{i:02d}", code=CODE) for i in range(REQUESTS)]
        ids = [r["id"] for r in created]
        # The first controller has the trunk's channels full: the second,
        # started now, has room for them all on its own, and tokens too.
        deadline = asyncio.get_running_loop().time() + 20
        while sum(c["ended_at"] is None for c in await calls(local_stack.database_url, ids)) < CHANNELS:
            assert asyncio.get_running_loop().time() < deadline, await calls(local_stack.database_url, ids)
            await asyncio.sleep(0.05)
        second = await start_service(api=False, cfg=cfg)
        assert first.name != second.name
        done = [await api.wait_for(r["id"], FINAL, timeout=90) for r in created]
        result = await handset.wait()

    assert [d["status"] for d in done] == ["verified"] * REQUESTS, done
    assert result.ok, result.errors_log or result.output
    deadline = asyncio.get_running_loop().time() + 15
    found = await calls(local_stack.database_url, ids)
    while any(c["ended_at"] is None for c in found):
        assert asyncio.get_running_loop().time() < deadline, found
        await asyncio.sleep(0.2)
        found = await calls(local_stack.database_url, ids)

    assert len(found) == REQUESTS
    starts = [c["started_at"] for c in found]
    # At most CPS new calls in any second, and CHANNELS calls up at once:
    # either controller alone would have taken that much again.
    assert most_in_a_second(starts, 1.0 - TOLERANCE) <= CPS, starts
    assert most_at_once(found) <= CHANNELS, found
