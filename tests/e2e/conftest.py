"""The whole service in-process against the test stack: the HTTP API and a
controller (several where a test asks), talking to real Postgres, real
Asterisk and real SIPp handsets."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from ivr_auth import config, connections, models, runtime
from ivr_auth_devkit import smsc as smsc_mod
from ivr_auth_devkit import stack
from ivr_auth_devkit.stack import smsc as stack_smsc
from tests.conftest import ROOT, settings_from_env

FAST: dict[str, Any] = {
    "verification": {
        "ring_timeout_seconds": 4,
        "retry_delay_seconds": 1,
        "first_digit_timeout_seconds": 2.5,
        "inter_digit_timeout_seconds": 2,
        "no_input_retries": 1,
        "max_call_attempts": 2,
    },
    "dialer": {
        "poll_interval_seconds": 0.2,
        "lease_seconds": 3,
        "reaper_interval_seconds": 0.5,
        "node_lost_seconds": 2,
    },
    "trunk": {"calls_per_second": 50, "max_channels": 40},
}


def service_config(**overrides: Any) -> config.Config:
    """The test settings with FAST and ``overrides`` merged in, section by
    section; a list (``trunks``) replaces what was there."""
    settings = copy.deepcopy(settings_from_env(os.environ))
    for source in (FAST, overrides):
        for section, values in source.items():
            if isinstance(values, list):
                settings[section] = values
                continue
            current = settings.setdefault(section, {})
            assert isinstance(current, dict)
            current.update(values)
    return config.from_mapping(settings)


@pytest.fixture
async def clean_queue(local_stack: connections.Connections) -> None:
    """No request left open by an earlier test may be dialled into this one,
    and no call it left open, or trunk it marked down (or whose tokens it
    spent), counts against this one's trunk limits."""
    async with await psycopg.AsyncConnection.connect(local_stack.database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE verifications SET status = 'canceled', reason = 'test_cleanup', finished_at = now()"
            " WHERE status IN ('queued', 'calling', 'in_call', 'sent', 'delivered')"
        )
        await conn.execute("UPDATE call_attempts SET ended_at = now(), outcome = 'test_cleanup' WHERE ended_at IS NULL")
        await conn.execute("DELETE FROM trunk_state")


class Api:
    """A tenant's view of the HTTP API."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str) -> None:
        self.session = session
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"}

    async def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        async with self.session.request(
            method, self.base_url + path, json=body, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs
        ) as resp:
            return resp.status, await resp.json()

    async def create(self, phone: str, **fields: Any) -> dict[str, Any]:
        status, body = await self.call("POST", "/v1/verifications", {"phone": phone, "method": "dtmf", **fields})
        assert status == 201, body
        return body

    async def get(self, verification_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/v1/verifications/{verification_id}")
        assert status == 200, body
        return body

    async def events(self, verification_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/v1/verifications/{verification_id}/events")
        assert status == 200, body
        return body

    async def wait_for(self, verification_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = await self.get(verification_id)
            if body["status"] in statuses:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"still {body['status']} after {timeout}s, wanted {statuses}: {body}")
            await asyncio.sleep(0.1)


Starter = Callable[..., Coroutine[Any, Any, runtime.Runtime]]

# The SMS sender at the tests' pace: due messages found within 0.2 s, a lost
# bind tried again within a second.
SMS_FAST: dict[str, Any] = {"poll_interval_seconds": 0.2, "lease_seconds": 3}
CARRIER_FAST: dict[str, Any] = {
    "enquire_link_seconds": 5,
    "response_timeout_seconds": 5,
    "reconnect_min_seconds": 0.2,
    "reconnect_max_seconds": 1,
}


def local_smsc_carrier(cfg: config.Config) -> dict[str, Any]:
    """The ``sms.carriers`` entry of the test stack's SMSC, at the tests' pace."""
    carrier = stack.smsc_carrier(cfg)
    assert carrier is not None, f"the test stack's SMSC is not running (run dir {cfg.run_dir})"
    return {**carrier, **CARRIER_FAST}


def with_sms(cfg: config.Config, carriers: list[dict[str, Any]] | None = None) -> config.Config:
    """``cfg`` sending SMS through ``carriers`` (default: the test stack's SMSC)
    at the tests' pace, unless it names carriers of its own."""
    if cfg.sms.carriers and carriers is None:
        return cfg
    return config.with_overrides(cfg, sms={**SMS_FAST, "carriers": carriers or [local_smsc_carrier(cfg)]})


async def start_runtime(
    cfg: config.Config,
    endpoints: connections.Connections,
    *,
    prefix: str = "test",
    api: bool = False,
    dialer: bool = True,
    fastagi: bool = False,
    sms: bool = False,
) -> runtime.Runtime:
    """A started runtime with a name (and so a Stasis app) of its own; the
    caller stops it. ``sms``: with the SMS sender, through the carriers of
    ``cfg``, or the test stack's SMSC when it names none."""
    rt = runtime.Runtime(
        with_sms(cfg) if sms else cfg,
        endpoints,
        api=api,
        dialer=dialer,
        name=f"{prefix}-{uuid.uuid4().hex[:8]}",
        http_port=0,
        fastagi=fastagi,
        sms=sms,
    )
    await rt.start()
    return rt


@pytest.fixture
async def start_service(local_stack: connections.Connections, clean_queue: None) -> AsyncIterator[Starter]:
    """Start API and/or controllers; all are stopped after the test."""
    started: list[runtime.Runtime] = []

    async def start(
        *,
        api: bool = True,
        dialer: bool = True,
        fastagi: bool = False,
        sms: bool = False,
        cfg: config.Config | None = None,
    ) -> runtime.Runtime:
        # FastAGI listens on the test stack's fixed agi.listen port (its
        # dialplan points there): only the tests that need it start it.
        rt = await start_runtime(cfg or service_config(), local_stack, api=api, dialer=dialer, fastagi=fastagi, sms=sms)
        started.append(rt)
        return rt

    yield start
    for rt in reversed(started):
        # Runtime.stop bounds each of its steps; this bounds the whole.
        await asyncio.wait_for(rt.stop(grace=5), 90)


@pytest.fixture
async def api(start_service: Starter, http_session: aiohttp.ClientSession, tenant: tuple[models.Tenant, str]) -> Api:
    """The API (no controller yet) and a fresh tenant's client for it."""
    rt = await start_service(dialer=False)
    assert rt.http_url is not None
    return Api(http_session, rt.http_url, tenant[1])


@pytest.fixture
async def smsc(local_stack: connections.Connections, stack_config: config.Config) -> smsc_mod.Smsc:
    """The test stack's SMSC, its records, receipts and rules cleared for this test."""
    found = await asyncio.to_thread(stack_smsc.running, stack_config)
    assert found is not None, f"the test stack's SMSC is not running (run dir {stack_config.run_dir})"
    await asyncio.to_thread(found.reset)
    return found


@contextlib.asynccontextmanager
async def extra_asterisk(
    local_stack: connections.Connections, run_dir: str, stack_ports: dict[str, int], **overrides: Any
) -> AsyncIterator[tuple[config.Config, connections.Connections]]:
    """Another Asterisk instance of the project's own, on ports of its own,
    whose controllers share the test stack's Postgres: a second node, or a
    node with another trunk layout. Stopped on exit."""
    cfg = service_config(
        stack={"run_dir": run_dir, **stack_ports},
        **overrides,
    )
    cfg = cfg.replace(database_url=local_stack.database_url, server_secret=local_stack.server_secret)
    endpoints = await stack.up(cfg)
    try:
        yield cfg, endpoints
    finally:
        await stack.down(cfg)


@dataclass(frozen=True)
class Installed:
    venv: Path
    site_packages: Path

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "ivr-auth"


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel built, checked and installed once per session (about 15 s, most
    of it pip installing the dependencies from its cache)."""
    work = tmp_path_factory.mktemp("installed-wheel")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check-wheel.py"), "--keep", str(work)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"wheel built, checked and installed in {time.monotonic() - started:.1f}s")
    venv = work / "venv"
    (site_packages,) = (venv / "lib").glob("python3*/site-packages")
    assert not (site_packages / "ivr_auth_devkit").exists()
    return Installed(venv, site_packages)
