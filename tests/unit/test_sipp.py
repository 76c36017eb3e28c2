from __future__ import annotations

import itertools
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ivr_auth import sipp

pytestmark = pytest.mark.skipif(
    not sipp.pcap_for("0").is_file(), reason=f"SIPp's DTMF pcaps are not installed in {sipp.PCAP_DIR}"
)

EVENT_CODES = {**{d: int(d) for d in "0123456789"}, "*": 10, "#": 11}
RTP = sipp.RTP_OFFSET


@dataclass(frozen=True)
class Packet:
    time: float
    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    event: int
    end: bool
    udp_checksum: bytes


def parse_pcap(data: bytes) -> tuple[bytes, list[Packet]]:
    header = data[:24]
    packets = []
    offset = 24
    while offset < len(data):
        assert offset + 16 <= len(data), "truncated record header"
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, offset)
        assert incl == orig
        assert usec < 1_000_000
        body = data[offset + 16 : offset + 16 + incl]
        assert len(body) == incl, "truncated record"
        first, second, seq, timestamp = struct.unpack_from("!BBHI", body, RTP)
        assert first >> 6 == 2, "RTP version 2"
        event, flags, _duration = struct.unpack_from("!BBH", body, RTP + 12)
        packets.append(
            Packet(
                time=sec + usec / 1e6,
                marker=bool(second & 0x80),
                payload_type=second & 0x7F,
                seq=seq,
                timestamp=timestamp,
                event=event,
                end=bool(flags & 0x80),
                udp_checksum=body[sipp.UDP_CHECKSUM_OFFSET : sipp.UDP_CHECKSUM_OFFSET + 2],
            )
        )
        offset += 16 + incl
    return header, packets


def by_key(packets: list[Packet]) -> list[list[Packet]]:
    """Split into one run of packets per key (each key's event has one RTP timestamp)."""
    runs: list[list[Packet]] = []
    for p in packets:
        if runs and runs[-1][-1].timestamp == p.timestamp:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


@pytest.mark.parametrize("keys", ["1234#", "1111", "9876543210*#", "73", "#*#*"])
def test_dtmf_pcap_keys_in_order(keys: str) -> None:
    header, packets = parse_pcap(sipp.dtmf_pcap(keys, seed=7))
    runs = by_key(packets)

    assert header[:4] == b"\xd4\xc3\xb2\xa1"
    assert len(runs) == len(keys)
    for key, run in zip(keys, runs, strict=True):
        assert {p.event for p in run} == {EVENT_CODES[key]}, key
        assert run[0].marker
        assert run[-1].end
    assert {p.payload_type for p in packets} == {101}
    assert {p.udp_checksum for p in packets} == {b"\x00\x00"}


@pytest.mark.parametrize("keys", ["1111", "9876543210", "7373", "#0*"])
def test_sequence_numbers_never_go_back_and_timestamps_rise(keys: str) -> None:
    _, packets = parse_pcap(sipp.dtmf_pcap(keys, seed=1))
    runs = by_key(packets)

    seqs = [p.seq for p in packets]
    assert seqs == sorted(seqs)
    for before, after in itertools.pairwise(runs):
        assert after[0].seq == before[-1].seq + 1
        assert after[0].timestamp > before[0].timestamp


def test_repeated_digits_have_distinct_timestamps() -> None:
    _, packets = parse_pcap(sipp.dtmf_pcap("1111", seed=3))

    stamps = sorted({p.timestamp for p in packets})
    assert len(stamps) == 4
    assert all(p.event == 1 for p in packets)


def test_timestamp_step_follows_the_key_gap() -> None:
    _, packets = parse_pcap(sipp.dtmf_pcap("12", key_gap_ms=500, seed=3))
    first, second = by_key(packets)

    assert second[0].timestamp - first[0].timestamp == 500 * 8 + sipp.EVENT_SAMPLES


def test_record_times_rise_and_keys_are_spaced_by_the_gap() -> None:
    _, packets = parse_pcap(sipp.dtmf_pcap("5555", key_gap_ms=400, seed=3))
    runs = by_key(packets)

    times = [p.time for p in packets]
    assert times == sorted(times)
    assert times[0] == 0.0
    for before, after in itertools.pairwise(runs):
        assert after[0].time > before[-1].time
        assert after[0].time - before[0].time == pytest.approx(0.4, abs=1e-5)


def test_a_gap_shorter_than_a_key_is_widened() -> None:
    _, packets = parse_pcap(sipp.dtmf_pcap("12", key_gap_ms=10, seed=3))
    first, second = by_key(packets)

    assert second[0].time - first[0].time == pytest.approx(sipp.MIN_KEY_GAP_MS / 1000, abs=1e-5)
    assert second[0].time > first[-1].time
    assert second[0].timestamp - first[0].timestamp == sipp.MIN_KEY_GAP_MS * 8 + sipp.EVENT_SAMPLES


def test_seed_makes_the_pcap_reproducible() -> None:
    assert sipp.dtmf_pcap("12#", seed=42) == sipp.dtmf_pcap("12#", seed=42)
    assert sipp.dtmf_pcap("12#", seed=42) != sipp.dtmf_pcap("12#", seed=43)


def test_each_key_keeps_the_packet_count_of_its_source_pcap() -> None:
    source = sum(1 for _ in parse_pcap(sipp.pcap_for("7").read_bytes())[1])

    _, packets = parse_pcap(sipp.dtmf_pcap("77", seed=0))

    assert len(packets) == 2 * source


@pytest.mark.parametrize("key", ["A", "x", "?", " ", ";"])
def test_keys_without_a_pcap_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="not a DTMF key"):
        sipp.dtmf_pcap(f"1{key}")


def test_pcap_for_names_sipps_files() -> None:
    assert sipp.pcap_for("*").name == "dtmf_2833_star.pcap"
    assert sipp.pcap_for("#").name == "dtmf_2833_pound.pcap"
    assert sipp.pcap_for("0").name == "dtmf_2833_0.pcap"


# --- pauses --------------------------------------------------------------------------


def test_presses_put_the_gap_between_keys_and_a_second_per_comma() -> None:
    assert sipp.presses(",1,,23,", key_gap_ms=300) == [
        sipp.Press("1", 1000),
        sipp.Press("2", 2300),
        sipp.Press("3", 300),
    ]
    assert sipp.presses("") == []
    assert sipp.presses(",,") == []


def test_trailing_pause_counts_the_commas_after_the_last_key() -> None:
    assert sipp.trailing_pause_ms("12,,") == 2000
    assert sipp.trailing_pause_ms(",1") == 0
    assert sipp.trailing_pause_ms(",,,") == 3000


@pytest.mark.parametrize(("keys", "pause_s"), [("1,2", 1), ("1,,,2", 3), ("7,7", 1)])
def test_a_pause_delays_the_next_key_and_moves_the_timestamp_on(keys: str, pause_s: int) -> None:
    _, packets = parse_pcap(sipp.dtmf_pcap(keys, key_gap_ms=300, seed=5))
    first, second = by_key(packets)

    assert second[0].time - first[0].time == pytest.approx(0.3 + pause_s, abs=1e-5)
    assert second[0].timestamp - first[0].timestamp == (300 + 1000 * pause_s) * 8 + sipp.EVENT_SAMPLES
    # Nothing is sent during a pause, so the sequence numbers run straight on.
    assert second[0].seq == first[-1].seq + 1


def test_sequence_runs_on_across_several_pauses() -> None:
    _, packets = parse_pcap(sipp.dtmf_pcap("111111#,,,123456#", seed=9))
    runs = by_key(packets)

    assert [EVENT_CODES[k] for k in "111111#123456#"] == [run[0].event for run in runs]
    for before, after in itertools.pairwise(runs):
        assert after[0].seq == before[-1].seq + 1
    stamps = [run[0].timestamp for run in runs]
    assert stamps == sorted(set(stamps))
    assert runs[7][0].time - runs[6][0].time == pytest.approx(3.3, abs=1e-5)


def test_a_pause_before_the_first_key_or_after_the_last_is_not_in_the_pcap() -> None:
    # A player sends the first packet at once; Handset waits the lead out itself.
    assert sipp.dtmf_pcap(",,12,", seed=4) == sipp.dtmf_pcap("12", seed=4)
    assert sipp.dtmf_pcap(",,,", seed=4) == b""


# --- handset_scenario ----------------------------------------------------------------


def parse_scenario(text: str) -> ET.Element:
    return ET.fromstring(re.sub(r"<!DOCTYPE[^>]*>", "", text))


def test_scenario_with_keys_plays_the_pcap(tmp_path: Path) -> None:
    pcap = tmp_path / "keys.pcap"

    text = sipp.handset_scenario("12#", pcap, ring_ms=750, first_key_ms=2500)
    root = parse_scenario(text)

    assert "@KEYS@" not in text
    assert "@RING_MS@" not in text
    assert [e.get("play_pcap_audio") for e in root.iter("exec")] == [str(pcap)]
    assert [e.get("milliseconds") for e in root.iter("pause")] == ["750"]
    waits = [e for e in root.iter("recv") if e.get("timeout")]
    assert [(e.get("request"), e.get("timeout"), e.get("ontimeout")) for e in waits] == [("BYE", "2500", "keys")]


def test_scenario_jumps_only_to_labels_it_has(tmp_path: Path) -> None:
    root = parse_scenario(sipp.handset_scenario("1", tmp_path / "k.pcap"))

    labels = {e.get("id") for e in root.iter("label")}
    targets = {e.get(attr) for e in root.iter() for attr in ("next", "ontimeout") if e.get(attr)}
    assert targets
    assert targets <= labels


def test_scenario_without_keys_stays_silent() -> None:
    text = sipp.handset_scenario("", None, ring_ms=100)
    root = parse_scenario(text)

    assert list(root.iter("exec")) == []
    assert "keys" not in {e.get("id") for e in root.iter("label")}
    assert [e.get("milliseconds") for e in root.iter("pause")] == ["100"]
    assert "@KEYS@" not in text
    assert "@RING_MS@" not in text


def test_scenario_order_answer_then_keys_then_bye(tmp_path: Path) -> None:
    root = parse_scenario(sipp.handset_scenario("1", tmp_path / "k.pcap"))
    steps = [e for e in root if e.tag in ("send", "recv", "pause", "nop")]

    kinds = [(e.tag, e.get("request") or "") for e in steps]
    assert kinds[:4] == [("recv", "INVITE"), ("send", ""), ("pause", ""), ("send", "")]
    assert kinds[4] == ("recv", "ACK")
    assert kinds[-2:] == [("recv", "BYE"), ("send", "")]
    assert "nop" in [tag for tag, _ in kinds[5:-2]]


def test_keys_without_a_pcap_are_refused_in_the_scenario() -> None:
    with pytest.raises(ValueError, match="pcap"):
        sipp.handset_scenario("12", None)


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
    files = sorted(sipp.SCENARIO_DIR.glob("uas-*.xml*"))
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
    root = parse_scenario((sipp.SCENARIO_DIR / f"uas-reject-{code}.xml").read_text())

    finals = [(e.text or "").strip().splitlines()[0] for e in root.iter("send")]
    assert finals == ["SIP/2.0 100 Trying", f"SIP/2.0 {code} {reason}"]
    assert [(e.tag, e.get("request")) for e in root if e.tag == "recv"] == [("recv", "INVITE"), ("recv", "ACK")]


def test_a_pause_before_the_first_key_is_added_to_the_first_wait(tmp_path: Path) -> None:
    root = parse_scenario(sipp.handset_scenario(",,12", tmp_path / "k.pcap", first_key_ms=1500))

    waits = [e.get("timeout") for e in root.iter("recv") if e.get("timeout")]
    assert waits == ["3500"]


def test_hangup_scenario_answers_then_sends_bye_the_other_way_round() -> None:
    text = sipp.handset_scenario("", None, ring_ms=200, hangup_after_ms=1500)
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
    root = parse_scenario(sipp.handset_scenario("", None, hangup_after_ms=1000))

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
        ("12,3", "rfc2833", 1000, 1000 + 300 + 1300 + sipp.KEY_MS),
        ("12,3,", "rfc2833", 1000, 1000 + 300 + 1300 + sipp.KEY_MS + 1000),
        ("12,3,", "info", 1000, 1000 + 1000),
    ],
)
def test_hangup_wait_starts_after_the_last_key(
    tmp_path: Path, keys: str, dtmf: sipp.Dtmf, hangup_after_ms: int, wait: int
) -> None:
    text = sipp.handset_scenario(keys, tmp_path / "k.pcap", dtmf=dtmf, hangup_after_ms=hangup_after_ms)
    root = parse_scenario(text)

    hangup_waits = [e.get("timeout") for e in root.iter("recv") if e.get("ontimeout") == "hangup"]
    assert hangup_waits == [str(wait)]
    assert_jumps_land(root)


def test_hangup_scenario_with_rfc2833_keys_plays_them_first(tmp_path: Path) -> None:
    root = parse_scenario(sipp.handset_scenario("12", tmp_path / "k.pcap", hangup_after_ms=800))

    kinds = steps(root)
    assert kinds.index(("nop", "")) < kinds.index(("send", "BYE"))
    assert [e.get("play_pcap_audio") for e in root.iter("exec")] == [str(tmp_path / "k.pcap")]


def test_info_scenario_sends_one_info_per_key_in_the_dialog() -> None:
    text = sipp.handset_scenario("1,*#", None, dtmf="info", first_key_ms=1200, key_gap_ms=250)
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
    root = parse_scenario(sipp.handset_scenario("12", None, dtmf="info"))

    kinds = steps(root)
    for at in (i for i, step in enumerate(kinds) if step == ("send", "INFO")):
        assert kinds[at + 1 : at + 3] == [("recv", "BYE"), ("recv", "200")]
    assert kinds[-3:] == [("recv", "BYE"), ("label", "bye"), ("send", "SIP/2.0")]


def test_info_scenario_without_keys_stays_silent() -> None:
    root = parse_scenario(sipp.handset_scenario("", None, dtmf="info"))

    assert sent(root, "INFO") == []
    assert_jumps_land(root)


def test_generated_scenarios_fill_every_placeholder(tmp_path: Path) -> None:
    texts = [
        sipp.handset_scenario("1,2", tmp_path / "k.pcap"),
        sipp.handset_scenario("1,2", tmp_path / "k.pcap", hangup_after_ms=10),
        sipp.handset_scenario("1,2", None, dtmf="info"),
        sipp.handset_scenario("1,2", None, dtmf="info", hangup_after_ms=10),
        sipp.by_number_scenario({"+819012340001": tmp_path / "1.pcap"}),
    ]
    for text in texts:
        assert not re.search(r"@[A-Z_]+@", text)
        assert "written by ivr_auth/sipp.py" in text
        parse_scenario(text)


# --- by_number_scenario --------------------------------------------------------------


def test_by_number_scenario_plays_each_numbers_pcap_only_on_its_calls(tmp_path: Path) -> None:
    pcaps = {"+819012340001": tmp_path / "keys-1.pcap", "+819012340002": tmp_path / "keys-2.pcap"}

    text = sipp.by_number_scenario(pcaps, ring_ms=100, first_key_ms=900)
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
    root = parse_scenario(sipp.by_number_scenario({"+819012340001": tmp_path / "1.pcap"}, first_key_ms=700))

    kinds = steps(root)
    assert kinds[:5] == [("recv", "INVITE"), ("send", "SIP/2.0"), ("pause", ""), ("send", "SIP/2.0"), ("recv", "ACK")]
    assert kinds[5:7] == [("recv", "BYE"), ("label", "keys")]
    assert kinds[-3:] == [("recv", "BYE"), ("label", "bye"), ("send", "SIP/2.0")]
    assert [e.get("timeout") for e in root.iter("recv") if e.get("timeout")] == ["700"]


def test_by_number_scenario_without_numbers_answers_in_silence() -> None:
    root = parse_scenario(sipp.by_number_scenario({}))

    assert list(root.iter("exec")) == []
    assert list(root.iter("strcmp")) == []


def test_by_number_scenario_escapes_what_it_writes_into_attributes(tmp_path: Path) -> None:
    root = parse_scenario(sipp.by_number_scenario({'12"<&>': tmp_path / 'a"b.pcap'}))

    assert [e.get("value") for e in root.iter("strcmp")] == ['12"<&>']
    assert [e.get("play_pcap_audio") for e in root.iter("exec")] == [str(tmp_path / 'a"b.pcap')]


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

    assert scenario == sipp.SCENARIO_DIR / "uas-reject-603.xml"


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
        ({"keys_by_number": {"+819012340001": ",1"}}, "no pause before the first key"),
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
