from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ivr_auth_devkit import rtp_pcap, sipp, sipp_scenarios
from tests.unit.test_rtp_pcap import by_key, parse_pcap, parse_rtp
from tests.unit.test_sipp_scenarios import parse_scenario, sent

pytestmark = pytest.mark.skipif(
    not rtp_pcap.pcap_for("0").is_file(), reason=f"SIPp's DTMF pcaps are not installed in {rtp_pcap.PCAP_DIR}"
)

# --- Handset ---------------------------------------------------------------------------


def test_handset_writes_one_pcap_per_number_with_keys(tmp_path: Path) -> None:
    handset = sipp.Handset(
        port=5080, keys_by_number={"+819012340001": "12", "+819012340002": "", "+819012340003": "3,4"}, calls=3
    )

    scenario = handset._write_scenario(tmp_path)
    root = parse_scenario(scenario.read_text())

    assert [e.get("value") for e in root.iter("strcmp")] == ["+819012340001", "+819012340003"]
    played = [Path(str(e.get("play_pcap_audio"))) for e in root.iter("exec")]
    assert [p.name for p in played] == ["keys-1.pcap", "keys-3.pcap"]
    _, packets = parse_pcap(played[1].read_bytes())
    assert [run[0].event for run in by_key(packets)] == [3, 4]


def test_a_pause_before_a_numbers_first_key_is_sent_as_silence(tmp_path: Path) -> None:
    handset = sipp.Handset(port=5080, keys_by_number={"+819012340001": ",,#1"}, first_key_ms=1)

    scenario = handset._write_scenario(tmp_path)

    (played,) = [Path(str(e.get("play_pcap_audio"))) for e in parse_scenario(scenario.read_text()).iter("exec")]
    packets = parse_rtp(played.read_bytes())
    silence = [p for p in packets if p.payload_type == 0]
    events = [p for p in packets if p.payload_type == 101]
    # Two seconds of 20 ms silence frames, then the keys on the same stream.
    assert len(silence) == 100
    assert events[0].time - packets[0].time == pytest.approx(2.0, abs=0.001)
    assert {p.ssrc for p in packets} == {packets[0].ssrc}
    assert [p.payload[0] for p in events if p.marker] == [11, 1]


def test_handset_writes_info_scenario_without_a_pcap(tmp_path: Path) -> None:
    handset = sipp.Handset(port=5080, keys="12", dtmf="info")

    scenario = handset._write_scenario(tmp_path)

    assert len(sent(parse_scenario(scenario.read_text()), "INFO")) == 2
    assert list(tmp_path.glob("*.pcap")) == []


def test_handset_that_only_hangs_up_needs_no_keys(tmp_path: Path) -> None:
    scenario = sipp.Handset(port=5080, hangup_after_ms=1500)._write_scenario(tmp_path)

    root = parse_scenario(scenario.read_text())
    assert len(sent(root, "BYE")) == 1
    assert list(root.iter("exec")) == []


def test_handset_runs_a_named_scenario_file(tmp_path: Path) -> None:
    scenario = sipp.Handset(port=5080, scenario="uas-reject-603.xml")._write_scenario(tmp_path)

    assert scenario == sipp_scenarios.SCENARIO_DIR / "uas-reject-603.xml"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "needs a scenario file"),
        ({"scenario": "uas-reject-486.xml", "keys": "1"}, "not both"),
        ({"scenario": "uas-reject-486.xml", "hangup_after_ms": 100}, "not both"),
        ({"scenario": "uas-reject-486.xml", "dtmf": "info"}, "not both"),
        ({"keys": "1", "keys_by_number": {"+819012340001": "1"}}, "keys_by_number"),
        ({"keys_by_number": {"+819012340001": "1"}, "hangup_after_ms": 100}, "keys_by_number"),
        ({"keys_by_number": {"+819012340001": "1"}, "dtmf": "info"}, "keys_by_number"),
        ({"keys_by_number": {"+819012340001": "1x"}}, "not a DTMF key"),
        ({"keys": "12a"}, "not a DTMF key"),
        ({"keys": "1", "dtmf": "sms"}, "dtmf"),
        ({"hangup_after_ms": -1}, "negative"),
    ],
)
def test_handset_refuses_what_it_cannot_do(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sipp.Handset(port=5080, **kwargs)


# --- the SIPp summary reader ---------------------------------------------------------


def test_count_reads_the_last_value_of_a_counter() -> None:
    screen = (
        "  Successful call        |        0                  |        0\n"
        "  Failed call            |        0                  |        0\n"
        "  Successful call        |        1                  |        3\n"
        "  Failed call            |        1                  |        1\n"
    )

    assert sipp._count(screen, "Successful call") == 3
    assert sipp._count(screen, "Failed call") == 1
    assert sipp._count("", "Successful call") == 0


# --- greetings -----------------------------------------------------------------------


def test_handset_with_a_greeting_writes_one_pcap_of_voice_silence_and_keys(tmp_path: Path) -> None:
    handset = sipp.Handset(port=5080, greeting_ms=500, greeting_silence_ms=1000, keys="7")

    root = parse_scenario(handset._write_scenario(tmp_path).read_text())

    [played] = [Path(str(e.get("play_pcap_audio"))) for e in root.iter("exec")]
    assert played == tmp_path / "greeting.pcap"
    records = rtp_pcap.read_pcap(played.read_bytes())
    types = [packet[rtp_pcap.RTP_OFFSET + 1] & 0x7F for _, packet in records]
    assert types[:75] == [0] * 75
    assert set(types[75:]) == {101}
    assert list(tmp_path.glob("keys*.pcap")) == []


def test_handset_with_only_a_greeting_is_generated(tmp_path: Path) -> None:
    root = parse_scenario(sipp.Handset(port=5080, greeting_ms=4000)._write_scenario(tmp_path).read_text())

    assert len(list(root.iter("exec"))) == 1
    assert len(rtp_pcap.read_pcap((tmp_path / "greeting.pcap").read_bytes())) == (4000 + 4000) // 20


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"greeting_ms": -1}, "negative"),
        ({"greeting_ms": 100, "greeting_silence_ms": -1}, "negative"),
        ({"greeting_ms": 100, "dtmf": "info"}, "RFC 2833"),
        ({"greeting_ms": 100, "keys_by_number": {"+819012340001": "1"}}, "RFC 2833"),
        ({"greeting_ms": 100, "scenario": "uas-reject-486.xml"}, "not both"),
    ],
)
def test_handset_refuses_a_greeting_it_cannot_play(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sipp.Handset(port=5080, **kwargs)


# --- callers -------------------------------------------------------------------------


def test_caller_writes_its_keys_pcap_and_targets_asterisk(tmp_path: Path) -> None:
    caller = sipp.Caller(target_port=5370, did="7001", caller="0312345678", keys="12")

    root = parse_scenario(caller._write_scenario(tmp_path).read_text())

    assert [e.get("play_pcap_audio") for e in root.iter("exec")] == [str(tmp_path / "keys.pcap")]
    assert (tmp_path / "keys.pcap").stat().st_size > 0
    assert caller._target_args() == ["127.0.0.1:5370"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"keys": "1x"}, "not a DTMF key"),
        ({"hangup_after_ms": -5}, "negative"),
        ({"expect": "reject", "keys": "1"}, "refused"),
        ({"did": ""}, "did"),
    ],
)
def test_caller_refuses_what_it_cannot_do(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"target_port": 5370, "did": "7001", "caller": "0312345678", **kwargs}
    with pytest.raises(ValueError, match=match):
        sipp.Caller(**args)


TRACE = """\
----------------------------------------------- 2026-11-23 19:10:20.398282
UDP message sent (569 bytes):

INVITE sip:7003@127.0.0.1:5370 SIP/2.0
Call-ID: 1-7392@127.0.0.1
CSeq: 1 INVITE

----------------------------------------------- 2026-11-23 19:10:20.399828
UDP message received [269] bytes :

SIP/2.0 100 Trying
Call-ID: 1-7392@127.0.0.1
CSeq: 1 INVITE


----------------------------------------------- 2026-11-23 19:10:20.400152
UDP message received [337] bytes :

SIP/2.0 486 Busy Here
Call-ID: 1-7392@127.0.0.1
From: <sip:0312345678@127.0.0.1>;tag=7392SIPpTag001
CSeq: 1 INVITE
Reason: Q.850;cause=17


----------------------------------------------- 2026-11-23 19:10:20.500152
UDP message received [337] bytes :

SIP/2.0 200 OK
Call-ID: 2-7392@127.0.0.1
CSeq: 1 INVITE


----------------------------------------------- 2026-11-23 19:10:20.600152
UDP message received [337] bytes :

SIP/2.0 486 Busy Here
Call-ID: 1-7392@127.0.0.1
CSeq: 1 INVITE


----------------------------------------------- 2026-11-23 19:10:21.600152
UDP message received [337] bytes :

SIP/2.0 200 OK
Call-ID: 2-7392@127.0.0.1
CSeq: 2 BYE

"""


def test_final_statuses_reads_each_invites_final_answer_once() -> None:
    assert sipp.final_statuses(TRACE) == (486, 200)
    assert sipp.final_statuses("") == ()


def test_result_final_status_is_the_first_calls() -> None:
    result = sipp.SippResult(0, 2, 0, "", "", final_statuses=(603, 486))

    assert result.final_status == 603
    assert sipp.SippResult(0, 0, 0, "", "").final_status is None


INVITES = """\
----------------------------------------------- 2026-11-23 19:10:20.398282
UDP message received [869] bytes :

INVITE sip:+819012345678@127.0.0.1:5086 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5076;rport;branch=z9hG4bKPj1
From: <sip:+81312345678@127.0.0.1>;tag=a1
To: <sip:+819012345678@127.0.0.1>
Call-ID: c1
CSeq: 1 INVITE
P-Asserted-Identity: <sip:+81312345678@127.0.0.1>
Content-Length: 0


----------------------------------------------- 2026-11-23 19:10:20.498282
UDP message sent (300 bytes):

SIP/2.0 100 Trying
Call-ID: c1
CSeq: 1 INVITE

----------------------------------------------- 2026-11-23 19:10:20.598282
UDP message received [869] bytes :

INVITE sip:+819012345678@127.0.0.1:5086 SIP/2.0
From: <sip:+81312345678@127.0.0.1>;tag=a1
Call-ID: c1
CSeq: 1 INVITE

----------------------------------------------- 2026-11-23 19:10:21.598282
UDP message received [869] bytes :

INVITE sip:+819012345679@127.0.0.1:5086 SIP/2.0
f: "Acme" <sip:+81312345679@127.0.0.1>;tag=b2
i: c2
CSeq: 1 INVITE

"""


def test_received_invites_reads_each_calls_headers_once() -> None:
    first, second = sipp.received_invites(INVITES)

    assert first["from"] == "<sip:+81312345678@127.0.0.1>;tag=a1"
    assert first["p-asserted-identity"] == "<sip:+81312345678@127.0.0.1>"
    assert first["via"].startswith("SIP/2.0/UDP 127.0.0.1:5076")
    assert second["f"] == '"Acme" <sip:+81312345679@127.0.0.1>;tag=b2'
    assert sipp.received_invites(TRACE) == ()
    assert sipp.received_invites("") == ()


def test_only_a_capturing_handset_traces_messages() -> None:
    assert not sipp.Handset(port=5080, keys="1")._trace_messages
    assert sipp.Handset(port=5080, keys="1", capture_invites=True)._trace_messages
