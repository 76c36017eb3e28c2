"""Outbound DTMF verification end to end: HTTP API → Postgres queue →
controller → Asterisk → SIPp handset, and the result read back over HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from ivr_auth import connections, prompts, states
from ivr_auth_devkit import sipp
from tests.e2e.conftest import Api, Starter, service_config

pytestmark = pytest.mark.e2e

PHONE = "090-1234-5678"
TERMINAL = {s.value for s in states.TERMINAL}


def handset(**kwargs: object) -> sipp.Handset:
    cfg = service_config()
    return sipp.Handset(port=cfg.trunk.port, host=cfg.trunk.host, **kwargs)  # type: ignore[arg-type]


def statuses(log: dict[str, Any]) -> list[str]:
    return [e["to_status"] for e in log["events"] if e["type"] == "status"]


async def test_correct_code_verifies(api: Api, start_service: Starter) -> None:
    await start_service(api=False)
    created = await api.create(PHONE)
    assert created["phone"] == "+819012345678"
    async with handset(keys=created["code"] + "#") as phone:
        done = await api.wait_for(created["id"], TERMINAL)
        sipp_result = await phone.wait()
    assert done["status"] == "verified"
    assert done["code_attempts"] == 0
    assert done["call_attempts"] == 1
    assert sipp_result.ok, sipp_result.errors_log
    log = await api.events(created["id"])
    assert statuses(log) == ["queued", "calling", "in_call", "verified"]
    (call,) = log["calls"]
    assert call["answered_at"] is not None
    assert call["outcome"] == "verified"


async def test_wrong_code_then_correct(api: Api, start_service: Starter) -> None:
    await start_service(api=False)
    created = await api.create(PHONE, code="246810")
    async with handset(keys="135791#,,,246810#") as phone:
        done = await api.wait_for(created["id"], TERMINAL)
        await phone.wait()
    assert done["status"] == "verified"
    assert done["code_attempts"] == 1


async def test_wrong_codes_use_up_the_attempts(api: Api, start_service: Starter) -> None:
    await start_service(api=False)
    created = await api.create(PHONE, code="246810", max_code_attempts=2)
    async with handset(keys="111111#,,,,222222#") as phone:
        done = await api.wait_for(created["id"], TERMINAL)
        await phone.wait()
    assert done["status"] == "failed"
    assert done["reason"] == "code_attempts_exhausted"
    assert done["code_attempts"] == 2
    # The code can no longer be used, not even through the API.
    status, body = await api.call("POST", f"/v1/verifications/{created['id']}/check", {"code": "246810"})
    assert status == 409, body


async def test_no_input_fails_after_reprompt(api: Api, start_service: Starter) -> None:
    await start_service(api=False)
    created = await api.create(PHONE)
    async with handset(keys="") as phone:
        done = await api.wait_for(created["id"], TERMINAL)
        await phone.wait()
    assert done["status"] == "failed"
    assert done["reason"] == "no_input"
    log = await api.events(created["id"])
    assert [e["type"] for e in log["events"]].count("no_input") == 2  # first prompt + one re-prompt


async def test_busy_is_retried_and_the_retry_answers(api: Api, start_service: Starter) -> None:
    await start_service(api=False)
    async with handset(scenario="uas-reject-486.xml") as busy:
        created = await api.create(PHONE)
        await busy.wait()
    # The retry comes retry_delay_seconds (1 s) after the busy: a handset is ready for it.
    async with handset(keys=created["code"]) as phone:
        done = await api.wait_for(created["id"], TERMINAL)
        await phone.wait()
    assert done["status"] == "verified"
    assert done["call_attempts"] == 2
    log = await api.events(created["id"])
    assert statuses(log) == ["queued", "calling", "queued", "calling", "in_call", "verified"]
    busy_call = log["calls"][0]
    assert (busy_call["outcome"], busy_call["cause"]) == ("busy", 17)


async def test_no_answer_after_every_attempt(api: Api, start_service: Starter) -> None:
    await start_service(api=False)
    created = await api.create(PHONE)
    async with handset(scenario="uas-no-answer.xml", calls=2) as phone:
        done = await api.wait_for(created["id"], TERMINAL, timeout=30)
        sipp_result = await phone.wait()
    assert done["status"] == "no_answer"
    # It rang (180) until our ring timer: nobody answered.
    assert done["reason"] == "no_answer"
    assert done["call_attempts"] == 2  # max_call_attempts of the test config
    assert sipp_result.ok, sipp_result.errors_log
    log = await api.events(created["id"])
    assert [c["outcome"] for c in log["calls"]] == ["no_answer"] * 2
    assert [e["detail"]["rang"] for e in log["events"] if e["from_status"] == "calling"] == [True, True]


async def test_a_phone_out_of_reach_is_no_answer_but_says_so(api: Api, start_service: Starter) -> None:
    await start_service(api=False)
    created = await api.create(PHONE)
    # 480 Temporarily Unavailable at once, never a 180: switched off, out of coverage.
    async with handset(scenario="uas-reject-480.xml", calls=2) as phone:
        done = await api.wait_for(created["id"], TERMINAL, timeout=30)
        sipp_result = await phone.wait()
    assert (done["status"], done["reason"]) == ("no_answer", "callee_unavailable"), done
    assert done["call_attempts"] == 2  # retried as no answer is
    assert done["last_call"]["hangup_cause"] == 19
    assert sipp_result.ok, sipp_result.errors_log
    log = await api.events(created["id"])
    assert [(c["outcome"], c["cause"]) for c in log["calls"]] == [("callee_unavailable", 19)] * 2
    assert [e["detail"]["rang"] for e in log["events"] if e["from_status"] == "calling"] == [False, False]


async def test_expired_while_queued_is_never_dialled(
    api: Api, start_service: Starter, local_stack: connections.Connections
) -> None:
    created = await api.create(PHONE)
    async with await psycopg.AsyncConnection.connect(local_stack.database_url, autocommit=True) as conn:
        # As if its ttl ran out while no controller could take it.
        await conn.execute(
            "UPDATE verifications SET expires_at = now() - interval '1 second' WHERE id = %s", (created["id"],)
        )
    await start_service(api=False)
    done = await api.wait_for(created["id"], TERMINAL, timeout=10)
    assert done["status"] == "expired"
    assert done["call_attempts"] == 0


async def test_cancel_while_queued_is_never_dialled(api: Api, start_service: Starter) -> None:
    created = await api.create(PHONE)
    status, body = await api.call("POST", f"/v1/verifications/{created['id']}/cancel")
    assert (status, body["status"]) == (200, "canceled")
    await start_service(api=False)
    await asyncio.sleep(1.5)  # several dialer passes
    after = await api.get(created["id"])
    assert after["status"] == "canceled"
    assert after["call_attempts"] == 0


async def test_cancel_during_the_call_hangs_up(api: Api, start_service: Starter) -> None:
    await start_service(api=False)
    created = await api.create(PHONE)
    async with handset(keys="") as phone:
        await api.wait_for(created["id"], {"in_call"})
        status, _ = await api.call("POST", f"/v1/verifications/{created['id']}/cancel")
        assert status == 200
        await phone.wait()
    # The phone is done once it has the BYE; the controller records the
    # call's end when Asterisk reports the channel gone, a moment later.
    log = await api.events(created["id"])
    deadline = time.monotonic() + 10
    while log["calls"] and log["calls"][0]["ended_at"] is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        log = await api.events(created["id"])
    assert statuses(log)[-1] == "canceled"
    (call,) = log["calls"]
    assert call["ended_at"] is not None


async def test_killed_controller_mid_call_is_settled_by_another(api: Api, start_service: Starter) -> None:
    first = await start_service(api=False)
    created = await api.create(PHONE)
    async with handset(keys="") as phone:
        await api.wait_for(created["id"], {"in_call"})
        await first.kill()  # no drain, no hangup, leases left to run out
        await start_service(api=False)
        done = await api.wait_for(created["id"], TERMINAL, timeout=20)
        await phone.wait()
    assert done["status"] == "error"
    assert done["reason"] == "controller_lost"


async def test_callee_hangs_up_mid_prompt(api: Api, start_service: Starter) -> None:
    await start_service(api=False)
    created = await api.create(PHONE)
    async with handset(hangup_after_ms=1000) as phone:
        done = await api.wait_for(created["id"], TERMINAL)
        sipp_result = await phone.wait()
    assert done["status"] == "hung_up"
    assert done["reason"] == "callee_hung_up"
    assert sipp_result.ok, sipp_result.errors_log
    (call,) = (await api.events(created["id"]))["calls"]
    assert call["outcome"] == "hung_up"


async def test_keys_sent_as_sip_info_verify(api: Api, start_service: Starter) -> None:
    await start_service(api=False)
    created = await api.create(PHONE)
    async with handset(keys=created["code"], dtmf="info") as phone:
        done = await api.wait_for(created["id"], TERMINAL)
        await phone.wait()
    assert done["status"] == "verified"


def numbers(count: int) -> list[str]:
    return [f"+81905555{i:04d}" for i in range(count)]


async def test_two_controllers_dial_each_request_exactly_once(api: Api, start_service: Starter) -> None:
    first = await start_service(api=False)
    second = await start_service(api=False)
    created = [await api.create(n) for n in numbers(12)]
    keys = {c["phone"]: c["code"] for c in created}
    async with handset(keys_by_number=keys, calls=len(keys)) as phone:
        done = [await api.wait_for(c["id"], TERMINAL, timeout=90) for c in created]
        sipp_result = await phone.wait()
    assert [d["status"] for d in done] == ["verified"] * len(created)
    assert all(d["call_attempts"] == 1 for d in done)
    assert sipp_result.successful == len(created)  # SIPp saw each call once
    owners = set()
    for c in created:
        (claimed,) = [e for e in (await api.events(c["id"]))["events"] if e["to_status"] == "calling"]
        owners.add(claimed["detail"]["controller"])
    assert owners <= {first.name, second.name}


async def test_twenty_verifications_at_once(api: Api, start_service: Starter) -> None:
    await start_service(api=False)
    created = await asyncio.gather(*(api.create(n) for n in numbers(20)))
    keys = {c["phone"]: c["code"] for c in created}
    assert len(keys) == 20
    async with handset(keys_by_number=keys, calls=20) as phone:
        done = await asyncio.gather(*(api.wait_for(c["id"], TERMINAL, timeout=120) for c in created))
        sipp_result = await phone.wait()
    assert [d["status"] for d in done] == ["verified"] * 20
    assert sipp_result.successful == 20, sipp_result.errors_log


async def test_a_crash_in_one_call_touches_no_other(
    api: Api, start_service: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_media = prompts.Library.media

    def broken_for_english(self: prompts.Library, name: str, language: str) -> list[str]:
        if language == "en":
            raise RuntimeError("injected failure in one call's flow")
        return real_media(self, name, language)

    monkeypatch.setattr(prompts.Library, "media", broken_for_english)
    await start_service(api=False)
    doomed, healthy = numbers(2)
    crash = await api.create(doomed, language="en")
    fine = await api.create(healthy, language="ja")
    async with handset(keys_by_number={doomed: crash["code"], healthy: fine["code"]}, calls=2) as phone:
        crashed = await api.wait_for(crash["id"], TERMINAL)
        survived = await api.wait_for(fine["id"], TERMINAL)
        sipp_result = await phone.wait()
    assert (crashed["status"], crashed["reason"]) == ("error", "internal_error")
    assert survived["status"] == "verified"
    (call,) = (await api.events(crash["id"]))["calls"]
    assert call["ended_at"] is not None  # the crashed call was hung up, not left in silence
    assert sipp_result.successful == 2, sipp_result.errors_log
