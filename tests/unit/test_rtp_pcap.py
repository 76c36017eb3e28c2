from __future__ import annotations

import itertools
import math
import struct
from dataclasses import dataclass

import pytest

from ivr_auth_devkit import rtp_pcap

pytestmark = pytest.mark.skipif(
    not rtp_pcap.pcap_for("0").is_file(), reason=f"SIPp's DTMF pcaps are not installed in {rtp_pcap.PCAP_DIR}"
)

EVENT_CODES = {**{d: int(d) for d in "0123456789"}, "*": 10, "#": 11}
RTP = rtp_pcap.RTP_OFFSET


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
                udp_checksum=body[rtp_pcap.UDP_CHECKSUM_OFFSET : rtp_pcap.UDP_CHECKSUM_OFFSET + 2],
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
    header, packets = parse_pcap(rtp_pcap.dtmf_pcap(keys, seed=7))
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
    _, packets = parse_pcap(rtp_pcap.dtmf_pcap(keys, seed=1))
    runs = by_key(packets)

    seqs = [p.seq for p in packets]
    assert seqs == sorted(seqs)
    for before, after in itertools.pairwise(runs):
        assert after[0].seq == before[-1].seq + 1
        assert after[0].timestamp > before[0].timestamp


def test_repeated_digits_have_distinct_timestamps() -> None:
    _, packets = parse_pcap(rtp_pcap.dtmf_pcap("1111", seed=3))

    stamps = sorted({p.timestamp for p in packets})
    assert len(stamps) == 4
    assert all(p.event == 1 for p in packets)


def test_timestamp_step_follows_the_key_gap() -> None:
    _, packets = parse_pcap(rtp_pcap.dtmf_pcap("12", key_gap_ms=500, seed=3))
    first, second = by_key(packets)

    assert second[0].timestamp - first[0].timestamp == 500 * 8 + rtp_pcap.EVENT_SAMPLES


def test_record_times_rise_and_keys_are_spaced_by_the_gap() -> None:
    _, packets = parse_pcap(rtp_pcap.dtmf_pcap("5555", key_gap_ms=400, seed=3))
    runs = by_key(packets)

    times = [p.time for p in packets]
    assert times == sorted(times)
    assert times[0] == 0.0
    for before, after in itertools.pairwise(runs):
        assert after[0].time > before[-1].time
        assert after[0].time - before[0].time == pytest.approx(0.4, abs=1e-5)


def test_a_gap_shorter_than_a_key_is_widened() -> None:
    _, packets = parse_pcap(rtp_pcap.dtmf_pcap("12", key_gap_ms=10, seed=3))
    first, second = by_key(packets)

    assert second[0].time - first[0].time == pytest.approx(rtp_pcap.MIN_KEY_GAP_MS / 1000, abs=1e-5)
    assert second[0].time > first[-1].time
    assert second[0].timestamp - first[0].timestamp == rtp_pcap.MIN_KEY_GAP_MS * 8 + rtp_pcap.EVENT_SAMPLES


def test_seed_makes_the_pcap_reproducible() -> None:
    assert rtp_pcap.dtmf_pcap("12#", seed=42) == rtp_pcap.dtmf_pcap("12#", seed=42)
    assert rtp_pcap.dtmf_pcap("12#", seed=42) != rtp_pcap.dtmf_pcap("12#", seed=43)


def test_each_key_keeps_the_packet_count_of_its_source_pcap() -> None:
    source = sum(1 for _ in parse_pcap(rtp_pcap.pcap_for("7").read_bytes())[1])

    _, packets = parse_pcap(rtp_pcap.dtmf_pcap("77", seed=0))

    assert len(packets) == 2 * source


@pytest.mark.parametrize("key", ["A", "x", "?", " ", ";"])
def test_keys_without_a_pcap_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="not a DTMF key"):
        rtp_pcap.dtmf_pcap(f"1{key}")


def test_pcap_for_names_sipps_files() -> None:
    assert rtp_pcap.pcap_for("*").name == "dtmf_2833_star.pcap"
    assert rtp_pcap.pcap_for("#").name == "dtmf_2833_pound.pcap"
    assert rtp_pcap.pcap_for("0").name == "dtmf_2833_0.pcap"


# --- pauses --------------------------------------------------------------------------


def test_presses_put_the_gap_between_keys_and_a_second_per_comma() -> None:
    assert rtp_pcap.presses(",1,,23,", key_gap_ms=300) == [
        rtp_pcap.Press("1", 1000),
        rtp_pcap.Press("2", 2300),
        rtp_pcap.Press("3", 300),
    ]
    assert rtp_pcap.presses("") == []
    assert rtp_pcap.presses(",,") == []


def test_trailing_pause_counts_the_commas_after_the_last_key() -> None:
    assert rtp_pcap.trailing_pause_ms("12,,") == 2000
    assert rtp_pcap.trailing_pause_ms(",1") == 0
    assert rtp_pcap.trailing_pause_ms(",,,") == 3000


@pytest.mark.parametrize(("keys", "pause_s"), [("1,2", 1), ("1,,,2", 3), ("7,7", 1)])
def test_a_pause_delays_the_next_key_and_moves_the_timestamp_on(keys: str, pause_s: int) -> None:
    _, packets = parse_pcap(rtp_pcap.dtmf_pcap(keys, key_gap_ms=300, seed=5))
    first, second = by_key(packets)

    assert second[0].time - first[0].time == pytest.approx(0.3 + pause_s, abs=1e-5)
    assert second[0].timestamp - first[0].timestamp == (300 + 1000 * pause_s) * 8 + rtp_pcap.EVENT_SAMPLES
    # Nothing is sent during a pause, so the sequence numbers run straight on.
    assert second[0].seq == first[-1].seq + 1


def test_sequence_runs_on_across_several_pauses() -> None:
    _, packets = parse_pcap(rtp_pcap.dtmf_pcap("111111#,,,123456#", seed=9))
    runs = by_key(packets)

    assert [EVENT_CODES[k] for k in "111111#123456#"] == [run[0].event for run in runs]
    for before, after in itertools.pairwise(runs):
        assert after[0].seq == before[-1].seq + 1
    stamps = [run[0].timestamp for run in runs]
    assert stamps == sorted(set(stamps))
    assert runs[7][0].time - runs[6][0].time == pytest.approx(3.3, abs=1e-5)


def test_a_pause_before_the_first_key_or_after_the_last_is_not_in_the_pcap() -> None:
    # A player sends the first packet at once; Handset waits the lead out itself.
    assert rtp_pcap.dtmf_pcap(",,12,", seed=4) == rtp_pcap.dtmf_pcap("12", seed=4)
    assert rtp_pcap.dtmf_pcap(",,,", seed=4) == b""


# --- μ-law and audio ---------------------------------------------------------------


def ulaw_decode(byte: int) -> int:
    """G.711's μ-law expansion, to check the encoder against."""
    byte = ~byte & 0xFF
    magnitude = ((((byte & 0x0F) << 3) + 0x84) << ((byte >> 4) & 0x07)) - 0x84
    return -magnitude if byte & 0x80 else magnitude


@dataclass(frozen=True)
class Rtp:
    time: float
    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    udp_ports: tuple[int, int]


def parse_rtp(data: bytes) -> list[Rtp]:
    out = []
    for when, packet in rtp_pcap.read_pcap(data):
        assert packet[12:14] == b"\x08\x00", "IPv4 over Ethernet"
        total = struct.unpack_from("!H", packet, 16)[0]
        sport, dport, udp_len = struct.unpack_from("!HHH", packet, 34)
        assert total == len(packet) - 14
        assert udp_len == len(packet) - 34
        first, second, seq, timestamp, ssrc = struct.unpack_from("!BBHII", packet, RTP)
        assert first >> 6 == 2
        out.append(
            Rtp(when, bool(second & 0x80), second & 0x7F, seq, timestamp, ssrc, packet[RTP + 12 :], (sport, dport))
        )
    return out


@pytest.mark.parametrize(
    ("sample", "byte"), [(0, 0xFF), (-1, 0x7F), (32767, 0x80), (-32768, 0x00), (1000, 0xCE), (-1000, 0x4E)]
)
def test_ulaw_encodes_as_g711(sample: int, byte: int) -> None:
    assert rtp_pcap.ulaw(sample) == byte


def test_ulaw_round_trip_stays_within_a_step() -> None:
    for sample in range(-32000, 32000, 37):
        decoded = ulaw_decode(rtp_pcap.ulaw(sample))
        assert abs(decoded - sample) <= max(4, abs(sample) // 16), sample


def test_audio_pcap_is_voice_then_silence_in_20_ms_pcmu_packets() -> None:
    data = rtp_pcap.audio_pcap(1000, 600, seed=2)
    packets = parse_rtp(data)

    assert data[:24] == rtp_pcap.PCAP_HEADER
    assert len(packets) == 50 + 30
    assert {p.payload_type for p in packets} == {0}
    assert [p.marker for p in packets] == [True] + [False] * 79
    assert {len(p.payload) for p in packets} == {160}
    assert len({p.ssrc for p in packets}) == 1
    for before, after in itertools.pairwise(packets):
        assert after.seq == (before.seq + 1) & 0xFFFF
        assert after.timestamp - before.timestamp == 160
        assert after.time - before.time == pytest.approx(0.02, abs=1e-6)
    assert packets[0].time == 0.0
    assert {p.payload for p in packets[50:]} == {b"\xff" * 160}


def test_the_voice_is_loud_enough_for_asterisk_to_hear_speech() -> None:
    packets = parse_rtp(rtp_pcap.audio_pcap(400, 0, seed=2))

    assert len(packets) == 20
    for p in packets:
        level = sum(abs(ulaw_decode(b)) for b in p.payload) / len(p.payload)
        assert level > 10 * 256  # AMD's silence_threshold is 256


def test_voice_samples_are_a_tone_of_the_frequency_asked() -> None:
    samples = rtp_pcap.voice_samples(8000, frequency_hz=400, amplitude=1000)

    crossings = sum(1 for a, b in itertools.pairwise(samples) if a < 0 <= b)
    assert crossings in (399, 400)
    assert max(samples) == 1000
    assert samples[20] == 0 == round(1000 * math.sin(math.pi * 2))


def test_lengths_round_up_to_whole_packets() -> None:
    assert len(parse_rtp(rtp_pcap.audio_pcap(30, 1))) == 2 + 1
    assert rtp_pcap.audio_pcap(0, 0) == b""


def test_audio_pcap_keys_after_the_silence_in_the_same_stream() -> None:
    packets = parse_rtp(rtp_pcap.audio_pcap(200, 400, keys="12", key_gap_ms=300, seed=4))
    audio, events = packets[:30], packets[30:]

    assert {p.payload_type for p in audio} == {0}
    assert {p.payload_type for p in events} == {101}
    assert [p.payload[0] for p in (run[0] for run in by_key_rtp(events))] == [1, 2]
    assert len({p.ssrc for p in packets}) == 1
    assert len({p.udp_ports for p in packets}) == 1, "SIPp sends by the UDP port offset"
    # An event's end packet goes three times with one sequence number.
    assert {b.seq - a.seq for a, b in itertools.pairwise(packets)} == {0, 1}
    assert events[0].timestamp == audio[-1].timestamp + 160
    assert events[0].time == pytest.approx(0.6, abs=1e-6)
    assert events[0].marker


def by_key_rtp(packets: list[Rtp]) -> list[list[Rtp]]:
    runs: list[list[Rtp]] = []
    for p in packets:
        if runs and runs[-1][-1].timestamp == p.timestamp:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def test_a_pause_before_the_first_key_is_more_silence() -> None:
    packets = parse_rtp(rtp_pcap.audio_pcap(100, 200, keys=",,5", seed=4))

    silence = [p for p in packets if p.payload_type == 0 and p.payload == b"\xff" * 160]
    assert len(silence) == (200 + 2000) // 20
    assert [p.payload_type for p in packets].index(101) == 5 + 110


@pytest.mark.parametrize(("voice", "silence", "keys"), [(4000, 4000, ""), (500, 3000, "12#"), (510, 0, ",1,,2")])
def test_audio_pcap_ms_is_how_long_it_plays(voice: int, silence: int, keys: str) -> None:
    packets = parse_rtp(rtp_pcap.audio_pcap(voice, silence, keys=keys, seed=1))

    last = packets[-1].time * 1000 + (20 if packets[-1].payload_type == 0 else 0)
    assert rtp_pcap.audio_pcap_ms(voice, silence, keys) == pytest.approx(last, abs=rtp_pcap.KEY_MS)
    assert rtp_pcap.audio_pcap_ms(voice, silence, keys) >= last


def test_keying_ms() -> None:
    assert rtp_pcap.keying_ms("") == 0
    assert rtp_pcap.keying_ms(",,") == 0
    assert rtp_pcap.keying_ms("1") == rtp_pcap.KEY_MS
    assert rtp_pcap.keying_ms("1,2", key_gap_ms=300) == 1300 + rtp_pcap.KEY_MS


def test_audio_pcap_refuses_negative_lengths_and_bad_keys() -> None:
    with pytest.raises(ValueError, match="negative"):
        rtp_pcap.audio_pcap(-1, 0)
    with pytest.raises(ValueError, match="not a DTMF key"):
        rtp_pcap.audio_pcap(100, 100, keys="1x")


def test_read_pcap_refuses_what_is_not_a_pcap() -> None:
    with pytest.raises(ValueError, match="pcap"):
        rtp_pcap.read_pcap(b"GIF89a" + bytes(30))


def test_dtmf_pcap_packets_share_one_udp_port_pair() -> None:
    packets = parse_rtp(rtp_pcap.dtmf_pcap("1#", seed=1))

    assert len({p.udp_ports for p in packets}) == 1
