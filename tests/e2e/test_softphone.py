"""Each method with a real softphone: baresip (Debian's baresip-core), run
by ``ivr_auth_devkit.softphone``, answers the controller's call or calls the
published number from the registered phone, keys with RFC 4733 events from
its own RTP stack once it hears the prompt, and records what it heard; the
request is read back over HTTP. Prompts are the Japanese ones."""

from __future__ import annotations

import os
from typing import Any

import pytest

from ivr_auth import prompts, states
from ivr_auth_devkit import softphone
from tests.e2e.conftest import Api, Starter, service_config

pytestmark = pytest.mark.e2e

REGISTERED = "090-1234-5678"
E164 = "+819012345678"
# The test stack's published number served by the Stasis app (tests/conftest.py).
PUBLISHED = "05012345678"
LANG = "ja"
TERMINAL = {s.value for s in states.TERMINAL}
SETTLED = TERMINAL | {"delivered"}
VOICE: dict[str, Any] = {"voice_key_timeout_seconds": 2.0}
# A call's first and last frames may go unrecorded (seen: up to 0.2 s).
EDGES = 0.5
LIBRARY = prompts.Library()


def callee() -> softphone.Softphone:
    """The registered phone on the trunk: the test trunk dials E.164."""
    cfg = service_config()
    return softphone.Softphone(user=E164, host=cfg.trunk.host, sip_port=cfg.trunk.port)


def caller(user: str) -> softphone.Softphone:
    """A phone that calls in, on ports of its own (beside a callee's)."""
    return softphone.Softphone(user=user, sip_port=5092, ctrl_port=4446, rtp_ports=(10030, 10050), auto_answer=False)


def published_uri() -> str:
    cfg = service_config()
    return f"sip:{PUBLISHED}@{cfg.stack.bind}:{cfg.stack.sip_port}"


def seconds(*names: str) -> float:
    return sum(LIBRARY.duration_ms(name, LANG) for name in names) / 1000


def statuses(log: dict[str, Any]) -> list[str]:
    return [e["to_status"] for e in log["events"] if e["type"] == "status"]


# --- dtmf -----------------------------------------------------------------------------


async def test_dtmf_code_keyed_once_the_prompt_is_heard(api: Api, start_service: Starter) -> None:
    await start_service(api=False)
    async with callee() as phone:
        created = await api.create(REGISTERED, language=LANG)
        assert created["phone"] == E164
        await phone.wait_event(softphone.ESTABLISHED)
        await phone.wait_heard(voiced_seconds=0.3)
        await phone.send_keys(created["code"] + "#")
        done = await api.wait_for(created["id"], TERMINAL)
        await phone.wait_event(softphone.CLOSED)
        heard = phone.heard()
    assert done["status"] == "verified", done
    assert done["code_attempts"] == 0
    log = await api.events(created["id"])
    assert statuses(log) == ["queued", "calling", "in_call", "verified"]
    # The start of the greeting (cut short by the first key), then the whole
    # of "verified" before we hung up.
    assert heard.rms > 200, heard
    assert heard.voiced_seconds >= seconds("verified") / 2, heard
    assert seconds("verified") <= heard.seconds <= seconds("greeting", "enter_code_6", "verified") + 2, heard


async def test_dtmf_hash_during_the_greeting_spoils_nothing(api: Api, start_service: Starter) -> None:
    # Issue 14, item 1: a key pressed before the prompt ends must never
    # corrupt the next entry. An empty entry is not a wrong code.
    await start_service(api=False)
    async with callee() as phone:
        created = await api.create(REGISTERED, language=LANG)
        await phone.wait_event(softphone.ESTABLISHED)
        before = await phone.wait_heard(voiced_seconds=0.3)
        assert before.seconds < seconds("greeting") - 1, before
        await phone.send_keys("#")
        # Listen on a little (whatever plays after the '#'), then key the code.
        await phone.wait_heard(seconds=before.seconds + 1.5)
        await phone.send_keys(created["code"] + "#")
        done = await api.wait_for(created["id"], TERMINAL)
        await phone.wait_event(softphone.CLOSED)
    assert done["status"] == "verified", (done, await api.events(created["id"]))
    assert done["code_attempts"] == 0


# --- voice ----------------------------------------------------------------------------


async def test_voice_code_heard_then_checked(api: Api, start_service: Starter) -> None:
    await start_service(api=False, cfg=service_config(verification=VOICE))
    async with callee() as phone:
        created = await api.create(REGISTERED, method="voice", language=LANG)
        await phone.wait_event(softphone.ESTABLISHED)
        # Presses 1 when asked: towards the end of "press a key to hear the code".
        asked = await phone.wait_heard(seconds=seconds("greeting", "press_to_hear") - 0.5)
        await phone.send_keys("1")
        delivered = await api.wait_for(created["id"], SETTLED)
        await phone.wait_event(softphone.CLOSED)
        heard = phone.heard()
    assert delivered["status"] == "delivered", delivered
    assert delivered["answered_by"] == "human"
    code = created["code"]
    read_out = (
        seconds("code_is", *(f"digit_{d}" for d in code), *(f"digit_{d}" for d in code))
        + 2 * 1.0  # the pause before each reading
        + 2 * (len(code) - 1) * 0.3  # between the digits
    )
    # After the key: the code read twice, the offer to repeat, goodbye.
    after_key = heard.seconds - asked.seconds
    assert read_out <= after_key <= read_out + seconds("press_1_to_repeat", "goodbye") + 3, (heard, asked, read_out)
    assert heard.voiced_seconds - asked.voiced_seconds >= read_out / 2, (heard, asked)
    assert heard.rms > 200, heard

    status, body = await api.call("POST", f"/v1/verifications/{created['id']}/check", {"code": code})
    assert status == 200, body
    assert body["verified"] is True
    assert body["verification"]["status"] == "verified"


# --- inbound --------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["09012345678", E164], ids=["national", "e164"])
async def test_inbound_call_from_the_registered_phone_verifies(api: Api, start_service: Starter, user: str) -> None:
    await start_service(api=False)
    created = await api.create(REGISTERED, method="inbound", language=LANG)
    assert created["inbound_number_display"] == "050-1234-5678"
    async with caller(user) as phone:
        await phone.dial(published_uri())
        await phone.wait_event(softphone.ESTABLISHED)
        done = await api.wait_for(created["id"], TERMINAL, timeout=30)
        await phone.wait_event(softphone.CLOSED)  # we hang up after the confirmation
        heard = phone.heard()
    assert done["status"] == "verified", done
    assert done["reason"] == "caller_id_matched"
    confirmation = seconds("greeting", "verified")
    assert confirmation - EDGES <= heard.seconds <= confirmation + 2, heard
    assert heard.rms > 200, heard


async def test_inbound_call_that_keys_the_code(api: Api, start_service: Starter) -> None:
    await start_service(api=False)
    created = await api.create(REGISTERED, method="inbound", language=LANG, ask_code=True)
    async with caller(E164) as phone:
        await phone.dial(published_uri())
        await phone.wait_event(softphone.ESTABLISHED)
        await phone.wait_heard(voiced_seconds=0.3)
        await phone.send_keys(created["code"] + "#")
        done = await api.wait_for(created["id"], TERMINAL, timeout=40)
        await phone.wait_event(softphone.CLOSED)
    assert done["status"] == "verified", done
    assert done["reason"] == "code_matched"
    assert done["code_attempts"] == 0
    assert statuses(await api.events(created["id"])) == ["queued", "in_call", "verified"]


# --- the driver itself ----------------------------------------------------------------


async def test_two_softphones_key_to_each_other_and_leave_nothing_behind() -> None:
    # No stack: one phone calls the other directly.
    async with callee() as answering, caller("09012345678") as calling:
        await calling.dial(f"sip:{E164}@127.0.0.1:{answering.sip_port}")
        await answering.wait_event(softphone.ESTABLISHED)
        await calling.wait_event(softphone.ESTABLISHED)
        # Repeated digits each arrive: baresip ends one event before the next.
        await calling.send_keys("1122#")
        keys = [(await answering.wait_event("CALL_DTMF_START"))["param"] for _ in range(5)]
        await calling.hangup()
        await answering.wait_event(softphone.CLOSED)
        heard = answering.heard()
        pids = [answering.pid, calling.pid]
    assert keys == ["1", "1", "2", "2", "#"]
    # It heard the other's microphone: a silent file, sent as audio.
    assert heard.seconds > 0.5, heard
    assert heard.voiced_seconds == 0, heard
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
