"""Failure recovery: the service keeps its promises when Asterisk or
Postgres restarts under it, and a burst of requests gets an answer each."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from ivr_auth import config, connections, errors, phone, runtime, states
from ivr_auth.ari import client as ari_client
from ivr_auth_devkit import sipp, stack
from ivr_auth_devkit.stack import asterisk, postgres, secrets
from tests.conftest import settings_from_env
from tests.e2e.conftest import FAST, Api, Starter, service_config, start_runtime
from tests.support import ari_cut

pytestmark = pytest.mark.e2e

TERMINAL = {s.value for s in states.TERMINAL}
SETTLED = TERMINAL | {"delivered"}


def handset(**kwargs: object) -> sipp.Handset:
    cfg = service_config()
    return sipp.Handset(port=cfg.trunk.port, host=cfg.trunk.host, **kwargs)  # type: ignore[arg-type]


async def test_controller_resumes_dialling_after_an_asterisk_restart(
    api: Api, start_service: Starter, stack_config: config.Config, local_stack: connections.Connections
) -> None:
    service = await start_service(api=False)
    assert service.node is not None
    connects = service.node.stream.connects
    instance = asterisk.Instance(stack_config, stack_config.run_dir, local_stack.ari_password)

    await instance.stop()
    # Accepted while Asterisk is down: queued, not lost, not failed.
    created = await api.create("090-1234-5678")
    await asyncio.sleep(1.0)
    # A call that could not be placed goes back to the queue, uncounted.
    waiting = await api.get(created["id"])
    assert waiting["status"] in ("queued", "calling"), waiting
    assert waiting["call_attempts"] <= 1
    await instance.start()

    async with handset(keys=created["code"] + "#") as phone:
        done = await api.wait_for(created["id"], TERMINAL, timeout=60)
        await phone.wait()
    assert service.node.stream.connects > connects
    assert done["status"] == "verified", done
    assert done["call_attempts"] == 1


async def test_postgres_restart_gives_503_then_recovers_without_a_restart(
    api: Api, start_service: Starter, stack_config: config.Config
) -> None:
    await start_service(api=False)
    # An inbound request: it waits for the person's call, so nothing about it
    # races the outage, and the controller's inbound app serves it afterwards.
    before = await api.create("090-1234-5678", method="inbound")
    cluster = postgres.Cluster(
        stack_config.stack, stack_config.run_dir, secrets.load_or_create(stack_config.run_dir).postgres_password
    )
    await cluster.stop()
    try:
        status, body = await api.call("POST", "/v1/verifications", {"phone": "090-1234-5679", "method": "dtmf"})
        assert status == 503, body
        assert body["error"]["code"] == "unavailable"
        status, _ = await api.call("GET", "/readyz")
        assert status == 503
    finally:
        await cluster.start()

    # The same API and controller, no restart: accepted again, and the
    # request accepted before the outage is still there and verifies.
    async def accepted() -> int:
        status, _ = await api.call("POST", "/v1/verifications", {"phone": "090-1234-5670", "method": "inbound"})
        return status

    for _ in range(100):
        if (status := await accepted()) != 503:
            break
        await asyncio.sleep(0.1)
    assert status == 201
    cfg = service_config()
    did = cfg.inbound.numbers[0].replace("-", "")
    async with sipp.Caller(target_port=cfg.stack.sip_port, did=did, caller="09012345678") as phone:
        done = await api.wait_for(before["id"], TERMINAL, timeout=60)
        await phone.wait()
    assert done["status"] == "verified", done


async def test_a_burst_of_a_thousand_creates_gets_an_answer_each(api: Api) -> None:
    async def one(n: int) -> int:
        status, _ = await api.call(
            "POST", "/v1/verifications", {"phone": f"+81905{n:07d}", "method": "dtmf", "reference": f"burst-{n}"}
        )
        return status

    statuses = Counter(await asyncio.gather(*(one(n) for n in range(1000))))

    assert set(statuses) <= {201, 429}, statuses
    # The tenant's limit of new requests per minute admits exactly that many.
    assert statuses[201] == service_config().limits.requests_per_minute


async def test_controller_killed_with_twenty_calls_in_progress(
    api: Api,
    start_service: Starter,
    tmp_path: Path,
    stack_config: config.Config,
    local_stack: connections.Connections,
) -> None:
    # The controller as its own process, as in production, so that it can be
    # killed for real (SIGKILL: no drain, no hangups, leases left to run out).
    settings: dict[str, Any] = copy.deepcopy(settings_from_env(os.environ))
    settings.pop("base_dir")
    for section, values in FAST.items():
        settings.setdefault(section, {}).update(values)
    settings["stack"] = {**settings["stack"], "run_dir": str(stack_config.run_dir)}
    settings["dialer"]["name"] = "doomed"
    config_file = tmp_path / "ivr-auth.yaml"
    config_file.write_text(yaml.safe_dump(settings))
    output = (tmp_path / "controller.log").open("wb")
    doomed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr_auth.cli", "-c", str(config_file), "controller",
        stdout=output, stderr=asyncio.subprocess.STDOUT,
        # As in production: the connections from the environment.
        env={**os.environ, **stack.environment(local_stack)},
    )  # fmt: skip
    try:
        numbers = [f"+81906666{i:04d}" for i in range(20)]
        created = [await api.create(n) for n in numbers]
        # Every callee answers and stays silent, so all 20 are mid-call.
        async with handset(keys="", calls=20, timeout=90) as phone:
            deadline = asyncio.get_running_loop().time() + 60
            while True:
                states_now = [(await api.get(c["id"]))["status"] for c in created]
                if states_now.count("in_call") == 20:
                    break
                assert asyncio.get_running_loop().time() < deadline, (
                    Counter(states_now),
                    (tmp_path / "controller.log").read_text(errors="replace")[-2000:],
                )
                await asyncio.sleep(0.2)
            doomed.kill()
            await doomed.wait()
            # Another controller's reaper settles what the dead one held.
            await start_service(api=False)
            done = [await api.wait_for(c["id"], TERMINAL, timeout=60) for c in created]
            await phone.stop()
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await doomed.wait()
        output.close()
    assert [d["status"] for d in done] == ["error"] * 20
    assert {d["reason"] for d in done} == {"controller_lost"}
    # Answered calls are never dialled again: each had exactly one call.
    assert [d["call_attempts"] for d in done] == [1] * 20
    for c in created:
        log = await api.events(c["id"])
        (call,) = log["calls"]
        assert call["answered_at"] is not None


# --- lost events: a websocket outage, a returning node --------------------------------------


@contextlib.asynccontextmanager
async def controller_behind(
    cut: ari_cut.AriCut, local_stack: connections.Connections, cfg: config.Config
) -> AsyncIterator[runtime.Runtime]:
    """A controller whose ARI (REST and events) goes through ``cut``."""
    endpoints = dataclasses.replace(local_stack, ari_url=cut.url(local_stack.ari_url))
    rt = await start_runtime(cfg, endpoints, prefix="test-cut")
    try:
        yield rt
    finally:
        await asyncio.wait_for(rt.stop(grace=5), 60)


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Poll ``check`` until true; the loop's time then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, f"not {what} within {timeout}s"
        await asyncio.sleep(0.05)
    return loop.time()


async def exists(client: ari_client.AriClient, path: str) -> bool:
    try:
        await client.request("GET", path)
    except errors.AriError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def channel_of(created: dict[str, Any]) -> str:
    return f"ivrauth-{uuid.UUID(created['id']).hex}-1"


async def test_a_prompt_that_ends_while_the_events_websocket_is_down_does_not_stall_its_call(
    api: Api, local_stack: connections.Connections, http_session: aiohttp.ClientSession
) -> None:
    """The code's read-out ends during a websocket outage of some 5 s: its
    PlaybackFinished is lost, and the call (which waits for it without a
    timer) is told of it on the reconnect and goes on to deliver the code."""
    direct = ari_client.AriClient(http_session, local_stack.ari_url, local_stack.ari_username, local_stack.ari_password)
    # An outage, not a lost node: shorter than node_lost_seconds.
    cfg = service_config(verification={"voice_key_timeout_seconds": 2.0}, dialer={"node_lost_seconds": 30})
    async with ari_cut.relay(local_stack.ari_url) as cut, controller_behind(cut, local_stack, cfg) as rt:
        assert rt.node is not None
        created = await api.create("090-1234-5678", method="voice", language="en", code="4321")
        # The read-out is the call's second prompt (after "press a key").
        readout = f"{channel_of(created)}-p2"
        async with handset(keys="1") as phone:
            await wait_until(lambda: exists(direct, f"playbacks/{readout}"), 30, "reading out")
            connects = rt.node.stream.connects
            cut.cut_events()
            cut_at = asyncio.get_running_loop().time()
            await wait_until(lambda: _not(exists(direct, f"playbacks/{readout}")), 30, "done reading out")
            await asyncio.sleep(max(0.5, 5.0 - (asyncio.get_running_loop().time() - cut_at)))
            assert not rt.node.stream.connected
            assert (await api.get(created["id"]))["status"] == "in_call"
            cut.restore()

            async def reconnected() -> bool:
                return rt.node is not None and rt.node.stream.connects > connects and rt.node.stream.connected

            back_at = await wait_until(reconnected, 30, "reconnected")
            delivered = await api.wait_for(created["id"], SETTLED, timeout=10)
            delivered_at = asyncio.get_running_loop().time()
            result = await phone.wait()
    assert delivered["status"] == "delivered", delivered
    # Promptly: no timer of the call's had to run out (it has none for a prompt).
    assert delivered_at - back_at < 2.0, delivered_at - back_at
    assert result.ok, result.errors_log
    assert rt.metrics is not None
    missed = {"node": rt.node.name, "event": "PlaybackFinished"}
    assert (rt.metrics.registry.get_sample_value("ivr_auth_ari_missed_events_total", missed) or 0) >= 1
    status, body = await api.call("POST", f"/v1/verifications/{created['id']}/check", {"code": "4321"})
    assert status == 200, body
    assert body["verification"]["status"] == "verified"


async def _not(found: Awaitable[bool]) -> bool:
    return not await found


async def test_a_node_back_from_a_partition_has_its_calls_hung_up_and_settled_once(
    api: Api, local_stack: connections.Connections, http_session: aiohttp.ClientSession
) -> None:
    """Cut off (REST and events) for longer than node_lost_seconds with
    calls in conversation: they are settled as lost with the node. When it
    comes back its channels are still up (the callees never hung up); they
    are hung up, and nothing is settled a second time."""
    direct = ari_client.AriClient(http_session, local_stack.ari_url, local_stack.ari_username, local_stack.ari_password)
    cfg = service_config()
    lost_after = cfg.dialer.node_lost_seconds
    async with ari_cut.relay(local_stack.ari_url) as cut, controller_behind(cut, local_stack, cfg) as rt:
        assert rt.node is not None
        assert rt.controller is not None
        # The callees answer and key nothing: the calls stay in conversation.
        async with handset(keys="", calls=2, timeout=90) as phone:
            created = [await api.create(f"+81906667{i:04d}") for i in range(2)]
            for c in created:
                await api.wait_for(c["id"], {"in_call"}, timeout=30)
            connects = rt.node.stream.connects
            cut.partition()
            done = [await api.wait_for(c["id"], TERMINAL, timeout=lost_after + 10) for c in created]
            channels = [channel_of(c) for c in created]
            # Still up on the node: nobody could hang them up.
            assert [await exists(direct, f"channels/{c}") for c in channels] == [True, True]
            await asyncio.sleep(1.0)
            cut.restore()

            async def reconnected() -> bool:
                return rt.node is not None and rt.node.stream.connects > connects and rt.node.stream.connected

            await wait_until(reconnected, 30, "reconnected")

            async def all_gone() -> bool:
                return not any([await exists(direct, f"channels/{c}") for c in channels])

            await wait_until(all_gone, 10, "the returning node's channels hung up")
            result = await phone.wait()
            # Time for a second settlement, were there one.
            await asyncio.sleep(2.0)
            after = [await api.get(c["id"]) for c in created]
            logs = [await api.events(c["id"]) for c in created]
    assert result.ok, result.errors_log
    assert [(d["status"], d["reason"]) for d in done] == [("error", "node_lost")] * 2, done
    # Nothing moved since: no second settlement.
    assert [(a["status"], a["reason"], a["updated_at"]) for a in after] == [
        (d["status"], d["reason"], d["updated_at"]) for d in done
    ]
    for log in logs:
        terminal = [e for e in log["events"] if e["type"] == "status" and e["to_status"] in TERMINAL]
        assert len(terminal) == 1, log["events"]
        (call,) = log["calls"]
        assert call["outcome"] == "error"
    assert rt.metrics is not None
    orphans = rt.metrics.registry.get_sample_value("ivr_auth_orphan_channels_hung_up_total", {"node": rt.node.name})
    assert orphans == 2


async def test_a_channel_of_ours_in_our_app_that_no_call_follows_is_hung_up_on_the_reconnect(
    clean_queue: None, local_stack: connections.Connections, http_session: aiohttp.ClientSession
) -> None:
    """A channel with one of our ids, answered into the controller's app,
    that no call of the controller's follows (as a returning node's may be):
    the next reconnect finds it in the app (``GET /applications/{app}``) and
    hangs it up."""
    direct = ari_client.AriClient(http_session, local_stack.ari_url, local_stack.ari_username, local_stack.ari_password)
    cfg = service_config(dialer={"node_lost_seconds": 30})
    channel = f"ivrauth-{uuid.uuid4().hex}-1"
    async with ari_cut.relay(local_stack.ari_url) as cut, controller_behind(cut, local_stack, cfg) as rt:
        assert rt.node is not None
        app_name = rt.node.app
        async with handset(keys="") as phone_:
            endpoint = phone.dial_endpoint("+819012345670", cfg.outbound_trunks[0], cfg.default_country)
            await direct.originate(endpoint=endpoint, app=app_name, channel_id=channel, timeout=30)

            async def up_in_the_app() -> bool:
                app = await direct.application(app_name) or {}
                found = await direct.request("GET", f"channels/{channel}")
                return channel in app.get("channel_ids", []) and found.get("state") == "Up"

            await wait_until(up_in_the_app, 20, "answered into the app")
            connects = rt.node.stream.connects
            cut.cut_events()
            await wait_until(lambda: _not(_connected(rt)), 10, "disconnected")
            cut.restore()
            await wait_until(lambda: _not(exists(direct, f"channels/{channel}")), 30, "hung up")
            result = await phone_.wait()
        assert rt.node.stream.connects > connects
    assert result.ok, result.errors_log
    assert rt.metrics is not None
    orphans = rt.metrics.registry.get_sample_value("ivr_auth_orphan_channels_hung_up_total", {"node": rt.node.name})
    assert orphans == 1


async def _connected(rt: runtime.Runtime) -> bool:
    return rt.node is not None and rt.node.stream.connected
