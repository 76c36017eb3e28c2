"""Several outbound trunks on one node, with real Asterisk, SIPp and Postgres:
a trunk answering 503 (or 502) is failed over at once (the attempt uncounted),
skipped while it is down and tried again after trunk_retry_seconds; a
per-trunk calls-per-second cap spaces the originates; a tenant's caller-ID
pool is presented in turn. A lone trunk that fails makes its requests wait
for its cooldown, uncounted, and end as unreachable (trunk_unavailable)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ivr_auth import config, connections, models
from ivr_auth import store as store_mod
from ivr_auth.store import tenants
from ivr_auth_devkit import sipp
from tests.e2e.conftest import Api, extra_asterisk, start_runtime

pytestmark = pytest.mark.e2e

PORTS = {"sip_port": 5076, "ari_port": 58102, "rtp_start": 34000, "rtp_end": 34999}
PRIMARY_PORT = 5085
BACKUP_PORT = 5086
RETRY_SECONDS = 20
# PJSIP's timer B for the black-hole trunk: the shortest it takes (T1 100 ms).
TRUNK_TIMEOUT = 6.4
BACKUP_CPS = 1.0
# Start times are taken a few awaits after the token: allow that much jitter.
TOLERANCE = 0.15
CODE = "2580"
TRUNKS = [
    {"name": "primary", "host": "127.0.0.1", "port": PRIMARY_PORT, "priority": 1, "calls_per_second": 50},
    {"name": "backup", "host": "127.0.0.1", "port": BACKUP_PORT, "priority": 2, "calls_per_second": BACKUP_CPS},
]
POOL = ("+81312345678", "+81312345679")
FINAL = {"verified", "failed", "unreachable", "no_answer", "busy", "rejected", "hung_up", "error", "expired"}


@pytest.fixture
async def node(local_stack: connections.Connections) -> AsyncIterator[tuple[config.Config, connections.Connections]]:
    """An Asterisk with the two trunks, and a controller on it (no API: the
    test's API process is the ``api`` fixture's)."""
    async with extra_asterisk(
        local_stack,
        ".run/test-stack-trunks",
        PORTS,
        trunks=TRUNKS,
        dialer={"trunk_retry_seconds": RETRY_SECONDS},
    ) as (cfg, endpoints):
        rt = await start_runtime(cfg, endpoints, prefix="test-trunks")
        try:
            yield cfg, endpoints
        finally:
            await asyncio.wait_for(rt.stop(grace=5), 60)


async def calls(database_url: str, ids: list[str]) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=psycopg.rows.dict_row
    ) as conn:
        cur = await conn.execute(
            "SELECT verification_id::text AS id, attempt, trunk, outcome, cause, started_at, ended_at"
            " FROM call_attempts"
            " WHERE verification_id = ANY(%s::uuid[]) ORDER BY started_at",
            (ids,),
        )
        return list(await cur.fetchall())


async def ended_calls(database_url: str, ids: list[str], count: int, timeout: float = 15) -> list[dict[str, Any]]:
    """The call attempts once ``count`` of them have an outcome (a flow
    records it after its goodbye, a moment after the status)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await calls(database_url, ids)
        if sum(c["outcome"] is not None for c in found) >= count:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"call attempts not all ended after {timeout}s: {found}")
        await asyncio.sleep(0.1)


async def shared_down_until(database_url: str, trunk: str, *, after: dt.datetime, timeout: float = 15) -> dt.datetime:
    """When the trunk's shared down mark (trunk_state) ends, once a mark set
    after ``after`` is there (the controller shares its mark in a task of its
    own, after the failure)."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            cur = await conn.execute("SELECT down_until FROM trunk_state WHERE trunk = %s", (trunk,))
            row = await cur.fetchone()
            until = row[0] if row is not None else None
            if isinstance(until, dt.datetime) and until > after:
                return until
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"trunk {trunk} not marked down in trunk_state after {timeout}s: {until}")
            await asyncio.sleep(0.1)


def of(found: list[dict[str, Any]], request: dict[str, Any]) -> list[tuple[int, str, str | None]]:
    return [(c["attempt"], c["trunk"], c["outcome"]) for c in found if c["id"] == request["id"]]


def min_gap(times: list[dt.datetime]) -> float:
    return min((b - a).total_seconds() for a, b in itertools.pairwise(times))


async def test_failover_skip_retry_and_a_cps_cap(
    api: Api, node: tuple[config.Config, connections.Connections], local_stack: connections.Connections
) -> None:
    db = local_stack.database_url
    rejecting = sipp.Handset(port=PRIMARY_PORT, scenario="uas-reject-503.xml", calls=2, media_port=6010, timeout=120)
    answering = sipp.Handset(port=BACKUP_PORT, keys=CODE + "#", calls=5, media_port=6020, timeout=120)
    async with rejecting, answering:
        # 1. The primary answers 503: the request goes over to the backup at
        # once and is verified there, with one counted attempt.
        first = await api.create("+819011110001", code=CODE)
        # Once its primary attempt has ended, the primary is marked down (the
        # controller marks it before it records the end). A request dialled
        # before then goes to the primary too, and fails over in its turn:
        # right, but not what this test is about.
        ended = await ended_calls(db, [first["id"]], 1)
        failed_at = next(c["ended_at"] for c in ended if c["trunk"] == "primary")

        # 2. While the primary is down, new requests go straight to the backup,
        # one a second at most (its calls_per_second).
        more = [await api.create(f"+81901111000{i}", code=CODE) for i in (2, 3, 4)]
        done = [await api.wait_for(r["id"], FINAL) for r in [first, *more]]

        # 3. After trunk_retry_seconds the primary is tried again (and, still
        # answering 503, fails over once more).
        # The controller's own mark ends RETRY_SECONDS after the failure; the
        # one it shares through Postgres (and reads back) a moment later.
        shared_end = await shared_down_until(db, "primary", after=failed_at)
        up_again = max(failed_at + dt.timedelta(seconds=RETRY_SECONDS), shared_end)
        await asyncio.sleep(max(0.0, (up_again - dt.datetime.now(dt.UTC)).total_seconds()) + 0.5)
        last = await api.create("+819011110005", code=CODE)
        last_done = await api.wait_for(last["id"], FINAL)
        primary_result = await rejecting.wait()
        backup_result = await answering.wait()

    assert [d["status"] for d in [*done, last_done]] == ["verified"] * 5, [*done, last_done]
    found = await ended_calls(db, [r["id"] for r in [first, *more, last]], 7)
    assert of(found, first) == [(1, "primary", "trunk_failed"), (1, "backup", "verified")]
    assert next(c["cause"] for c in found if c["id"] == first["id"]) in (34, 38)
    for request in more:
        assert of(found, request) == [(1, "backup", "verified")]
    # ... dialled while the primary was down.
    cooldown_end = failed_at + dt.timedelta(seconds=RETRY_SECONDS)
    assert all(c["started_at"] < cooldown_end for c in found if c["id"] in {r["id"] for r in more})
    assert of(found, last) == [(1, "primary", "trunk_failed"), (1, "backup", "verified")]
    assert next(c["started_at"] for c in found if c["id"] == last["id"]) >= cooldown_end
    # One counted attempt each, failovers or not.
    assert [d["call_attempts"] for d in [*done, last_done]] == [1] * 5
    # The backup's originates: never closer than 1/cps (a lower bound only).
    backup_starts = [c["started_at"] for c in found if c["trunk"] == "backup"]
    assert len(backup_starts) == 5
    assert min_gap(backup_starts) >= 1 / BACKUP_CPS - TOLERANCE, backup_starts
    assert primary_result.ok, primary_result.errors_log or primary_result.output
    assert backup_result.ok, backup_result.errors_log or backup_result.output


def presented(invite: dict[str, str]) -> str:
    """The number in an INVITE's From header."""
    match = re.search(r"<sip:([^@>;]+)@", invite.get("from", invite.get("f", "")))
    assert match, invite
    return match.group(1)


async def test_a_tenant_caller_id_pool_is_presented_in_turn(
    api: Api,
    node: tuple[config.Config, connections.Connections],
    store: store_mod.Store,
    tenant: tuple[models.Tenant, str],
) -> None:
    await store.tenants.update(tenant[0].name, tenants.TenantChanges(caller_id_pool=POOL))
    results = []
    async with sipp.Handset(
        port=PRIMARY_PORT, keys=CODE + "#", calls=4, media_port=6010, timeout=120, capture_invites=True
    ) as phone:
        for i in range(4):
            created = await api.create(f"+81901112000{i}", code=CODE)
            results.append(await api.wait_for(created["id"], FINAL))
        received = await phone.wait()

    assert [r["status"] for r in results] == ["verified"] * 4, results
    assert received.ok, received.errors_log or received.output
    assert [presented(invite) for invite in received.invites] == [POOL[0], POOL[1], POOL[0], POOL[1]]


# Names of their own: a trunk marked down by another test (Postgres keeps
# that for every controller) would be skipped, not tried.
GATEWAY_TRUNKS = [
    {**TRUNKS[0], "name": "gateway-a"},
    {**TRUNKS[1], "name": "gateway-b", "calls_per_second": 50},
]


async def test_a_trunk_answering_502_is_failed_over_like_503(api: Api, local_stack: connections.Connections) -> None:
    # A carrier's broken gateway: Asterisk reports cause 27 (and, on 22,
    # tech_cause 502), which is the trunk's failure, not the callee's.
    rejecting = sipp.Handset(port=PRIMARY_PORT, scenario="uas-reject-502.xml", calls=1, media_port=6010, timeout=60)
    answering = sipp.Handset(port=BACKUP_PORT, keys=CODE + "#", calls=1, media_port=6020, timeout=60)
    async with extra_asterisk(local_stack, ".run/test-stack-trunks", PORTS, trunks=GATEWAY_TRUNKS) as (cfg, eps):
        rt = await start_runtime(cfg, eps, prefix="test-trunks")
        try:
            async with rejecting, answering:
                created = await api.create("+819011110101", code=CODE)
                done = await api.wait_for(created["id"], FINAL)
                primary_result = await rejecting.wait()
                backup_result = await answering.wait()
        finally:
            await asyncio.wait_for(rt.stop(grace=5), 60)

    assert (done["status"], done["call_attempts"]) == ("verified", 1), done
    found = await ended_calls(local_stack.database_url, [created["id"]], 2)
    assert of(found, created) == [(1, "gateway-a", "trunk_failed"), (1, "gateway-b", "verified")]
    assert found[0]["cause"] == 27, found
    assert primary_result.ok, primary_result.errors_log or primary_result.output
    assert backup_result.ok, backup_result.errors_log or backup_result.output


async def test_a_trunk_that_never_answers_is_failed_over_and_skipped(
    api: Api, local_stack: connections.Connections
) -> None:
    db = local_stack.database_url
    async with extra_asterisk(
        local_stack,
        ".run/test-stack-trunks",
        PORTS,
        trunks=TRUNKS,
        dialer={"trunk_retry_seconds": RETRY_SECONDS, "trunk_timeout_seconds": TRUNK_TIMEOUT},
        # Our own ring timer must outlast timer B.
        verification={"ring_timeout_seconds": 10},
    ) as (cfg, endpoints):
        rt = await start_runtime(cfg, endpoints, prefix="test-trunks")
        # The primary is a black hole: it takes every INVITE and answers none,
        # not even 100 Trying.
        hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        hole.bind(("127.0.0.1", PRIMARY_PORT))
        try:
            async with sipp.Handset(port=BACKUP_PORT, keys=CODE + "#", calls=2, media_port=6020, timeout=60) as phone:
                first = await api.create("+819011120001", code=CODE)
                first_done = await api.wait_for(first["id"], FINAL, timeout=40)
                second = await api.create("+819011120002", code=CODE)
                second_done = await api.wait_for(second["id"], FINAL, timeout=40)
                answered = await phone.wait()
        finally:
            hole.close()
            await asyncio.wait_for(rt.stop(grace=5), 60)

    assert [first_done["status"], second_done["status"]] == ["verified", "verified"], [first_done, second_done]
    assert [first_done["call_attempts"], second_done["call_attempts"]] == [1, 1]
    found = await ended_calls(db, [first["id"], second["id"]], 3)
    # The first call waited out timer B on the primary, then went to the backup ...
    assert of(found, first) == [(1, "primary", "trunk_failed"), (1, "backup", "verified")]
    assert next(c["cause"] for c in found if c["id"] == first["id"]) == 18
    # ... and the next one went straight there, the primary being down.
    assert of(found, second) == [(1, "backup", "verified")]
    assert answered.ok, answered.errors_log or answered.output


# --- a lone trunk that fails ---------------------------------------------------------------

LONE_RETRY_SECONDS = 2.0


@contextlib.asynccontextmanager
async def lone_trunk(local_stack: connections.Connections) -> AsyncIterator[None]:
    """A node whose only trunk is the primary, down for LONE_RETRY_SECONDS
    after a failure, with a controller on it. The test config calls a
    callee twice (max_call_attempts), so a request gets two trunk failures."""
    async with extra_asterisk(
        local_stack,
        ".run/test-stack-trunks",
        PORTS,
        trunks=TRUNKS[:1],
        dialer={"trunk_retry_seconds": LONE_RETRY_SECONDS, "trunk_timeout_seconds": TRUNK_TIMEOUT},
        # Our own ring timer must outlast timer B.
        verification={"ring_timeout_seconds": 10},
    ) as (cfg, endpoints):
        rt = await start_runtime(cfg, endpoints, prefix="test-trunks")
        try:
            yield
        finally:
            await asyncio.wait_for(rt.stop(grace=5), 60)


async def assert_trunk_unavailable(
    api: Api, database_url: str, request: dict[str, Any], done: dict[str, Any], causes: set[int]
) -> None:
    """Unreachable through the trunk's fault: no call attempt spent, each
    call on record as trunk_failed, the second one only after the trunk's
    cooldown."""
    assert (done["status"], done["reason"]) == ("unreachable", "trunk_unavailable"), done
    assert done["call_attempts"] == 0
    assert done["last_call"]["hangup_cause"] in causes, done
    found = await ended_calls(database_url, [request["id"]], 2)
    assert of(found, request) == [(1, "primary", "trunk_failed"), (1, "primary", "trunk_failed")]
    assert {c["cause"] for c in found} <= causes, found
    first, second = found
    assert (second["started_at"] - first["ended_at"]).total_seconds() >= LONE_RETRY_SECONDS - TOLERANCE, found
    log = await api.events(request["id"])
    moves = [e for e in log["events"] if e["type"] == "status"]
    assert [e["to_status"] for e in moves] == ["queued", "calling", "queued", "calling", "unreachable"]
    assert moves[2]["detail"]["reason"] == "trunk_down"


async def test_a_lone_trunk_that_never_answers_makes_the_request_unreachable_uncounted(
    api: Api, local_stack: connections.Connections
) -> None:
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", PRIMARY_PORT))
    try:
        async with lone_trunk(local_stack):
            created = await api.create("+819011130001", code=CODE)
            done = await api.wait_for(created["id"], FINAL, timeout=60)
    finally:
        hole.close()

    await assert_trunk_unavailable(api, local_stack.database_url, created, done, {18})


async def test_a_lone_trunk_answering_503_makes_the_request_unreachable_uncounted(
    api: Api, local_stack: connections.Connections
) -> None:
    rejecting = sipp.Handset(port=PRIMARY_PORT, scenario="uas-reject-503.xml", calls=2, media_port=6010, timeout=60)
    async with lone_trunk(local_stack), rejecting:
        created = await api.create("+819011130002", code=CODE)
        done = await api.wait_for(created["id"], FINAL, timeout=40)
        result = await rejecting.wait()

    await assert_trunk_unavailable(api, local_stack.database_url, created, done, {34, 38})
    assert result.ok, result.errors_log or result.output


# --- which trunk an inbound call came from ---------------------------------------------------

HEADER = "X-Trunk: carrier-c"
# Two trunks on one host told apart by port, a third on it by a header.
IDENTIFIED_TRUNKS = [
    {"name": "carrier-a", "host": "127.0.0.1", "port": PRIMARY_PORT, "identify": "ip_port"},
    {"name": "carrier-b", "host": "127.0.0.1", "port": BACKUP_PORT, "identify": "ip_port"},
    {"name": "carrier-c", "host": "127.0.0.1", "port": 5087, "identify": "header", "identify_header": HEADER},
]
INBOUND_DID = "05012345678"


@dataclasses.dataclass
class HeaderCaller(sipp.Caller):
    """A caller whose INVITE carries one more header."""

    header: str = ""

    def _scenario(self, pcap: Path) -> str:
        text = super()._scenario(pcap)
        return text.replace("Max-Forwards: 70\n", f"{self.header}\nMax-Forwards: 70\n", 1) if self.header else text


async def test_inbound_calls_are_told_apart_by_port_and_by_header(
    api: Api, local_stack: connections.Connections
) -> None:
    # (the trunk the call must be put down to, its source port, its extra header)
    sources = [
        ("carrier-a", PRIMARY_PORT, ""),
        ("carrier-b", BACKUP_PORT, ""),
        # The header, from any port of the host; it wins over a port's match.
        ("carrier-c", 5088, HEADER),
        ("carrier-c", PRIMARY_PORT, HEADER),
    ]
    async with extra_asterisk(local_stack, ".run/test-stack-trunks", PORTS, trunks=IDENTIFIED_TRUNKS) as (cfg, eps):
        rt = await start_runtime(cfg, eps, prefix="test-trunks")
        try:
            # Each from a registered phone of its own, whose pending request it verifies.
            created = [await api.create(f"090-1234-{i:04d}", method="inbound", language="en") for i in (1, 2, 3, 4)]
            for i, (_, port, header) in enumerate(sources, start=1):
                phone = HeaderCaller(
                    target_port=PORTS["sip_port"], did=INBOUND_DID, caller=f"0901234{i:04d}", port=port, header=header
                )
                async with phone:
                    result = await phone.wait()
                assert result.ok, result.errors_log or result.output
            done = [await api.wait_for(c["id"], FINAL) for c in created]
            # The header from another address, and a port no trunk is on: refused.
            log = cfg.run_dir / "asterisk" / "log" / "messages"
            log_start = log.stat().st_size
            refused = []
            for host, port, header in (("127.0.0.2", 5087, HEADER), ("127.0.0.1", 5090, "")):
                phone = HeaderCaller(
                    target_port=PORTS["sip_port"],
                    did=INBOUND_DID,
                    caller="09012349999",
                    host=host,
                    port=port,
                    header=header,
                    expect="reject",
                )
                async with phone:
                    refused.append((await phone.wait()).final_status)
            logged = log.read_bytes()[log_start:].decode(errors="replace")
        finally:
            await asyncio.wait_for(rt.stop(grace=5), 60)

    assert [d["status"] for d in done] == ["verified"] * 4, done
    found = await calls(local_stack.database_url, [c["id"] for c in created])
    by_request = {c["id"]: c["trunk"] for c in found}
    assert [by_request[c["id"]] for c in created] == [trunk for trunk, _, _ in sources], found
    # Refused, the header's trunk by its ACL, the other for want of an
    # endpoint: Asterisk may answer both with 401 (so that a prober cannot
    # tell them apart), its log can.
    assert all(status in (401, 403) for status in refused), refused
    assert re.search(r"failed for '127\.0\.0\.2:5087'.* - Not match Endpoint ACL", logged), logged
    assert re.search(r"failed for '127\.0\.0\.1:5090'.* - No matching endpoint found", logged), logged
