"""Several nodes: two Asterisk instances, each driven by its own controller,
sharing one database. The queue is split between them, each request is
dialled once, and losing a node moves its work to the other."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator

import psycopg
import pytest

from ivr_auth import config, connections, states
from ivr_auth_devkit import sipp
from ivr_auth_devkit.stack import asterisk
from tests.e2e.conftest import Api, Starter, extra_asterisk, service_config, start_runtime

pytestmark = pytest.mark.e2e

TERMINAL = {s.value for s in states.TERMINAL}
NODE_B_PORTS = {"sip_port": 5073, "ari_port": 58099, "rtp_start": 33000, "rtp_end": 33999}
CODE = "2468"
# Few channels per node, so that neither controller can take the whole queue.
CHANNELS = {"max_channels": 2}
# Node B's trunk has a name of its own: one name is one trunk for every
# controller (issue 18), its channels shared; with one cap of 2 for both,
# the controller whose call ends wakes itself and can claim the next before
# the other does (CI saw node A dial all 10).
NODE_B_TRUNK = {**CHANNELS, "name": "trunk-b"}


@pytest.fixture
async def node_b(local_stack: connections.Connections) -> AsyncIterator[tuple[config.Config, connections.Connections]]:
    async with extra_asterisk(local_stack, ".run/test-stack-b", NODE_B_PORTS, trunk=NODE_B_TRUNK) as found:
        yield found


async def attempts(database_url: str, ids: list[str]) -> list[tuple[str, str, str | None]]:
    """(request, node, outcome) of every call attempt of these requests."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT verification_id::text, node, outcome FROM call_attempts"
            " WHERE verification_id = ANY(%s::uuid[]) ORDER BY started_at",
            (ids,),
        )
        return [(str(r[0]), str(r[1]), r[2]) for r in await cur.fetchall()]


async def test_two_nodes_split_the_queue_and_dial_each_request_once(
    api: Api,
    start_service: Starter,
    local_stack: connections.Connections,
    node_b: tuple[config.Config, connections.Connections],
) -> None:
    a = await start_service(api=False, cfg=service_config(trunk=CHANNELS))
    b = await start_runtime(*node_b, prefix="test-b")
    assert a.node is not None
    assert b.node is not None
    assert a.node.name != b.node.name
    try:
        # One handset answers both nodes' trunks (the same SIPp port).
        async with sipp.Handset(port=5082, keys=CODE + "#", calls=10, timeout=120) as phone:
            created = [await api.create(f"+81907777{i:04d}", code=CODE) for i in range(10)]
            done = [await api.wait_for(c["id"], TERMINAL, timeout=100) for c in created]
            await phone.wait()
    finally:
        await asyncio.wait_for(b.stop(grace=5), 60)

    assert [d["status"] for d in done] == ["verified"] * 10, done
    calls = await attempts(local_stack.database_url, [c["id"] for c in created])
    per_request = Counter(request for request, _, _ in calls)
    assert sorted(per_request.values()) == [1] * 10, calls
    per_node = Counter(node for _, node, _ in calls)
    assert set(per_node) == {a.node.name, b.node.name}, per_node


async def test_losing_a_node_moves_its_work_to_the_other(
    api: Api,
    start_service: Starter,
    local_stack: connections.Connections,
    node_b: tuple[config.Config, connections.Connections],
) -> None:
    cfg_b, endpoints_b = node_b
    a = await start_service(api=False, cfg=service_config(trunk=CHANNELS))
    b = await start_runtime(cfg_b, endpoints_b, prefix="test-b")
    assert a.node is not None
    assert b.node is not None
    assert b.controller is not None
    instance_b = asterisk.Instance(cfg_b, cfg_b.run_dir, endpoints_b.ari_password)
    try:
        # Calls that node B's Asterisk takes down with it never end at the
        # handset; it is stopped, not waited for.
        async with sipp.Handset(port=5082, keys=CODE + "#", calls=20, timeout=150):
            created = [await api.create(f"+81908888{i:04d}", code=CODE) for i in range(8)]
            # Node B's Asterisk crashes with calls of its own in progress and
            # work still queued: no BYE, no events, its ARI gone.
            for _ in range(200):
                if b.controller.calls_in_progress > 0:
                    break
                await asyncio.sleep(0.05)
            assert b.controller.calls_in_progress > 0
            pid = instance_b.pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            done = [await api.wait_for(c["id"], TERMINAL, timeout=120) for c in created]
            # Nothing of B's is left waiting once it is taken for lost.
            assert b.controller.calls_in_progress == 0
    finally:
        await asyncio.wait_for(b.stop(grace=5), 60)

    calls = await attempts(local_stack.database_url, [c["id"] for c in created])
    on_b = {request for request, node, _ in calls if node == b.node.name}
    assert on_b, calls
    for request in done:
        mine = [(node, outcome) for r, node, outcome in calls if r == request["id"]]
        if request["status"] == "verified":
            # Verified through A; at most one call before it: one that was
            # ringing on B when B went, which counts as not answered.
            assert mine[-1][0] == a.node.name, mine
            assert mine[:-1] in ([], [(b.node.name, "no_answer")]), mine
        else:
            # In conversation on B when it went: the call is lost with the
            # node, and the request says so (none is left in progress).
            assert (request["status"], request["reason"]) == ("error", "node_lost"), request
            assert mine == [(b.node.name, "error")], mine
    # Queued work went to the node that was left.
    assert sum(d["status"] == "verified" for d in done) >= len(created) - b.cfg.trunk.max_channels, done
