"""RTP streams as pcap files for SIPp's ``play_pcap_audio``: DTMF keys as
RFC 2833 events, and voice-like μ-law audio followed by silence.

A key sequence is keys (``0-9 * #``) and pauses: each "," waits one second
more before the next key, so one handset can key a wrong code, wait while
the service says so, and key the right one (``"111111#,,,123456#"``).

SIPp sends each record's UDP payload as it is, at the record's time offset,
to the far end's media address (it rewrites addresses and ports only), so
sequence numbers, timestamps and SSRC here are what the far end sees.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

PCAP_DIR = Path("/usr/share/sip-tester")
PCAP_NAMES = {**{d: d for d in "0123456789"}, "*": "star", "#": "pound"}
PAUSE = ","
PAUSE_MS = 1000
# Each of SIPp's DTMF pcaps lasts 140 ms; keys closer than that would overlap.
KEY_MS = 140
MIN_KEY_GAP_MS = 200
# A little-endian pcap file header: version 2.4, snaplen 65535, Ethernet link type.
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0xFFFF, 1)
# Ethernet (14) + IPv4 (20) + UDP (8) headers, in SIPp's pcaps and in ours.
RTP_OFFSET = 42
UDP_CHECKSUM_OFFSET = 40
# Each pcap's event lasts 2240 samples (280 ms at 8 kHz).
EVENT_SAMPLES = 2240
SAMPLES_PER_MS = 8
PCMU = 0
FRAME_MS = 20
FRAME_SAMPLES = FRAME_MS * SAMPLES_PER_MS
ULAW_SILENCE = 0xFF
_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635


@dataclass(frozen=True)
class Press:
    """One key of a sequence, pressed ``wait_ms`` after the previous one
    (the first: after keying begins)."""

    key: str
    wait_ms: int


def presses(keys: str, *, key_gap_ms: int = 300) -> list[Press]:
    """The keys of ``keys`` with their waits: ``key_gap_ms`` (at least
    ``MIN_KEY_GAP_MS``) between two keys, plus a second per "," before a key."""
    gap = max(key_gap_ms, MIN_KEY_GAP_MS)
    out: list[Press] = []
    paused = 0
    for key in keys:
        if key == PAUSE:
            paused += PAUSE_MS
        elif key in PCAP_NAMES:
            out.append(Press(key, paused + (gap if out else 0)))
            paused = 0
        else:
            raise ValueError(f"{key!r} is not a DTMF key (0-9, * and #, or ',' for a pause)")
    return out


def trailing_pause_ms(keys: str) -> int:
    """The pauses after the last key (all of them when there is no key)."""
    return (len(keys) - len(keys.rstrip(PAUSE))) * PAUSE_MS


def keying_ms(keys: str, *, key_gap_ms: int = 300) -> int:
    """How long a pcap of ``keys`` plays: from its first key's first packet
    to its last key's last (0 without keys)."""
    plan = presses(keys, key_gap_ms=key_gap_ms)
    return sum(p.wait_ms for p in plan[1:]) + KEY_MS if plan else 0


def pcap_for(key: str) -> Path:
    try:
        return PCAP_DIR / f"dtmf_2833_{PCAP_NAMES[key]}.pcap"
    except KeyError:
        raise ValueError(f"no DTMF pcap for key {key!r}") from None


def read_pcap(data: bytes) -> list[tuple[float, bytes]]:
    """The records of a little-endian pcap: (time in seconds, packet)."""
    if data[:4] != PCAP_HEADER[:4]:
        raise ValueError("not a little-endian pcap file")
    packets = []
    offset = 24
    while offset + 16 <= len(data):
        sec, usec, incl, _orig = struct.unpack_from("<IIII", data, offset)
        packets.append((sec + usec / 1e6, data[offset + 16 : offset + 16 + incl]))
        offset += 16 + incl
    return packets


def _read_pcap(path: Path) -> list[tuple[float, bytes]]:
    try:
        return read_pcap(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def ulaw(sample: int) -> int:
    """One 16-bit linear sample as a G.711 μ-law byte."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), _ULAW_CLIP) + _ULAW_BIAS
    exponent = magnitude.bit_length() - 8
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | exponent << 4 | mantissa) & 0xFF


def ulaw_bytes(samples: Iterable[int]) -> bytes:
    return bytes(ulaw(s) for s in samples)


def voice_samples(count: int, *, frequency_hz: float = 400.0, amplitude: int = 8000) -> list[int]:
    """A steady tone: what Asterisk's silence detector (mean level against
    a threshold of 256) and AMD() take for someone speaking."""
    step = 2 * math.pi * frequency_hz / (SAMPLES_PER_MS * 1000)
    return [round(amplitude * math.sin(step * n)) for n in range(count)]


def _record(at_us: int, packet: bytes) -> bytes:
    sec, usec = divmod(at_us, 1_000_000)
    return struct.pack("<IIII", sec, usec, len(packet), len(packet)) + packet


def _udp_packet(payload: bytes, *, ip_id: int) -> bytes:
    """Ethernet, IPv4 and UDP headers around ``payload`` (the addresses and
    ports are placeholders: SIPp sends from and to the call's own)."""
    ether = bytes(6) + bytes(6) + b"\x08\x00"
    udp_len = 8 + len(payload)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, ip_id, 0, 64, 17, 0, bytes(4), bytes(4)))
    words = struct.unpack("!10H", ip)
    total = sum(words)
    total = (total & 0xFFFF) + (total >> 16)
    struct.pack_into("!H", ip, 10, ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF)
    # IPv4 UDP: a checksum of 0 means "none".
    udp = struct.pack("!HHHH", 6000, 6000, udp_len, 0)
    return ether + bytes(ip) + udp + payload


@dataclass
class _Stream:
    """An RTP stream being written: the next packet's sequence number and
    the RTP timestamp and record time (ms) of the next 20 ms of audio."""

    seq: int
    timestamp: int
    ssrc: int | None
    at_ms: int = 0
    records: list[bytes] = field(default_factory=list)

    def audio(self, payloads: Iterable[bytes]) -> None:
        for index, payload in enumerate(payloads):
            marker = 0x80 if index == 0 and not self.records else 0
            rtp = struct.pack("!BBHII", 0x80, marker | PCMU, self.seq, self.timestamp, self.ssrc or 0) + payload
            self.records.append(_record(self.at_ms * 1000, _udp_packet(rtp, ip_id=self.seq)))
            self.seq = (self.seq + 1) & 0xFFFF
            self.timestamp = (self.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
            self.at_ms += FRAME_MS

    def events(self, keys: str, key_gap_ms: int) -> None:
        """The keys of ``keys`` from now on. A pause before the first key is
        not written (the caller decides what fills it)."""
        plan = presses(keys, key_gap_ms=key_gap_ms)
        if not plan:
            return
        start_ms, start_timestamp = self.at_ms, self.timestamp
        rel_ms = 0
        for index, press in enumerate(plan):
            if index:
                rel_ms += press.wait_ms
            timestamp = (start_timestamp + rel_ms * SAMPLES_PER_MS + index * EVENT_SAMPLES) & 0xFFFFFFFF
            packets = _read_pcap(pcap_for(press.key))
            first_time = packets[0][0]
            first_seq = struct.unpack_from("!H", packets[0][1], RTP_OFFSET + 2)[0]
            last_seq = self.seq
            for when, packet in packets:
                udp_len = struct.unpack_from("!H", packet, UDP_CHECKSUM_OFFSET - 2)[0]
                rtp = bytearray(packet[RTP_OFFSET : RTP_OFFSET - 8 + udp_len])
                orig_seq = struct.unpack_from("!H", rtp, 2)[0]
                last_seq = (self.seq + (orig_seq - first_seq)) & 0xFFFF
                struct.pack_into("!HI", rtp, 2, last_seq, timestamp)
                if self.ssrc is not None:
                    struct.pack_into("!I", rtp, 8, self.ssrc)
                at_us = (start_ms + rel_ms) * 1000 + round((when - first_time) * 1e6)
                # New headers: SIPp sends a packet to the far end's media port plus the
                # difference between its UDP port and the first packet's.
                self.records.append(_record(at_us, _udp_packet(bytes(rtp), ip_id=last_seq)))
            self.seq = (last_seq + 1) & 0xFFFF
        self.at_ms = start_ms + rel_ms + KEY_MS
        self.timestamp = (start_timestamp + (rel_ms + KEY_MS) * SAMPLES_PER_MS + len(plan) * EVENT_SAMPLES) & 0xFFFFFFFF

    def pcap(self) -> bytes:
        return PCAP_HEADER + b"".join(self.records) if self.records else b""


def dtmf_pcap(keys: str, *, key_gap_ms: int = 300, seed: int | None = None) -> bytes:
    """One pcap of RFC 2833 events that keys ``keys`` in order.

    SIPp's pcaps each carry fixed RTP sequence numbers and timestamps, and
    Asterisk drops an event whose sequence number is behind the last one
    (or whose timestamp repeats it), so playing them one after another loses
    every key that is not "higher" than the one before (a repeated digit,
    or 3 after 7). Here each key's packets are renumbered to run on from
    the previous key's, and spaced as ``presses()`` says; across a pause the
    timestamps move on by the pause, as a phone's clock would.

    A pause before the first key is not in the pcap: a player sends the
    first packet at once, so the wait is the player's (``Handset`` adds it
    to ``first_key_ms``).
    """
    rng = random.Random(seed)
    stream = _Stream(seq=rng.randrange(1000, 30000), timestamp=rng.randrange(10_000, 1_000_000) * 160, ssrc=None)
    stream.events(keys, key_gap_ms)
    return stream.pcap()


def audio_pcap(
    voice_ms: int,
    silence_ms: int,
    *,
    keys: str = "",
    key_gap_ms: int = 300,
    frequency_hz: float = 400.0,
    amplitude: int = 8000,
    seed: int | None = None,
) -> bytes:
    """One PCMU stream (payload type 0, 20 ms packets): ``voice_ms`` of a
    voice-like tone, then ``silence_ms`` of μ-law silence, then ``keys`` as
    RFC 2833 events, all in one run of sequence numbers, timestamps and SSRC.

    Silence is sent as frames because Asterisk's AMD() hears a stream that
    stops as no answer at all; the keys come in the same stream so that one
    ``play_pcap_audio`` plays greeting and keys in order (SIPp plays pcaps
    asynchronously, and a second one would overlap the first). A pause
    before the first key is more silence.
    """
    if voice_ms < 0 or silence_ms < 0:
        raise ValueError("voice_ms and silence_ms cannot be negative")
    plan = presses(keys, key_gap_ms=key_gap_ms)
    lead_ms = plan[0].wait_ms if plan else 0
    rng = random.Random(seed)
    stream = _Stream(
        seq=rng.randrange(1000, 30000), timestamp=rng.randrange(10_000, 1_000_000) * 160, ssrc=rng.getrandbits(32)
    )
    voice = ulaw_bytes(voice_samples(_frames(voice_ms) * FRAME_SAMPLES, frequency_hz=frequency_hz, amplitude=amplitude))
    stream.audio(voice[i : i + FRAME_SAMPLES] for i in range(0, len(voice), FRAME_SAMPLES))
    stream.audio(bytes([ULAW_SILENCE]) * FRAME_SAMPLES for _ in range(_frames(silence_ms + lead_ms)))
    stream.events(keys, key_gap_ms)
    return stream.pcap()


def audio_pcap_ms(voice_ms: int, silence_ms: int, keys: str = "", *, key_gap_ms: int = 300) -> int:
    """How long ``audio_pcap()`` of the same arguments plays."""
    plan = presses(keys, key_gap_ms=key_gap_ms)
    lead_ms = plan[0].wait_ms if plan else 0
    audio_ms = (_frames(voice_ms) + _frames(silence_ms + lead_ms)) * FRAME_MS
    return audio_ms + keying_ms(keys, key_gap_ms=key_gap_ms)


def _frames(ms: int) -> int:
    return -(-ms // FRAME_MS)
