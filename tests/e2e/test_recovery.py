"""Failure recovery: the service keeps its promises when Asterisk or
Postgres restarts under it, and a burst of requests gets an answer each."""

from __future__ import annotations

import asyncio
import copy
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr_auth import config, connections, states
from ivr_auth_devkit import sipp, stack
from ivr_auth_devkit.stack import asterisk, postgres, secrets
from tests.conftest import settings_from_env
from tests.e2e.conftest import FAST, Api, Starter, service_config

pytestmark = pytest.mark.e2e

TERMINAL = {s.value for s in states.TERMINAL}


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
