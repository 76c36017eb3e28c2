"""SIPp virtual handsets: the phones of the demo, the tests and the benchmark.

Scenarios live in ``sipp-scenarios/``. A handset that keys a code needs the
code in its scenario (SIPp's ``play_dtmf`` uses payload type 96, which
Asterisk does not hear as the offerer, so keys are sent as RFC 2833 pcaps),
so that scenario is written per call from ``uas-answer-keys.xml.in``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import shutil
import socket
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ivr_auth import errors
from ivr_auth.stack import ports

logger = logging.getLogger(__name__)

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "sipp-scenarios"
PCAP_DIR = Path("/usr/share/sip-tester")
PCAP_NAMES = {**{d: d for d in "0123456789"}, "*": "star", "#": "pound"}
# A DTMF pcap lasts 140 ms; keys closer than this would overlap.
MIN_KEY_GAP_MS = 200
# Ethernet (14) + IPv4 (20) + UDP (8) headers in SIPp's pcaps.
RTP_OFFSET = 42
UDP_CHECKSUM_OFFSET = 40
# Each pcap's event lasts 2240 samples (280 ms at 8 kHz).
EVENT_SAMPLES = 2240


def pcap_for(key: str) -> Path:
    try:
        return PCAP_DIR / f"dtmf_2833_{PCAP_NAMES[key]}.pcap"
    except KeyError:
        raise ValueError(f"no DTMF pcap for key {key!r}") from None


def _read_pcap(path: Path) -> tuple[bytes, list[tuple[float, bytes]]]:
    data = path.read_bytes()
    if data[:4] != b"\xd4\xc3\xb2\xa1":
        raise ValueError(f"{path}: not a little-endian pcap file")
    packets = []
    offset = 24
    while offset + 16 <= len(data):
        sec, usec, incl, _orig = struct.unpack_from("<IIII", data, offset)
        packets.append((sec + usec / 1e6, data[offset + 16 : offset + 16 + incl]))
        offset += 16 + incl
    return data[:24], packets


def dtmf_pcap(keys: str, *, key_gap_ms: int = 300, seed: int | None = None) -> bytes:
    """One pcap of RFC 2833 events that keys ``keys`` in order.

    SIPp's pcaps each carry fixed RTP sequence numbers and timestamps, and
    Asterisk drops an event whose sequence number is behind the last one
    (or whose timestamp repeats it), so playing them one after another loses
    every key that is not "higher" than the one before (a repeated digit,
    or 3 after 7). Here each key's packets are renumbered to run on from
    the previous key's, and spaced ``key_gap_ms`` apart.
    """
    rng = random.Random(seed)
    seq = rng.randrange(1000, 30000)
    timestamp = rng.randrange(10_000, 1_000_000) * 160
    gap = max(key_gap_ms, MIN_KEY_GAP_MS)
    header = b""
    out: list[bytes] = []
    at = 0.0
    for key in keys:
        header, packets = _read_pcap(pcap_for(key))
        first_time = packets[0][0]
        first_seq = struct.unpack_from("!H", packets[0][1], RTP_OFFSET + 2)[0]
        last_seq = seq
        for when, packet in packets:
            buf = bytearray(packet)
            orig_seq = struct.unpack_from("!H", buf, RTP_OFFSET + 2)[0]
            last_seq = (seq + (orig_seq - first_seq)) & 0xFFFF
            struct.pack_into("!H", buf, RTP_OFFSET + 2, last_seq)
            struct.pack_into("!I", buf, RTP_OFFSET + 4, timestamp & 0xFFFFFFFF)
            struct.pack_into("!H", buf, UDP_CHECKSUM_OFFSET, 0)  # IPv4 UDP: 0 means "no checksum"
            t = at + (when - first_time)
            sec = int(t)
            out.append(struct.pack("<IIII", sec, int((t - sec) * 1e6), len(buf), len(buf)) + bytes(buf))
        seq = (last_seq + 1) & 0xFFFF
        timestamp += gap * 8 + EVENT_SAMPLES
        at += gap / 1000
    return header + b"".join(out)


def handset_scenario(
    keys: str, pcap_path: Path | None, *, ring_ms: int = 300, first_key_ms: int = 1500, key_gap_ms: int = 300
) -> str:
    """A UAS scenario that answers and then plays ``pcap_path`` (from
    ``dtmf_pcap(keys)``), or stays silent when ``keys`` is empty."""
    steps: list[str] = []
    if keys:
        if pcap_path is None:
            raise ValueError("keys need a pcap to play")
        # A BYE while waiting to key (the far end gave up) still ends the call cleanly.
        steps.append(f'  <recv request="BYE" timeout="{first_key_ms}" ontimeout="keys" next="bye"/>')
        steps.append('  <label id="keys"/>')
        steps.append(f'  <nop><action><exec play_pcap_audio="{pcap_path}"/></action></nop>')
    template = (SCENARIO_DIR / "uas-answer-keys.xml.in").read_text()
    return template.replace("@RING_MS@", str(ring_ms)).replace("@KEYS@", "\n".join(steps))


@dataclass(frozen=True)
class SippResult:
    returncode: int
    successful: int
    failed: int
    output: str
    errors_log: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0 and self.successful > 0


@dataclass
class Handset:
    """One SIPp process acting as the far end (UAS) on ``host:port``.

    Either ``scenario`` names a file in sipp-scenarios/, or ``keys`` is set
    and the handset answers and keys them (empty ``keys``: stays silent).
    """

    port: int
    scenario: str = ""
    keys: str | None = None
    ring_ms: int = 300
    first_key_ms: int = 1500
    key_gap_ms: int = 300
    host: str = "127.0.0.1"
    media_port: int = 6000
    calls: int = 1
    timeout: float = 60.0
    extra_args: list[str] = field(default_factory=list)
    _proc: asyncio.subprocess.Process | None = None
    _dir: Path | None = None

    async def start(self) -> None:
        binary = shutil.which("sipp")
        if binary is None:
            raise errors.NotInstalled(
                "SIPp is not installed (no 'sipp' on PATH); run `make setup` (Debian: sip-tester)"
            )
        ports.require_free(self.host, self.port, "udp", "trunk.port", "the SIPp handset")
        self._dir = Path(tempfile.mkdtemp(prefix="ivr-auth-sipp-"))
        if self.keys is not None:
            pcap = self._dir / "keys.pcap"
            if self.keys:
                pcap.write_bytes(dtmf_pcap(self.keys, key_gap_ms=self.key_gap_ms))
            scenario_file = self._dir / "handset.xml"
            scenario_file.write_text(
                handset_scenario(
                    self.keys,
                    pcap if self.keys else None,
                    ring_ms=self.ring_ms,
                    first_key_ms=self.first_key_ms,
                    key_gap_ms=self.key_gap_ms,
                )
            )
        elif self.scenario:
            scenario_file = SCENARIO_DIR / self.scenario
        else:
            raise ValueError("a handset needs a scenario file or keys")
        argv = [
            binary,
            "-sf",
            str(scenario_file),
            "-i",
            self.host,
            "-p",
            str(self.port),
            "-mi",
            self.host,
            "-mp",
            str(self.media_port),
            "-m",
            str(self.calls),
            "-nostdin",
            "-timeout",
            f"{int(self.timeout)}s",
            "-timeout_error",
            "-trace_err",
            "-error_file",
            str(self._dir / "errors.log"),
            *self.extra_args,
        ]
        self._proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self._dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        # SIPp binds its port a moment after it starts; an INVITE sent before then is lost.
        deadline = time.monotonic() + 5
        while ports.is_free(self.host, self.port, socket.SOCK_DGRAM):
            if self._proc.returncode is not None or time.monotonic() > deadline:
                out = await self._output()
                raise errors.IvrAuthError(f"SIPp did not start listening on {self.host}:{self.port}: {out}")
            await asyncio.sleep(0.05)

    async def _output(self) -> str:
        if self._proc is None or self._proc.stdout is None:
            return ""
        try:
            data = await asyncio.wait_for(self._proc.stdout.read(), 5)
        except TimeoutError:
            return ""
        return data.decode(errors="replace")

    async def wait(self, timeout: float | None = None) -> SippResult:
        if self._proc is None:
            raise errors.IvrAuthError("the handset was never started")
        try:
            out, _ = await asyncio.wait_for(self._proc.communicate(), timeout or self.timeout + 10)
        except TimeoutError:
            await self.stop()
            raise errors.IvrAuthError("SIPp did not finish in time") from None
        return self._result(self._proc.returncode or 0, out.decode(errors="replace"))

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 5)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()

    def _result(self, returncode: int, output: str) -> SippResult:
        errors_log = ""
        if self._dir is not None:
            log = self._dir / "errors.log"
            if log.exists():
                errors_log = log.read_text(errors="replace")[-4000:]
            shutil.rmtree(self._dir, ignore_errors=True)
        return SippResult(
            returncode=returncode,
            successful=_count(output, "Successful call"),
            failed=_count(output, "Failed call"),
            output=output[-4000:],
            errors_log=errors_log,
        )

    async def __aenter__(self) -> Handset:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _count(output: str, label: str) -> int:
    """Read a counter from SIPp's final statistics screen (its last value)."""
    found = re.findall(rf"{label}\s*\|\s*\d+\s*\|\s*(\d+)", output)
    return int(found[-1]) if found else 0
