from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from ivr_auth_devkit import rtp_pcap, sipp_scenarios

pytestmark = pytest.mark.skipif(
    not rtp_pcap.pcap_for("0").is_file(), reason=f"SIPp's DTMF pcaps are not installed in {rtp_pcap.PCAP_DIR}"
)

# --- handset_scenario ----------------------------------------------------------------


def parse_scenario(text: str) -> ET.Element:
    return ET.fromstring(re.sub(r"<!DOCTYPE[^>]*>", "", text))


def test_scenario_with_keys_plays_the_pcap(tmp_path: Path) -> None:
    pcap = tmp_path / "keys.pcap"

    text = sipp_scenarios.handset_scenario("12#", pcap, ring_ms=750, first_key_ms=2500)
    root = parse_scenario(text)

    assert "@KEYS@" not in text
    assert "@RING_MS@" not in text
    assert [e.get("play_pcap_audio") for e in root.iter("exec")] == [str(pcap)]
    assert [e.get("milliseconds") for e in root.iter("pause")] == ["750"]
    waits = [e for e in root.iter("recv") if e.get("timeout")]
    assert [(e.get("request"), e.get("timeout"), e.get("ontimeout")) for e in waits] == [("BYE", "2500", "keys")]


@pytest.mark.parametrize("keys", ["1", "#,,1"])
def test_keys_at_the_answer_wait_one_millisecond_not_for_ever(tmp_path: Path, keys: str) -> None:
    # SIPp reads a receive timeout of 0 as "no timeout": a phone told to key
    # as soon as it answers would never key at all.
    root = parse_scenario(sipp_scenarios.handset_scenario(keys, tmp_path / "k.pcap", first_key_ms=0))
    assert [e.get("timeout") for e in root.iter("recv") if e.get("ontimeout") == "keys"] == ["1"]
    by_number = parse_scenario(
        sipp_scenarios.by_number_scenario({"+819012340001": tmp_path / "1.pcap"}, first_key_ms=0)
    )
    assert [e.get("timeout") for e in by_number.iter("recv") if e.get("ontimeout") == "keys"] == ["1"]


def test_scenario_jumps_only_to_labels_it_has(tmp_path: Path) -> None:
    root = parse_scenario(sipp_scenarios.handset_scenario("1", tmp_path / "k.pcap"))

    labels = {e.get("id") for e in root.iter("label")}
    targets = {e.get(attr) for e in root.iter() for attr in ("next", "ontimeout") if e.get(attr)}
    assert targets
    assert targets <= labels


def test_scenario_without_keys_stays_silent() -> None:
    text = sipp_scenarios.handset_scenario("", None, ring_ms=100)
    root = parse_scenario(text)

    assert list(root.iter("exec")) == []
    assert "keys" not in {e.get("id") for e in root.iter("label")}
    assert [e.get("milliseconds") for e in root.iter("pause")] == ["100"]
    assert "@KEYS@" not in text
    assert "@RING_MS@" not in text


def test_scenario_order_answer_then_keys_then_bye(tmp_path: Path) -> None:
    root = parse_scenario(sipp_scenarios.handset_scenario("1", tmp_path / "k.pcap"))
    steps = [e for e in root if e.tag in ("send", "recv", "pause", "nop")]

    kinds = [(e.tag, e.get("request") or "") for e in steps]
    assert kinds[:4] == [("recv", "INVITE"), ("send", ""), ("pause", ""), ("send", "")]
    assert kinds[4] == ("recv", "ACK")
    assert kinds[-2:] == [("recv", "BYE"), ("send", "")]
    assert "nop" in [tag for tag, _ in kinds[5:-2]]


def test_keys_without_a_pcap_are_refused_in_the_scenario() -> None:
    with pytest.raises(ValueError, match="pcap"):
        sipp_scenarios.handset_scenario("12", None)


def references(root: ET.Element, text: str) -> dict[str, int]:
    """How often each variable is named, counted as SIPp counts before it
    refuses a scenario with a variable named only once."""
    counts: dict[str, int] = {}
    names: list[str] = re.findall(r"\[\$(\w+)\]", text)
    for e in root.iter():
        for attr in ("assign_to", "variables"):
            names += [n for n in (e.get(attr) or "").split(",") if n]
        names += [e.get(attr) or "" for attr in ("variable", "condexec") if e.get(attr)]
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return counts


def assert_jumps_land(root: ET.Element) -> None:
    labels = [e.get("id") for e in root.iter("label")]
    targets = {e.get(attr) for e in root.iter() for attr in ("next", "ontimeout") if e.get(attr)}
    assert len(labels) == len(set(labels)), "duplicate labels"
    assert targets <= set(labels)


def sent(root: ET.Element, method: str) -> list[str]:
    return [(e.text or "").strip() for e in root.iter("send") if (e.text or "").strip().startswith(method + " ")]


def steps(root: ET.Element) -> list[tuple[str, str]]:
    out = []
    for e in root:
        if e.tag in ("send", "recv", "pause", "nop", "label"):
            what = e.get("request") or e.get("response") or e.get("id") or (e.text or "").strip().split(" ")[0]
            out.append((e.tag, what))
    return out


def test_every_template_says_how_to_run_it() -> None:
    files = sorted(sipp_scenarios.SCENARIO_DIR.glob("uas-*.xml*"))
    assert len(files) >= 9
    for path in files:
        name = path.name.removesuffix(".in")
        assert f"sipp -sf {name} -i 127.0.0.1 -p 5080" in path.read_text(), path.name


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("486", "Busy Here"),
        ("603", "Decline"),
        ("480", "Temporarily Unavailable"),
        ("404", "Not Found"),
        ("503", "Service Unavailable"),
    ],
)
def test_reject_scenarios_answer_with_their_code(code: str, reason: str) -> None:
    root = parse_scenario((sipp_scenarios.SCENARIO_DIR / f"uas-reject-{code}.xml").read_text())

    finals = [(e.text or "").strip().splitlines()[0] for e in root.iter("send")]
    assert finals == ["SIP/2.0 100 Trying", f"SIP/2.0 {code} {reason}"]
    assert [(e.tag, e.get("request")) for e in root if e.tag == "recv"] == [("recv", "INVITE"), ("recv", "ACK")]


def test_a_pause_before_the_first_key_is_added_to_the_first_wait(tmp_path: Path) -> None:
    root = parse_scenario(sipp_scenarios.handset_scenario(",,12", tmp_path / "k.pcap", first_key_ms=1500))

    waits = [e.get("timeout") for e in root.iter("recv") if e.get("timeout")]
    assert waits == ["3500"]


def test_hangup_scenario_answers_then_sends_bye_the_other_way_round() -> None:
    text = sipp_scenarios.handset_scenario("", None, ring_ms=200, hangup_after_ms=1500)
    root = parse_scenario(text)

    assert_jumps_land(root)
    invite = root.find("recv[@request='INVITE']")
    assert invite is not None
    assert invite.get("rrs") == "true"
    captures = {e.get("header"): e.get("assign_to") for e in invite.iter("ereg")}
    assert captures == {"From:": "caller", "To:": "callee"}
    [bye] = sent(root, "BYE")
    headers = dict(line.split(": ", 1) for line in bye.splitlines()[1:] if ": " in line)
    assert bye.splitlines()[0] == "BYE [next_url] SIP/2.0"
    assert headers["From"] == "[$callee];tag=[pid]SIPpTag01[call_number]"
    assert headers["To"] == "[$caller]"
    assert headers["CSeq"] == "[cseq] BYE"
    assert all(n >= 2 for n in references(root, text).values())
    waits = [(e.get("request"), e.get("timeout"), e.get("ontimeout")) for e in root.iter("recv") if e.get("timeout")]
    assert waits == [("BYE", "1500", "hangup")]


def test_hangup_scenario_ends_well_whoever_hangs_up_first() -> None:
    root = parse_scenario(sipp_scenarios.handset_scenario("", None, hangup_after_ms=1000))

    kinds = steps(root)
    at = kinds.index(("send", "BYE"))
    # Their BYE while we wait is answered; after ours comes its 200, or theirs if both hung up at once.
    assert kinds[at - 2 : at] == [("recv", "BYE"), ("label", "hangup")]
    assert kinds[at + 1 : at + 3] == [("recv", "BYE"), ("recv", "200")]
    optional = [e for e in root.iter("recv") if e.get("optional") == "true"]
    assert [(e.get("request"), e.get("next")) for e in optional] == [("BYE", "bye")]
    assert kinds[-3:] == [("label", "bye"), ("send", "SIP/2.0"), ("label", "done")]


@pytest.mark.parametrize(
    ("keys", "dtmf", "hangup_after_ms", "wait"),
    [
        ("", "rfc2833", 0, 1),  # SIPp would read 0 as "no timeout"
        (",,", "rfc2833", 500, 2500),
        ("12,3", "rfc2833", 1000, 1000 + 300 + 1300 + rtp_pcap.KEY_MS),
        ("12,3,", "rfc2833", 1000, 1000 + 300 + 1300 + rtp_pcap.KEY_MS + 1000),
        ("12,3,", "info", 1000, 1000 + 1000),
    ],
)
def test_hangup_wait_starts_after_the_last_key(
    tmp_path: Path, keys: str, dtmf: sipp_scenarios.Dtmf, hangup_after_ms: int, wait: int
) -> None:
    text = sipp_scenarios.handset_scenario(keys, tmp_path / "k.pcap", dtmf=dtmf, hangup_after_ms=hangup_after_ms)
    root = parse_scenario(text)

    hangup_waits = [e.get("timeout") for e in root.iter("recv") if e.get("ontimeout") == "hangup"]
    assert hangup_waits == [str(wait)]
    assert_jumps_land(root)


def test_hangup_scenario_with_rfc2833_keys_plays_them_first(tmp_path: Path) -> None:
    root = parse_scenario(sipp_scenarios.handset_scenario("12", tmp_path / "k.pcap", hangup_after_ms=800))

    kinds = steps(root)
    assert kinds.index(("nop", "")) < kinds.index(("send", "BYE"))
    assert [e.get("play_pcap_audio") for e in root.iter("exec")] == [str(tmp_path / "k.pcap")]


def test_info_scenario_sends_one_info_per_key_in_the_dialog() -> None:
    text = sipp_scenarios.handset_scenario("1,*#", None, dtmf="info", first_key_ms=1200, key_gap_ms=250)
    root = parse_scenario(text)

    assert_jumps_land(root)
    infos = sent(root, "INFO")
    assert [info.split("\n\n", 1)[1] for info in infos] == [
        "Signal=1\nDuration=160",
        "Signal=*\nDuration=160",
        "Signal=#\nDuration=160",
    ]
    for info in infos:
        lines = info.splitlines()
        assert lines[0] == "INFO [next_url] SIP/2.0"
        assert "From: [$callee];tag=[pid]SIPpTag01[call_number]" in lines
        assert "To: [$caller]" in lines
        assert "CSeq: [cseq] INFO" in lines
        assert "Content-Type: application/dtmf-relay" in lines
    waits = [(e.get("timeout"), e.get("ontimeout")) for e in root.iter("recv") if e.get("timeout")]
    assert waits == [("1200", "key1"), ("1250", "key2"), ("250", "key3")]
    assert all(n >= 2 for n in references(root, text).values())
    assert list(root.iter("exec")) == []


def test_info_scenario_takes_each_answer_or_a_bye() -> None:
    root = parse_scenario(sipp_scenarios.handset_scenario("12", None, dtmf="info"))

    kinds = steps(root)
    for at in (i for i, step in enumerate(kinds) if step == ("send", "INFO")):
        assert kinds[at + 1 : at + 3] == [("recv", "BYE"), ("recv", "200")]
    assert kinds[-3:] == [("recv", "BYE"), ("label", "bye"), ("send", "SIP/2.0")]


def test_info_scenario_without_keys_stays_silent() -> None:
    root = parse_scenario(sipp_scenarios.handset_scenario("", None, dtmf="info"))

    assert sent(root, "INFO") == []
    assert_jumps_land(root)


def test_generated_scenarios_fill_every_placeholder(tmp_path: Path) -> None:
    texts = [
        sipp_scenarios.handset_scenario("1,2", tmp_path / "k.pcap"),
        sipp_scenarios.handset_scenario("1,2", tmp_path / "k.pcap", hangup_after_ms=10),
        sipp_scenarios.handset_scenario("1,2", None, dtmf="info"),
        sipp_scenarios.handset_scenario("1,2", None, dtmf="info", hangup_after_ms=10),
        sipp_scenarios.by_number_scenario({"+819012340001": tmp_path / "1.pcap"}),
    ]
    for text in texts:
        assert not re.search(r"@[A-Z_]+@", text)
        assert "written by devkit/ivr_auth_devkit/sipp_scenarios.py" in text
        parse_scenario(text)


# --- by_number_scenario --------------------------------------------------------------


def test_by_number_scenario_plays_each_numbers_pcap_only_on_its_calls(tmp_path: Path) -> None:
    pcaps = {"+819012340001": tmp_path / "keys-1.pcap", "+819012340002": tmp_path / "keys-2.pcap"}

    text = sipp_scenarios.by_number_scenario(pcaps, ring_ms=100, first_key_ms=900)
    root = parse_scenario(text)

    assert_jumps_land(root)
    [ereg] = root.find("recv[@request='INVITE']").iter("ereg")  # type: ignore[union-attr]
    assert ereg.get("search_in") == "msg"
    assert re.search(str(ereg.get("regexp")), "INVITE sip:+819012340002@127.0.0.1:5080 SIP/2.0\r\n")
    assert ereg.get("assign_to", "").split(",")[1] == "dialled"
    compares = [e.attrib for e in root.iter("strcmp")]
    assert compares == [
        {"assign_to": "cmp_1", "variable": "dialled", "value": "+819012340001"},
        {"assign_to": "cmp_2", "variable": "dialled", "value": "+819012340002"},
    ]
    tests = [(e.get("assign_to"), e.get("variable"), e.get("compare"), e.get("value")) for e in root.iter("test")]
    assert tests == [("is_1", "cmp_1", "equal", "0"), ("is_2", "cmp_2", "equal", "0")]
    plays = {
        nop.get("condexec"): [e.get("play_pcap_audio") for e in nop.iter("exec")]
        for nop in root.iter("nop")
        if nop.get("condexec")
    }
    assert plays == {"is_1": [str(pcaps["+819012340001"])], "is_2": [str(pcaps["+819012340002"])]}
    assert all(n >= 2 for n in references(root, text).values()), references(root, text)
    assert "m=audio [auto_media_port] " in text


def test_by_number_scenario_keys_after_answering_and_waits_for_bye(tmp_path: Path) -> None:
    root = parse_scenario(sipp_scenarios.by_number_scenario({"+819012340001": tmp_path / "1.pcap"}, first_key_ms=700))

    kinds = steps(root)
    assert kinds[:5] == [("recv", "INVITE"), ("send", "SIP/2.0"), ("pause", ""), ("send", "SIP/2.0"), ("recv", "ACK")]
    assert kinds[5:7] == [("recv", "BYE"), ("label", "keys")]
    assert kinds[-3:] == [("recv", "BYE"), ("label", "bye"), ("send", "SIP/2.0")]
    assert [e.get("timeout") for e in root.iter("recv") if e.get("timeout")] == ["700"]


def test_by_number_scenario_without_numbers_answers_in_silence() -> None:
    root = parse_scenario(sipp_scenarios.by_number_scenario({}))

    assert list(root.iter("exec")) == []
    assert list(root.iter("strcmp")) == []


def test_by_number_scenario_escapes_what_it_writes_into_attributes(tmp_path: Path) -> None:
    root = parse_scenario(sipp_scenarios.by_number_scenario({'12"<&>': tmp_path / 'a"b.pcap'}))

    assert [e.get("value") for e in root.iter("strcmp")] == ['12"<&>']
    assert [e.get("play_pcap_audio") for e in root.iter("exec")] == [str(tmp_path / 'a"b.pcap')]


# --- greetings -----------------------------------------------------------------------


def test_greeting_scenario_plays_at_once_after_the_ack(tmp_path: Path) -> None:
    pcap = tmp_path / "greeting.pcap"

    root = parse_scenario(sipp_scenarios.handset_scenario("12", pcap, greeting_ms=4000, first_key_ms=9999))

    kinds = steps(root)
    assert kinds[4:6] == [("recv", "ACK"), ("nop", "")]
    assert [e.get("play_pcap_audio") for e in root.iter("exec")] == [str(pcap)]
    assert [e for e in root.iter("recv") if e.get("timeout")] == []
    assert kinds[-3:] == [("recv", "BYE"), ("label", "bye"), ("send", "SIP/2.0")]


def test_greeting_hangup_waits_for_the_whole_pcap(tmp_path: Path) -> None:
    root = parse_scenario(
        sipp_scenarios.handset_scenario(
            "1,", tmp_path / "g.pcap", greeting_ms=500, greeting_silence_ms=3000, hangup_after_ms=700
        )
    )

    waits = [e.get("timeout") for e in root.iter("recv") if e.get("ontimeout") == "hangup"]
    assert waits == [str(700 + 1000 + rtp_pcap.audio_pcap_ms(500, 3000, "1,"))]
    assert_jumps_land(root)


def test_greeting_needs_rfc2833_and_a_pcap(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RFC 2833"):
        sipp_scenarios.handset_scenario("1", tmp_path / "g.pcap", greeting_ms=500, dtmf="info")
    with pytest.raises(ValueError, match="pcap"):
        sipp_scenarios.handset_scenario("", None, greeting_ms=500)


# --- callers -------------------------------------------------------------------------


def headers_of(message: str) -> dict[str, str]:
    head = message.split("\n\n", 1)[0]
    return dict(line.split(": ", 1) for line in head.splitlines()[1:] if ": " in line)


def test_caller_scenario_invites_with_an_sdp_offer_and_acks_the_answer() -> None:
    text = sipp_scenarios.caller_scenario("0312345678", "09012345678")
    root = parse_scenario(text)

    [invite] = sent(root, "INVITE")
    lines = invite.splitlines()
    assert lines[0] == "INVITE sip:0312345678@[remote_ip]:[remote_port] SIP/2.0"
    headers = headers_of(invite)
    assert headers["From"] == "<sip:09012345678@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]"
    assert headers["To"] == "<sip:0312345678@[remote_ip]:[remote_port]>"
    assert "P-Asserted-Identity" not in headers
    assert "m=audio [media_port] RTP/AVP 0 101" in lines
    assert "a=rtpmap:101 telephone-event/8000" in lines
    assert "" not in invite.split("\n\n", 1)[0].splitlines(), "a blank line would end the headers"
    [ack] = sent(root, "ACK")
    assert headers_of(ack)["To"].endswith("[peer_tag_param]")
    assert headers_of(ack)["CSeq"] == "1 ACK"
    assert steps(root)[1:5] == [("recv", "100"), ("recv", "180"), ("recv", "183"), ("recv", "200")]
    assert [e.get("optional") for e in root.iter("recv")][:4] == ["true", "true", "true", None]
    assert steps(root)[-2:] == [("label", "bye"), ("send", "SIP/2.0")]
    assert "written by devkit/ivr_auth_devkit/sipp_scenarios.py from sipp-scenarios/uac-answer.xml.in" in text
    assert_jumps_land(root)


@pytest.mark.parametrize("caller", ["", "anonymous"])
def test_a_withheld_caller_is_anonymous(caller: str) -> None:
    root = parse_scenario(sipp_scenarios.caller_scenario("0312345678", caller))

    [invite] = sent(root, "INVITE")
    assert headers_of(invite)["From"] == '"Anonymous" <sip:anonymous@anonymous.invalid>;tag=[pid]SIPpTag00[call_number]'


def test_pai_adds_a_header_of_its_own() -> None:
    root = parse_scenario(sipp_scenarios.caller_scenario("0312345678", "", pai="+819012345678"))

    [invite] = sent(root, "INVITE")
    assert headers_of(invite)["P-Asserted-Identity"] == "<sip:+819012345678@[local_ip]>"


def test_caller_keys_after_the_answer(tmp_path: Path) -> None:
    pcap = tmp_path / "keys.pcap"

    root = parse_scenario(sipp_scenarios.caller_scenario("100", "200", keys=",12", pcap_path=pcap, first_key_ms=800))

    kinds = steps(root)
    assert kinds.index(("send", "ACK")) < kinds.index(("nop", ""))
    assert [e.get("play_pcap_audio") for e in root.iter("exec")] == [str(pcap)]
    assert [e.get("timeout") for e in root.iter("recv") if e.get("ontimeout") == "keys"] == ["1800"]


def test_caller_that_hangs_up_sends_bye_in_its_dialog(tmp_path: Path) -> None:
    text = sipp_scenarios.caller_scenario("100", "200", keys="12", pcap_path=tmp_path / "k.pcap", hangup_after_ms=1000)
    root = parse_scenario(text)

    [bye] = sent(root, "BYE")
    assert bye.splitlines()[0] == "BYE [next_url] SIP/2.0"
    assert headers_of(bye)["CSeq"] == "2 BYE"
    assert headers_of(bye)["To"].endswith("[peer_tag_param]")
    waits = [e.get("timeout") for e in root.iter("recv") if e.get("ontimeout") == "hangup"]
    assert waits == [str(1000 + 300 + rtp_pcap.KEY_MS)]
    kinds = steps(root)
    at = kinds.index(("send", "BYE"))
    assert kinds[at + 1 : at + 3] == [("recv", "BYE"), ("recv", "200")]
    assert_jumps_land(root)
    assert not re.search(r"@[A-Z_]+@", text)


def test_caller_expecting_a_refusal_takes_any_final_code_and_acks_it() -> None:
    text = sipp_scenarios.caller_scenario("100", "200", expect="reject")
    root = parse_scenario(text)

    finals = [e for e in root.iter("recv") if e.get("next") == "ack"]
    assert [int(str(e.get("response"))) for e in finals] == list(sipp_scenarios.REJECT_CODES)
    assert {403, 404, 486, 603} <= set(sipp_scenarios.REJECT_CODES)
    assert [e.get("optional") for e in finals] == ["true"] * (len(finals) - 1) + ["false"]
    [ack] = sent(root, "ACK")
    assert ack.splitlines()[0] == "ACK sip:100@[remote_ip]:[remote_port] SIP/2.0"
    assert ack.splitlines()[1] == "[last_Via:]"
    assert "[last_To:]" in ack.splitlines()
    assert sent(root, "BYE") == []
    assert_jumps_land(root)
    assert not re.search(r"@[A-Z_]+@", text)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("1 00", "200"), {}, "did"),
        (("100", "a<b"), {}, "caller"),
        (("100", "200"), {"pai": "x>y"}, "pai"),
        (("100", "200"), {"expect": "reject", "keys": "1"}, "refused"),
        (("100", "200"), {"expect": "reject", "hangup_after_ms": 10}, "refused"),
        (("100", "200"), {"expect": "ring"}, "expect"),
        (("100", "200"), {"keys": "1"}, "pcap"),
    ],
)
def test_caller_scenario_refuses_what_it_cannot_send(args: tuple[str, str], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sipp_scenarios.caller_scenario(*args, **kwargs)


def test_every_caller_template_says_how_to_run_it() -> None:
    files = sorted(sipp_scenarios.SCENARIO_DIR.glob("uac-*.xml.in"))
    assert len(files) == 3
    for path in files:
        name = path.name.removesuffix(".in")
        assert f"sipp 127.0.0.1:5060 -sf {name} -i 127.0.0.1 -p 5090" in path.read_text(), path.name
