"""Media never stops: while a call is answered and in our Stasis app, RTP
flows to the phone every second, prompts or not (carriers and SBCs drop a
call whose media stops, and nothing plays while a Stasis channel waits for
a key). Measured from the phone's side: the packets that reach the SIPp
phone's media port on the loopback interface, second by second, from the
first one to the BYE that ends the call."""

from __future__ import annotations

import math
import socket
import time
from typing import Any

import pytest

from ivr_auth import prompts, states
from ivr_auth_devkit import sipp
from tests.e2e.conftest import Api, Starter, service_config
from tests.support import packet_meter

pytestmark = pytest.mark.e2e

PHONE = "090-1234-5678"
SETTLED = {"delivered", *(s.value for s in states.TERMINAL)}
# 20 ms frames: 50 packets a second; a second with fewer than half of them had a gap.
NOMINAL_PER_SECOND = 50
MIN_PER_SECOND = NOMINAL_PER_SECOND // 2
LANG = "en"


def prompt_ms(*names: str) -> int:
    library = prompts.Library()
    return sum(library.duration_ms(name, LANG) for name in names)


def media_per_second(
    meter: packet_meter.PacketMeter,
    media_port: int,
    sip_port: int,
    answer: bytes = b"ACK ",
    *,
    from_answer: bool = False,
) -> list[int]:
    """RTP packets that reached ``media_port`` in each whole second from the
    first one (``from_answer``: from the answer) to the BYE sent to
    ``sip_port``. The answer is the first SIP message to ``sip_port`` that
    begins with ``answer``: Asterisk's ACK of the phone's 200 OK on an
    outbound call, its own 200 OK to a caller's INVITE."""
    rtp = meter.times(media_port)
    assert rtp, "no RTP reached the phone"
    answered = meter.first(sip_port, answer)
    assert answered is not None, f"no {answer!r} reached the phone"
    bye = meter.first(sip_port, b"BYE ")
    assert bye is not None, "no BYE reached the phone"
    # Nothing may wait in silence before the first prompt either.
    assert rtp[0] - answered.at < 1.0, f"the first RTP came {rtp[0] - answered.at:.2f}s after the answer"
    return packet_meter.per_second(rtp, answered.at if from_answer else rtp[0], bye.at)


def assert_media_never_stops(counts: list[int], at_least_seconds: float) -> None:
    print(f"RTP packets per second at the phone: {counts}")
    assert len(counts) >= at_least_seconds, f"the call was shorter than planned: {counts}"
    quiet = {second: n for second, n in enumerate(counts) if n < MIN_PER_SECOND}
    assert not quiet, f"seconds with under {MIN_PER_SECOND} RTP packets (second: packets): {quiet}; all: {counts}"


def handset(**kwargs: Any) -> sipp.Handset:
    cfg = service_config()
    return sipp.Handset(port=cfg.trunk.port, host=cfg.trunk.host, **kwargs)


def test_the_meter_counts_a_loopback_datagram_once() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        port = receiver.getsockname()[1]
        with packet_meter.PacketMeter({port}) as meter, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for _ in range(20):
                sender.sendto(b"\x80" + bytes(171), ("127.0.0.1", port))
            deadline = time.monotonic() + 5
            while len(meter.datagrams()) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)
        assert len(meter.datagrams(port)) == 20


async def test_dtmf_call_keeps_media_flowing_while_it_waits(api: Api, start_service: Starter) -> None:
    cfg = service_config(verification={"no_input_retries": 2})
    await start_service(api=False, cfg=cfg)
    created = await api.create(PHONE, language=LANG, code="246810")
    wait_ms = int(cfg.verification.first_digit_timeout_seconds * 1000)
    first, again, wrong = (
        prompt_ms("greeting", "enter_code_6"),
        prompt_ms("no_input", "enter_code_6"),
        prompt_ms("wrong_code", "enter_code_6"),
    )
    # Silent through the first wait (a no-input re-prompt); a wrong code a
    # second into the second wait; the right code 1-2 s into the wait after
    # the wrong-code prompt.
    keys = "135791#" + "," * math.ceil((wrong + 700) / 1000) + "246810#"
    phone = handset(keys=keys, first_key_ms=first + wait_ms + again + 1000)
    with packet_meter.PacketMeter({phone.media_port, phone.port}) as meter:
        async with phone:
            done = await api.wait_for(created["id"], SETTLED, timeout=90)
            result = await phone.wait()
    assert done["status"] == "verified", done
    assert done["code_attempts"] == 1
    assert result.ok, result.errors_log
    events = [e["type"] for e in (await api.events(created["id"]))["events"]]
    assert events.count("no_input") == 1
    planned = (first + wait_ms + again + 1000 + wrong) / 1000
    assert_media_never_stops(media_per_second(meter, phone.media_port, phone.port), planned)


async def test_voice_call_keeps_media_flowing_while_it_waits(api: Api, start_service: Starter) -> None:
    timeout = 3.0
    cfg = service_config(verification={"voice_key_timeout_seconds": timeout, "voice_repeats": 1})
    await start_service(api=False, cfg=cfg)
    created = await api.create(PHONE, method="voice", language=LANG, code="1234")
    # The key 1.5 s after the offer ends (a wait before the read-out); no key
    # at "press 1 to hear it again", which waits out its timeout.
    phone = handset(keys="1", first_key_ms=prompt_ms("greeting", "press_to_hear") + 1500)
    with packet_meter.PacketMeter({phone.media_port, phone.port}) as meter:
        async with phone:
            done = await api.wait_for(created["id"], SETTLED, timeout=90)
            result = await phone.wait()
    assert done["status"] == "delivered", done
    assert result.ok, result.errors_log
    events = await api.events(created["id"])
    assert not [e for e in events["events"] if e["type"] == "code_repeated"]
    planned = (prompt_ms("greeting", "press_to_hear", "press_1_to_repeat") + 1500) / 1000 + timeout
    assert_media_never_stops(media_per_second(meter, phone.media_port, phone.port), planned)


async def test_inbound_call_with_a_code_keeps_media_flowing_while_it_waits(api: Api, start_service: Starter) -> None:
    cfg = service_config()
    await start_service(api=False)
    created = await api.create(PHONE, method="inbound", language=LANG, ask_code=True, code="246810")
    # The code 1.5 s after the prompt ends.
    caller = sipp.Caller(
        target_port=cfg.stack.sip_port,
        did="05012345678",
        caller="09012345678",
        keys="246810#",
        first_key_ms=prompt_ms("greeting", "enter_code_6") + 1500,
    )
    with packet_meter.PacketMeter({caller.media_port, caller.port}) as meter:
        async with caller:
            done = await api.wait_for(created["id"], SETTLED, timeout=60)
            result = await caller.wait()
    assert done["status"] == "verified", done
    assert result.ok, result.errors_log
    planned = (prompt_ms("greeting", "enter_code_6") + 1500) / 1000
    assert_media_never_stops(media_per_second(meter, caller.media_port, caller.port, b"SIP/2.0 200 "), planned)


async def test_voice_call_keeps_media_flowing_while_amd_listens(api: Api, start_service: Starter) -> None:
    timeout = 3.0
    cfg = service_config(verification={"voice_key_timeout_seconds": timeout, "voice_repeats": 1, "amd": True})
    await start_service(api=False, cfg=cfg)
    created = await api.create(PHONE, method="voice", language=LANG, code="1234")
    # "Hello?" then silence: AMD()'s HUMAN, after about 1.3 s in which nothing
    # is played; then the key, then no key at "press 1 to hear it again".
    phone = handset(greeting_ms=500, keys="1")
    with packet_meter.PacketMeter({phone.media_port, phone.port}) as meter:
        async with phone:
            done = await api.wait_for(created["id"], SETTLED, timeout=90)
            result = await phone.wait()
    assert done["status"] == "delivered", done
    assert done["answered_by"] == "human"
    assert result.ok, result.errors_log
    in_call = next(e for e in (await api.events(created["id"]))["events"] if e["to_status"] == "in_call")
    assert in_call["detail"]["amd"]["status"] == "HUMAN"
    planned = prompt_ms("press_1_to_repeat") / 1000 + timeout + 5
    # From the answer: AMD() runs before anything is played.
    counts = media_per_second(meter, phone.media_port, phone.port, from_answer=True)
    assert_media_never_stops(counts, planned)
