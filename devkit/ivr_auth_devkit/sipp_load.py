"""SIPp phones for load: the CSV-driven scenarios of ``sipp-scenarios/``
(load-uas-keys.xml, load-uac-inbound.xml), run with injection files written
from rows, for the load tests and ``make bench``.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ivr_auth_devkit import rtp_pcap, sipp, sipp_scenarios

Behaviour = Literal["keys", "silent", "busy"]
# SIPp knows an injection file by the name given to -inf; the scenarios name these.
CODES_CSV = "codes.csv"
CALLERS_CSV = "callers.csv"
KEYS = frozenset("0123456789*#")
MIN_GAP_MS = 200


@dataclass(frozen=True)
class HandsetRow:
    """What the load handset does when ``number`` is dialled (a row of codes.csv)."""

    number: str
    keys: str = ""
    behaviour: Behaviour = "keys"
    wait_ms: int = 1500
    gap_ms: int = 300
    rounds: int = 1

    def __post_init__(self) -> None:
        sipp_scenarios._sip_user(self.number, "number")
        if not set(self.keys) <= KEYS:
            raise ValueError(f"keys of {self.number[:4]}...: only 0-9, * and #")
        if self.behaviour not in ("keys", "silent", "busy"):
            raise ValueError(f"behaviour: {self.behaviour!r} is not keys, silent or busy")
        if self.behaviour == "keys" and (not self.keys or self.rounds < 1):
            raise ValueError("a keying row needs keys and at least one round")
        if self.wait_ms < 0 or self.gap_ms < MIN_GAP_MS:
            raise ValueError(f"wait_ms cannot be negative, gap_ms must be at least {MIN_GAP_MS}")

    def line(self) -> str:
        return f"{self.number};{self.keys};{self.behaviour};{self.wait_ms};{self.gap_ms};{self.rounds}"


def codes_csv(rows: Sequence[HandsetRow]) -> str:
    numbers = [r.number for r in rows]
    if len(set(numbers)) != len(numbers):
        raise ValueError("one row per number")
    return "SEQUENTIAL\n" + "".join(f"{r.line()}\n" for r in rows)


def callers_csv(calls: Sequence[tuple[str, str]]) -> str:
    """``calls``: (caller, number called) per call, in order."""
    for caller, did in calls:
        sipp_scenarios._sip_user(caller, "caller")
        sipp_scenarios._sip_user(did, "number")
    return "SEQUENTIAL\n" + "".join(f"{caller};{did}\n" for caller, did in calls)


@dataclass
class LoadHandsets(sipp.Handset):
    """One SIPp process answering ``calls`` calls (any number at once) with
    load-uas-keys.xml, each as the row of its dialled number says.
    ``invites`` holds, once it has finished, when each INVITE came (its
    Request-URI user part, SIPp's clock) when ``trace`` is set."""

    rows: Sequence[HandsetRow] = ()
    trace: bool = False
    scenario: str = "load-uas-keys.xml"
    invites: list[tuple[str, dt.datetime]] = field(default_factory=list, init=False, repr=False)
    _role = "the SIPp load handsets"

    def __post_init__(self) -> None:
        super().__post_init__()
        codes_csv(self.rows)
        self._trace_messages = self.trace

    def _write_scenario(self, workdir: Path) -> Path:
        (workdir / CODES_CSV).write_text(codes_csv(self.rows))
        # The scenario plays its keys from pcap/, relative to SIPp's directory.
        (workdir / "pcap").symlink_to(sipp_scenarios.SCENARIO_DIR / "pcap")
        self.extra_args = ["-inf", CODES_CSV, "-infindex", CODES_CSV, "0", *self.extra_args]
        return sipp_scenarios.SCENARIO_DIR / self.scenario

    def _result(self, returncode: int, output: str) -> sipp.SippResult:
        if self._dir is not None and (log := self._dir / "messages.log").exists():
            self.invites = received_invites(log.read_text(errors="replace"))
        return super()._result(returncode, output)


@dataclass
class LoadCallers(sipp.Caller):
    """One SIPp process placing one call per entry of ``calls`` (caller,
    number called) with load-uac-inbound.xml, ``rate`` new calls per second."""

    calls_from: Sequence[tuple[str, str]] = ()
    rate: float = 1.0
    did: str = "0"
    caller: str = "0"
    _role = "the SIPp load callers"

    def __post_init__(self) -> None:
        callers_csv(self.calls_from)
        self.calls = len(self.calls_from)

    def _write_scenario(self, workdir: Path) -> Path:
        (workdir / CALLERS_CSV).write_text(callers_csv(self.calls_from))
        self.extra_args = ["-inf", CALLERS_CSV, "-r", str(self.rate), "-rp", "1000", *self.extra_args]
        return sipp_scenarios.SCENARIO_DIR / "load-uac-inbound.xml"


_TRACE_BLOCK = re.compile(
    r"^-{20,}\s*(\d{4}-\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+)[^\n]*\n"
    r"[^\n]*message received[^\n]*\n\s*INVITE sips?:([^@;>\s]+)@",
    re.MULTILINE,
)


def received_invites(messages: str) -> list[tuple[str, dt.datetime]]:
    """(dialled number, local time received) of each INVITE in a SIPp
    message trace (-trace_msg), retransmissions included."""
    return [
        (number, dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").astimezone())
        for stamp, number in _TRACE_BLOCK.findall(messages)
    ]


KEY_NAMES = rtp_pcap.PCAP_NAMES
VARIANTS = "ab"


def key_pcap_name(key: str, variant: str) -> str:
    return f"dtmf_{KEY_NAMES[key]}{variant}.pcap"


def key_pcap(key: str, variant: str) -> bytes:
    """SIPp's RFC 2833 pcap of ``key`` with an SSRC and sequence numbers of
    its own for each (key, variant)."""
    index = list(KEY_NAMES).index(key) * len(VARIANTS) + VARIANTS.index(variant)
    out = [rtp_pcap.PCAP_HEADER]
    for when, packet in rtp_pcap.read_pcap(rtp_pcap.pcap_for(key).read_bytes()):
        data = bytearray(packet)
        seq = struct.unpack_from("!H", data, rtp_pcap.RTP_OFFSET + 2)[0]
        struct.pack_into("!H", data, rtp_pcap.RTP_OFFSET + 2, 1000 + index * 100 + seq % 100)
        struct.pack_into("!I", data, rtp_pcap.RTP_OFFSET + 8, 0x1F000000 + index)
        struct.pack_into("!H", data, rtp_pcap.UDP_CHECKSUM_OFFSET, 0)
        sec, usec = divmod(round(when * 1e6), 1_000_000)
        out.append(struct.pack("<IIII", sec, usec, len(data), len(data)) + bytes(data))
    return b"".join(out)
