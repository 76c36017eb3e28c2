"""Several controllers on the stack's one Asterisk, all serving: each holds
an inbound slot of its own, inbound calls reach whichever is alive
(StasisBroadcast on Asterisk 22, the dialplan's ordered fallback on 16),
and a controller SIGKILLed loses no inbound call placed after it died and
strands no request."""

from __future__ import annotations

import asyncio
import copy
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import yaml

from ivr_auth import config, connections, states
from ivr_auth.ari import client as ari_client
from ivr_auth.ari import events, release
from ivr_auth_devkit import sipp, stack
from tests.conftest import settings_from_env
from tests.e2e.conftest import FAST, Api, Starter, service_config

pytestmark = pytest.mark.e2e

TERMINAL = {s.value for s in states.TERMINAL}
STASIS_DID = "05012345678"


def caller(frm: str, **kwargs: Any) -> sipp.Caller:
    return sipp.Caller(target_port=service_config().stack.sip_port, did=STASIS_DID, caller=frm, **kwargs)


def handset(**kwargs: Any) -> sipp.Handset:
    cfg = service_config()
    return sipp.Handset(port=cfg.trunk.port, host=cfg.trunk.host, **kwargs)


async def registered_apps(client: ari_client.AriClient) -> set[str]:
    return {str(a["name"]) for a in await client.applications()}


async def wait_for_apps(client: ari_client.AriClient, wanted: set[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not wanted <= (found := await registered_apps(client)):
        assert time.monotonic() < deadline, f"apps {sorted(wanted - found)} not registered in {timeout}s: {found}"
        await asyncio.sleep(0.1)


async def verify_inbound(api: Api, number: str) -> str:
    """A request for ``number`` and a call from it, verified; its id."""
    created = await api.create(number, method="inbound", language="en")
    async with caller(number.replace("-", "")) as phone:
        done = await api.wait_for(created["id"], TERMINAL, timeout=30)
        result = await phone.wait()
    assert done["status"] == "verified", done
    assert result.ok, result.errors_log
    return str(created["id"])


async def controllers_of(database_url: str, ids: list[str]) -> list[str]:
    """Which controller took each request's call."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        found = []
        for verification_id in ids:
            cur = await conn.execute(
                "SELECT controller FROM call_attempts WHERE verification_id = %s", (verification_id,)
            )
            (row,) = await cur.fetchall()
            found.append(str(row[0]))
        return found


async def start_process(
    tmp_path: Path, stack_config: config.Config, local_stack: connections.Connections, name: str
) -> asyncio.subprocess.Process:
    """A controller as its own process, as in production, so that it can be
    killed for real (SIGKILL: its sockets closed by the kernel, no drain)."""
    settings: dict[str, Any] = copy.deepcopy(settings_from_env(os.environ))
    settings.pop("base_dir")
    for section, values in FAST.items():
        settings.setdefault(section, {}).update(values)
    settings["stack"] = {**settings["stack"], "run_dir": str(stack_config.run_dir)}
    settings["dialer"]["name"] = name
    # Time enough to be killed in the middle of a call that waits for a code.
    settings["verification"]["first_digit_timeout_seconds"] = 60
    # The test stack's fixed FastAGI port is not this controller's to take.
    settings["agi"] = {**settings["agi"], "listen": ""}
    settings["inbound"] = {**settings["inbound"], "agi_numbers": []}
    config_file = tmp_path / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump(settings))
    output = (tmp_path / f"{name}.log").open("wb")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ivr_auth.cli", "-c", str(config_file), "controller",
            stdout=output, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **stack.environment(local_stack)},
        )  # fmt: skip
    finally:
        output.close()


async def test_every_controller_serves_and_a_killed_one_loses_no_call(
    api: Api,
    start_service: Starter,
    tmp_path: Path,
    stack_config: config.Config,
    local_stack: connections.Connections,
    http_session: aiohttp.ClientSession,
) -> None:
    client = ari_client.AriClient(http_session, local_stack.ari_url, local_stack.ari_username, local_stack.ari_password)
    cfg = service_config()
    slot = [f"{cfg.inbound.app}-{n}" for n in (1, 2)]
    doomed_name = f"doomed-{uuid.uuid4().hex[:8]}"
    doomed = await start_process(tmp_path, stack_config, local_stack, doomed_name)
    try:
        # The first controller takes slot 1, the one the fallback tries first.
        try:
            await wait_for_apps(client, {slot[0], f"{cfg.ari.app}-{doomed_name}"})
        except AssertionError as exc:
            raise AssertionError((tmp_path / f"{doomed_name}.log").read_text(errors="replace")[-3000:]) from exc
        # A call the doomed controller is in when it dies (it waits for a
        # code that never comes); it stays in that controller's app, which
        # Asterisk keeps while the channel is there.
        held = await api.create("090-1234-5699", method="inbound", language="en", ask_code=True)
        async with caller("09012345699", timeout=60, port=5094, media_port=6140) as stuck:
            await api.wait_for(held["id"], {"in_call"}, timeout=15)
            assert await controllers_of(local_stack.database_url, [held["id"]]) == [doomed_name]
            survivor = await start_service(api=False)
            assert survivor.node is not None
            assert survivor.metrics is not None
            assert survivor.node.inbound_app == slot[1]
            broadcast = survivor.node.has(release.Feature.STASIS_BROADCAST)
            before = [await verify_inbound(api, f"090-1234-56{n:02d}") for n in range(3)]
            taken_by = await controllers_of(local_stack.database_url, before)
            assert set(taken_by) <= {doomed_name, survivor.name}
            if not broadcast:
                # In order: the first slot held takes every call.
                assert taken_by == [doomed_name] * 3

            doomed.kill()
            await doomed.wait()
            claimed = survivor.metrics.inbound_claims.labels(survivor.node.name, "won")._value.get()
            after = [await verify_inbound(api, f"090-1234-57{n:02d}") for n in range(3)]
            assert await controllers_of(local_stack.database_url, after) == [survivor.name] * 3
            # Offered by StasisBroadcast and claimed where Asterisk has it
            # (22.10 here), taken through the fallback's second slot where not
            # (16: Stasis() into the dead controller's app fails at once).
            won = survivor.metrics.inbound_claims.labels(survivor.node.name, "won")._value.get() - claimed
            assert won == (3 if broadcast else 0)
            # The dead controller's request is settled by the survivor once its lease runs out.
            settled = await api.wait_for(held["id"], TERMINAL, timeout=30)
            assert settled["status"] == "error", settled
            await stuck.stop()

        # The queue too: a request made now is dialled by the survivor.
        created = await api.create("090-1234-5800")
        async with handset(keys=created["code"] + "#") as phone:
            done = await api.wait_for(created["id"], TERMINAL, timeout=60)
            await phone.wait()
        assert done["status"] == "verified", done
        assert await controllers_of(local_stack.database_url, [created["id"]]) == [survivor.name]
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await doomed.wait()


async def test_a_controller_whose_slot_is_taken_moves_to_a_free_one(
    api: Api,
    start_service: Starter,
    local_stack: connections.Connections,
    http_session: aiohttp.ClientSession,
) -> None:
    client = ari_client.AriClient(http_session, local_stack.ari_url, local_stack.ari_username, local_stack.ari_password)
    cfg = service_config()
    first = await start_service(api=False)
    assert first.node is not None
    assert first.node.inbound_app == f"{cfg.inbound.app}-1"
    # Another websocket takes slot 1 (as a controller that chose at the same
    # moment would): the controller there hears ApplicationReplaced and moves.
    intruder = await http_session.ws_connect(
        events.events_url(local_stack.ari_url, f"{cfg.inbound.app}-1"), headers=client.headers
    )
    try:
        deadline = time.monotonic() + 10
        while first.node.inbound_app != f"{cfg.inbound.app}-2":
            assert time.monotonic() < deadline, first.node.inbound_app
            await asyncio.sleep(0.05)
    finally:
        await intruder.close()
    await wait_for_apps(client, {f"{cfg.inbound.app}-2"})
    assert f"{cfg.inbound.app}-1" not in await registered_apps(client)
    # Served from its new slot.
    (taken_by,) = await controllers_of(local_stack.database_url, [await verify_inbound(api, "090-1234-5900")])
    assert taken_by == first.name


async def test_a_stopping_controller_takes_no_new_inbound_call(
    api: Api, start_service: Starter, local_stack: connections.Connections, http_session: aiohttp.ClientSession
) -> None:
    """A rolling restart: the controller of slot 1 drains a call that lasts,
    and the inbound calls placed meanwhile go to the one that stays up (on
    16 the fallback's Stasis() still reaches the draining controller's slot,
    which passes each call back to the dialplan at the next slot)."""
    lasting = service_config(verification={"first_digit_timeout_seconds": 60})
    leaving = await start_service(api=False, cfg=lasting)
    assert leaving.node is not None
    assert leaving.node.inbound_app == f"{lasting.inbound.app}-1"
    held = await api.create("090-1234-5901", method="inbound", language="en", ask_code=True)
    async with caller("09012345901", timeout=90, port=5094, media_port=6140) as stuck:
        await api.wait_for(held["id"], {"in_call"}, timeout=15)
        staying = await start_service(api=False)
        assert staying.node is not None
        assert staying.node.inbound_app == f"{lasting.inbound.app}-2"
        stopping = asyncio.create_task(leaving.stop(grace=60))
        try:
            await asyncio.sleep(0.5)
            assert not stopping.done()  # still draining the held call
            during = [await verify_inbound(api, f"090-1234-59{n:02d}") for n in (2, 3)]
            assert await controllers_of(local_stack.database_url, during) == [staying.name] * 2
            assert await controllers_of(local_stack.database_url, [held["id"]]) == [leaving.name]
            assert not stopping.done()
        finally:
            # The held call ends (hung up here, so that no channel outlives
            # the test in the slot's app): the drain is over.
            client = ari_client.AriClient(
                http_session, local_stack.ari_url, local_stack.ari_username, local_stack.ari_password
            )
            async with await psycopg.AsyncConnection.connect(local_stack.database_url, autocommit=True) as conn:
                cur = await conn.execute(
                    "SELECT channel_id FROM call_attempts WHERE verification_id = %s", (held["id"],)
                )
                for (channel_id,) in await cur.fetchall():
                    await client.hangup(str(channel_id))
            await asyncio.wait_for(stopping, 30)
            await stuck.stop()
