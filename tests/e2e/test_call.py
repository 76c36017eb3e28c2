"""A real call: ARI originates through the local Asterisk to a SIPp handset,
plays a prompt, and collects the RFC 2833 keys the handset sends."""

from __future__ import annotations

import asyncio
import random

import pytest

from ivr_auth import causes, config, connections, errors, probe
from ivr_auth.ari import node as ari_node
from ivr_auth_devkit import sipp, stack

pytestmark = pytest.mark.e2e

NUMBER = "+819012345678"


def handset(cfg: config.Config, **kwargs: object) -> sipp.Handset:
    return sipp.Handset(port=cfg.trunk.port, host=cfg.trunk.host, **kwargs)  # type: ignore[arg-type]


async def test_keyed_digits_arrive_exactly(ari: ari_node.AriNode, stack_config: config.Config) -> None:
    code = "".join(random.choice("0123456789") for _ in range(8))
    async with handset(stack_config, keys=code) as phone:
        result = await probe.call(ari, stack_config, NUMBER, probe.ProbeOptions(max_digits=len(code)))
        sipp_result = await phone.wait()
    assert result.outcome is causes.Outcome.ANSWERED
    assert result.digits == code
    assert result.entry_ended == "max_digits"
    assert result.cause == causes.NORMAL_CLEARING
    assert not result.hung_up_by_callee
    assert sipp_result.ok, sipp_result.errors_log or sipp_result.output


async def test_repeated_and_descending_digits_then_terminator(
    ari: ari_node.AriNode, stack_config: config.Config
) -> None:
    # Repeats and a lower digit after a higher one are what SIPp's stock pcaps lose.
    async with handset(stack_config, keys="99310#") as phone:
        result = await probe.call(ari, stack_config, NUMBER, probe.ProbeOptions(max_digits=10))
        await phone.wait()
    assert result.digits == "99310"
    assert result.entry_ended == "terminator"


async def test_star_restarts_entry(ari: ari_node.AriNode, stack_config: config.Config) -> None:
    async with handset(stack_config, keys="12*3456") as phone:
        result = await probe.call(ari, stack_config, NUMBER, probe.ProbeOptions(max_digits=4))
        await phone.wait()
    assert result.digits == "3456"


async def test_busy_486_is_reported_as_busy(ari: ari_node.AriNode, stack_config: config.Config) -> None:
    ring_timeout = 20
    async with handset(stack_config, scenario="uas-reject-486.xml") as phone:
        result = await probe.call(ari, stack_config, NUMBER, probe.ProbeOptions(ring_timeout=ring_timeout))
        sipp_result = await phone.wait()
    assert result.outcome is causes.Outcome.BUSY
    assert result.cause == 17
    assert result.setup_seconds is None
    # Reported from the 486 itself, not from the ring timeout running out.
    assert result.duration_seconds < ring_timeout / 2
    assert sipp_result.ok, sipp_result.errors_log or sipp_result.output


async def test_unanswered_call_is_no_answer(ari: ari_node.AriNode, stack_config: config.Config) -> None:
    async with handset(stack_config, scenario="uas-no-answer.xml") as phone:
        result = await probe.call(ari, stack_config, NUMBER, probe.ProbeOptions(ring_timeout=2))
        sipp_result = await phone.wait()
    assert result.outcome is causes.Outcome.NO_ANSWER
    assert result.digits == ""
    assert sipp_result.ok, sipp_result.errors_log or sipp_result.output


async def test_silent_callee_times_out_with_no_digits(ari: ari_node.AriNode, stack_config: config.Config) -> None:
    async with handset(stack_config, keys="") as phone:
        result = await probe.call(
            ari, stack_config, NUMBER, probe.ProbeOptions(first_digit_timeout=1.5, inter_digit_timeout=1.0)
        )
        sipp_result = await phone.wait()
    assert result.outcome is causes.Outcome.ANSWERED
    assert result.digits == ""
    assert result.entry_ended == "timeout"
    assert sipp_result.ok, sipp_result.errors_log or sipp_result.output


async def test_originate_refused_when_app_has_no_websocket(ari: ari_node.AriNode, stack_config: config.Config) -> None:
    await ari.close()
    # Asterisk would accept this originate and then lose the call on answer.
    with pytest.raises(errors.AppNotRegistered):
        await probe.call(ari, stack_config, NUMBER, probe.ProbeOptions())


async def test_events_reconnect_after_asterisk_restart(
    ari: ari_node.AriNode, stack_config: config.Config, local_stack: connections.Connections
) -> None:
    connects = ari.stream.connects
    instance = stack.asterisk.Instance(stack_config, stack_config.run_dir, local_stack.ari_password)
    await instance.stop()
    await instance.start()
    for _ in range(200):
        if ari.stream.connects > connects and ari.stream.connected:
            break
        await asyncio.sleep(0.1)
    assert ari.stream.connects > connects, ari.stream.last_error
    async with handset(stack_config, keys="2468") as phone:
        result = await probe.call(ari, stack_config, NUMBER, probe.ProbeOptions(max_digits=4))
        await phone.wait()
    assert result.digits == "2468"
