"""``ivr-auth doctor`` against the real test stack: all ok when healthy, and
each fault named in plain words. The trunk (127.0.0.1:5082) answers the
doctor's SIP OPTIONS only where a test starts a SIPp that does."""

from __future__ import annotations

import copy
import os
import shutil
import socket
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from ivr_auth import cli, config, connections, doctor, prompts
from ivr_auth_devkit import sipp, stack
from ivr_auth_devkit.stack import install
from tests.conftest import settings_from_env
from tests.e2e.conftest import Starter

pytestmark = pytest.mark.e2e


def settings_with(**overrides: Any) -> config.Config:
    settings = copy.deepcopy(settings_from_env(os.environ))
    for section, values in overrides.items():
        if isinstance(values, dict):
            current = settings.setdefault(section, {})
            assert isinstance(current, dict)
            current.update(values)
        else:
            settings[section] = values
    return config.from_mapping(settings)


async def results_of(cfg: config.Config, library: prompts.Library | None = None) -> dict[str, doctor.Result]:
    """The doctor on ``cfg``, with the test stack's connections for what it leaves unset."""
    cfg = stack.completed(cfg, stack.endpoints(cfg))
    return {r.check: r for r in await doctor.run(cfg, library=library)}


def failures(results: dict[str, doctor.Result]) -> dict[str, str]:
    return {name: r.detail for name, r in results.items() if r.status == "fail"}


@pytest.fixture
async def trunk_answers(stack_config: config.Config) -> AsyncIterator[None]:
    """A real SIPp on the test trunk's address answering OPTIONS with 200."""
    handset = sipp.Handset(
        port=stack_config.trunk.port, host=stack_config.trunk.host, scenario="uas-options-200.xml", calls=1000
    )
    await handset.start()
    try:
        yield
    finally:
        await handset.stop()
        await handset.wait(10)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_all_ok_on_the_healthy_stack(
    local_stack: connections.Connections, stack_config: config.Config, trunk_answers: None
) -> None:
    results = await results_of(stack_config)
    assert failures(results) == {}
    assert set(results) == {
        "database",
        "clock",
        "ari",
        "asterisk modules",
        "ari apps",
        "sip timers",
        "trunk trunk",
        "trunk trunk sip",
        "prompts",
        "fastagi",
        # The test stack's SMSC, which stack.completed names as its carrier: bound, then unbound.
        "sms carrier local-smsc",
    }
    assert results["sip timers"].status == "ok"
    # An Asterisk past its end of life (the host's 16 under make test-e2e-host) is warned of.
    version = install.resolve(stack_config.stack).version()
    assert version is not None
    assert results["ari"].status == ("warn" if version < (20,) else "ok"), results["ari"].detail
    # The stack's Asterisk runs the include files an operator installs.
    assert results["asterisk modules"].detail.startswith("every module ivr-auth uses is loaded")
    assert results["trunk trunk"].detail.endswith("its calls enter ivr-auth-inbound, through transport transport-udp")
    assert "127.0.0.1:5082 (udp) answered a SIP OPTIONS with 200 OK" in results["trunk trunk sip"].detail
    # No controller runs here: a warning, which does not fail the run.
    assert results["ari apps"].status == "warn"
    assert results["ari apps"].detail.startswith(
        f"no controller is connected to ARI node {local_stack.ari_url.split('/')[2]}"
    )
    assert "apps ivr-auth-test-*, ivr-auth-test-inbound-<n> not registered" in results["ari apps"].detail


async def test_a_running_controller_is_seen(
    local_stack: connections.Connections, stack_config: config.Config, start_service: Starter
) -> None:
    rt = await start_service(api=False, dialer=True)
    results = await results_of(stack_config)
    assert results["ari apps"].status == "ok"
    assert f"ivr-auth-test-{rt.name}" in results["ari apps"].detail
    assert "inbound slots held: ivr-auth-test-inbound-1" in results["ari apps"].detail


async def test_an_unreachable_trunk(local_stack: connections.Connections) -> None:
    port = free_udp_port()
    problems = failures(await results_of(settings_with(trunks=[{"name": "trunk", "port": port}])))
    assert set(problems) == {"trunk trunk sip"}
    assert f"trunk trunk at 127.0.0.1:{port} (udp)" in problems["trunk trunk sip"]


async def test_timer_b_not_matching_the_trunk_timeout(
    local_stack: connections.Connections, trunk_answers: None
) -> None:
    # The stack was rendered with the default 8 s.
    problems = failures(await results_of(settings_with(dialer={"trunk_timeout_seconds": 20})))
    assert set(problems) == {"sip timers"}
    assert "8000 ms" in problems["sip timers"]
    assert "timer_t1 = 313 and timer_b = 20032" in problems["sip timers"]


async def test_wrong_ari_password(local_stack: connections.Connections, trunk_answers: None) -> None:
    cfg = settings_with(ari={"url": local_stack.ari_url, "password": "not-the-password"})
    problems = failures(await results_of(cfg))
    assert "wrong ARI username or password" in problems["ari"]
    assert "not-the-password" not in " ".join(problems.values())
    assert set(problems) == {"ari", "asterisk modules", "ari apps", "sip timers", "trunk trunk"}


async def test_missing_trunk_endpoint(local_stack: connections.Connections, trunk_answers: None) -> None:
    cfg = settings_with(trunks=[{"name": "trunk", "port": 5082}, {"name": "no-such-trunk", "port": 5084}])
    problems = failures(await results_of(cfg))
    # Nothing listens on 5084 either.
    assert set(problems) == {"trunk no-such-trunk", "trunk no-such-trunk sip"}
    assert "trunk endpoint no-such-trunk missing" in problems["trunk no-such-trunk"]


async def test_a_trunk_sending_through_a_transport_asterisk_lacks(
    local_stack: connections.Connections, stack_config: config.Config, trunk_answers: None
) -> None:
    """An operator's transport called otherwise than the endpoint says: the
    running Asterisk's endpoint names a transport it does not have."""
    instance = stack.asterisk.Instance
    lacking = config.with_overrides(stack_config, trunk={"pjsip_transport": "wan-udp"})
    try:
        await instance(lacking, lacking.run_dir, local_stack.ari_password).start()
        problems = failures(await results_of(settings_with(trunk={"pjsip_transport": "wan-udp"})))
    finally:
        await instance(stack_config, stack_config.run_dir, local_stack.ari_password).start()
    assert set(problems) == {"trunk trunk"}
    assert "PJSIP transport 'wan-udp', which this Asterisk does not have" in problems["trunk trunk"]
    assert "pjsip_transport" in problems["trunk trunk"]
    # Back as it was, the check passes and names the transport.
    assert (await results_of(settings_with()))["trunk trunk"].detail.endswith("through transport transport-udp")


async def test_missing_prompt(
    local_stack: connections.Connections, stack_config: config.Config, tmp_path: Path, trunk_answers: None
) -> None:
    copied = tmp_path / "prompts"
    shutil.copytree(prompts.SHIPPED_DIR, copied)
    (copied / "ja" / "goodbye.wav").unlink()
    problems = failures(await results_of(stack_config, prompts.Library(shipped_dir=copied)))
    assert set(problems) == {"prompts"}
    assert "ja/goodbye.wav" in problems["prompts"]


@pytest.fixture
async def empty_database_url(local_stack: connections.Connections) -> AsyncIterator[str]:
    name = f"doctor_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(local_stack.database_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield urllib.parse.urlsplit(local_stack.database_url)._replace(path=f"/{name}").geturl()
    finally:
        async with await psycopg.AsyncConnection.connect(local_stack.database_url, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


async def test_database_not_migrated(
    local_stack: connections.Connections, empty_database_url: str, trunk_answers: None
) -> None:
    cfg = settings_with(database_url=empty_database_url, server_secret=local_stack.server_secret)
    problems = failures(await results_of(cfg))
    assert set(problems) == {"database"}
    assert "not migrated" in problems["database"]
    assert "ivr-auth migrate" in problems["database"]


def test_the_command(
    local_stack: connections.Connections,
    stack_config: config.Config,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As in production: the connections from the environment.
    monkeypatch.setenv("IVR_AUTH_DATABASE_URL", local_stack.database_url)
    monkeypatch.setenv("IVR_AUTH_SERVER_SECRET", local_stack.server_secret)
    path = tmp_path / "ivr-auth.yaml"
    settings = copy.deepcopy(settings_from_env(os.environ))
    settings["stack"] = {**settings["stack"], "run_dir": str(stack_config.run_dir)}  # type: ignore[dict-item]
    settings["ari"] = {"app": "ivr-auth-test", "url": local_stack.ari_url, "password": "wrong-password"}
    path.write_text(yaml.safe_dump(settings))
    assert cli.main(["-c", str(path), "doctor", "--max-clock-skew", "0.000000001"]) == 1
    out = capsys.readouterr().out
    assert "ok    database: reachable, schema up to date" in out
    assert "FAIL  ari: wrong ARI username or password" in out
    assert "(more than 1e-09s)" in out
    for secret in ("wrong-password", local_stack.server_secret, local_stack.ari_password):
        assert secret not in out
