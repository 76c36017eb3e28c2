from __future__ import annotations

import itertools
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

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


@pytest.mark.parametrize("key", ["A", "x", "?"])
def test_keys_without_a_pcap_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="no DTMF pcap"):
        sipp.dtmf_pcap(f"1{key}")


def test_pcap_for_names_sipps_files() -> None:
    assert sipp.pcap_for("*").name == "dtmf_2833_star.pcap"
    assert sipp.pcap_for("#").name == "dtmf_2833_pound.pcap"
    assert sipp.pcap_for("0").name == "dtmf_2833_0.pcap"


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
