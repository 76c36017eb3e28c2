"""Each kind of SIPp handset against the real Asterisk, through the probe
call: pauses inside a key sequence, a callee that hangs up, the reject
codes, keys sent as SIP INFO, and one SIPp answering many calls at once.

These run on the demo stack of ivr-auth.yaml (trunk to 127.0.0.1:5080), not
on the test stack of tests/conftest.py, so they can run beside the rest of
the suite."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr_auth import causes, config, connections, ports, probe
from ivr_auth.ari import node as ari_node
from ivr_auth_devkit import sipp, sipp_scenarios
from tests.conftest import stack_for_session, with_test_asterisk

pytestmark = pytest.mark.e2e

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "ivr-auth.yaml"
NUMBER = "+819012345678"
# SIPp binds -mp and -mp + 2; by-number handsets offer -mp + 4 per call, unbound.
MEDIA_PORTS = range(6000, 7000, 10)


@pytest.fixture(scope="session")
def demo_config() -> config.Config:
    return with_test_asterisk(config.load(DEMO_CONFIG, environ={}), os.environ)


@pytest.fixture(scope="session")
def demo_stack(demo_config: config.Config) -> Iterator[connections.Connections]:
    """The demo stack, up for the whole session."""
    yield from stack_for_session(demo_config)


@pytest.fixture
async def demo_ari(
    demo_stack: connections.Connections, http_session: aiohttp.ClientSession, request: pytest.FixtureRequest
) -> AsyncIterator[ari_node.AriNode]:
    app = f"ivr-auth-handsets-{abs(hash(request.node.nodeid)) % 10**8}"
    node = ari_node.AriNode(http_session, demo_stack.ari_url, demo_stack.ari_username, demo_stack.ari_password, app)
    await node.start()
    yield node
    await node.close()


def handset(cfg: config.Config, **kwargs: Any) -> sipp.Handset:
    host = cfg.trunk.host
    media_port = next(p for p in MEDIA_PORTS if all(ports.is_free(host, q, socket.SOCK_DGRAM) for q in (p, p + 2)))
    return sipp.Handset(port=cfg.trunk.port, host=host, media_port=media_port, **kwargs)


async def call(
    node: ari_node.AriNode, cfg: config.Config, phone: sipp.Handset, number: str = NUMBER, **options: Any
) -> tuple[probe.ProbeResult, sipp.SippResult]:
    async with phone:
        result = await probe.call(node, cfg, number, probe.ProbeOptions(**options))
        sipp_result = await phone.wait()
    return result, sipp_result


# --- pauses --------------------------------------------------------------------------


@pytest.mark.parametrize(("keys", "digits"), [("12,,34", "1234"), ("77,77", "7777")])
async def test_keys_after_a_pause_arrive(
    demo_ari: ari_node.AriNode, demo_config: config.Config, keys: str, digits: str
) -> None:
    result, sipp_result = await call(
        demo_ari, demo_config, handset(demo_config, keys=keys), max_digits=4, inter_digit_timeout=4.0
    )

    assert result.digits == digits
    assert result.entry_ended == "max_digits"
    assert sipp_result.ok, sipp_result.errors_log or sipp_result.output


async def test_a_pause_is_really_a_pause(demo_ari: ari_node.AriNode, demo_config: config.Config) -> None:
    # 2 s of pause + the key gap is longer than this inter-digit timeout.
    result, sipp_result = await call(
        demo_ari, demo_config, handset(demo_config, keys="12,,34"), max_digits=4, inter_digit_timeout=1.5
    )

    assert result.digits == "12"
    assert result.entry_ended == "timeout"
    assert sipp_result.ok, sipp_result.errors_log or sipp_result.output


# --- the callee hangs up -------------------------------------------------------------


async def test_handset_hangs_up_by_itself(demo_ari: ari_node.AriNode, demo_config: config.Config) -> None:
    result, sipp_result = await call(
        demo_ari, demo_config, handset(demo_config, hangup_after_ms=1500), first_digit_timeout=15.0
    )

    assert result.outcome is causes.Outcome.ANSWERED
    assert result.hung_up_by_callee
    assert result.entry_ended == "hangup"
    assert result.cause == causes.NORMAL_CLEARING
    # Ring (0.3 s) + 1.5 s, well before the first-digit timeout.
    assert 1.5 < result.duration_seconds < 6
    assert sipp_result.ok, sipp_result.errors_log or sipp_result.output


@pytest.mark.parametrize("dtmf", ["rfc2833", "info"])
async def test_handset_keys_then_hangs_up(
    demo_ari: ari_node.AriNode, demo_config: config.Config, dtmf: sipp_scenarios.Dtmf
) -> None:
    phone = handset(demo_config, keys="12", dtmf=dtmf, first_key_ms=1000, hangup_after_ms=1000)
    result, sipp_result = await call(demo_ari, demo_config, phone, max_digits=6, inter_digit_timeout=10.0)

    assert result.hung_up_by_callee
    # Answer, 1 s, two keys, 1 s: the hangup came after the keys.
    assert result.duration_seconds > 2.3
    assert sipp_result.ok, sipp_result.errors_log or sipp_result.output


async def test_hangup_handset_ends_well_when_we_hang_up_first(
    demo_ari: ari_node.AriNode, demo_config: config.Config
) -> None:
    phone = handset(demo_config, keys="1234", hangup_after_ms=10_000)
    result, sipp_result = await call(demo_ari, demo_config, phone, max_digits=4)

    assert result.digits == "1234"
    assert not result.hung_up_by_callee
    assert sipp_result.ok, sipp_result.errors_log or sipp_result.output


# --- reject codes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "outcome", "cause"),
    [
        (486, causes.Outcome.BUSY, 17),
        (603, causes.Outcome.REJECTED, 21),
        # No 180 before it: the phone is off or out of reach, not unanswered.
        (480, causes.Outcome.CALLEE_UNAVAILABLE, 19),
        (404, causes.Outcome.UNREACHABLE, 1),
        # The carrier failed, not the callee.
        (503, causes.Outcome.TRUNK_FAILED, 34),
    ],
)
async def test_reject_code_maps_to_its_outcome(
    demo_ari: ari_node.AriNode, demo_config: config.Config, code: int, outcome: causes.Outcome, cause: int
) -> None:
    ring_timeout = 20
    phone = handset(demo_config, scenario=f"uas-reject-{code}.xml")
    result, sipp_result = await call(demo_ari, demo_config, phone, ring_timeout=ring_timeout)

    assert result.outcome is outcome
    assert result.cause == cause
    assert result.setup_seconds is None
    # Reported from the response itself, not from the ring timeout running out.
    assert result.duration_seconds < ring_timeout / 2
    assert sipp_result.ok, sipp_result.errors_log or sipp_result.output


# --- SIP INFO ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "max_digits", "digits", "ended"),
    [("2580#", 8, "2580", "terminator"), ("11,11", 4, "1111", "max_digits"), ("90*12#", 8, "12", "terminator")],
)
async def test_info_keys_arrive(
    demo_ari: ari_node.AriNode, demo_config: config.Config, keys: str, max_digits: int, digits: str, ended: str
) -> None:
    phone = handset(demo_config, keys=keys, dtmf="info")
    result, sipp_result = await call(demo_ari, demo_config, phone, max_digits=max_digits)

    assert result.digits == digits
    assert result.entry_ended == ended
    assert sipp_result.ok, sipp_result.errors_log or sipp_result.output


async def test_info_handset_ends_well_when_we_hang_up_between_keys(
    demo_ari: ari_node.AriNode, demo_config: config.Config
) -> None:
    phone = handset(demo_config, keys="123456", dtmf="info")
    result, sipp_result = await call(demo_ari, demo_config, phone, max_digits=2)

    assert result.digits == "12"
    assert sipp_result.ok, sipp_result.errors_log or sipp_result.output


# --- many calls, one SIPp ------------------------------------------------------------


async def test_each_number_keys_its_own_code_on_concurrent_calls(
    demo_ari: ari_node.AriNode, demo_config: config.Config
) -> None:
    rng = random.Random()
    codes = {f"+8190123{40001 + i:05d}": "".join(rng.choice("0123456789") for _ in range(6)) for i in range(20)}
    silent = [f"+8190555{40001 + i:05d}" for i in range(5)]
    numbers = [*codes, *silent]
    rng.shuffle(numbers)
    options = probe.ProbeOptions(max_digits=6, first_digit_timeout=4.0)

    async with handset(demo_config, keys_by_number=codes, calls=len(numbers)) as phone:
        results = await asyncio.gather(*(probe.call(demo_ari, demo_config, n, options) for n in numbers))
        sipp_result = await phone.wait()

    got = {r.number: r.digits for r in results}
    assert got == {**codes, **dict.fromkeys(silent, "")}
    assert {r.entry_ended for r in results if r.number in codes} == {"max_digits"}
    assert {r.entry_ended for r in results if r.number in silent} == {"timeout"}
    assert sipp_result.ok, sipp_result.errors_log or sipp_result.output
    assert sipp_result.successful == len(numbers)
