"""SIPp virtual handsets: the phones of the demo, the tests and the benchmark.

Scenarios live in ``sipp-scenarios/``. A handset that keys a code needs the
code in its scenario (SIPp's ``play_dtmf`` uses payload type 96, which
Asterisk does not hear as the offerer, so keys are sent as RFC 2833 pcaps,
or as SIP INFO), so its scenario is written per call from a ``.xml.in``
template there.

A key sequence is keys (``0-9 * #``) and pauses: each "," waits one second
more before the next key, so one handset can key a wrong code, wait while
the service says so, and key the right one (``"111111#,,,123456#"``).
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape

from ivr_auth import errors
from ivr_auth.stack import ports

logger = logging.getLogger(__name__)

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "sipp-scenarios"
PCAP_DIR = Path("/usr/share/sip-tester")
PCAP_NAMES = {**{d: d for d in "0123456789"}, "*": "star", "#": "pound"}
PAUSE = ","
PAUSE_MS = 1000
# Each of SIPp's DTMF pcaps lasts 140 ms; keys closer than that would overlap.
KEY_MS = 140
MIN_KEY_GAP_MS = 200
# How long a key sent as SIP INFO is held (the body's Duration).
INFO_DURATION_MS = 160
# Ethernet (14) + IPv4 (20) + UDP (8) headers in SIPp's pcaps.
RTP_OFFSET = 42
UDP_CHECKSUM_OFFSET = 40
# Each pcap's event lasts 2240 samples (280 ms at 8 kHz).
EVENT_SAMPLES = 2240
SAMPLES_PER_MS = 8

Dtmf = Literal["rfc2833", "info"]


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
    the previous key's, and spaced as ``presses()`` says; across a pause the
    timestamps move on by the pause, as a phone's clock would.

    A pause before the first key is not in the pcap: a player sends the
    first packet at once, so the wait is the player's (``Handset`` adds it
    to ``first_key_ms``).
    """
    rng = random.Random(seed)
    seq = rng.randrange(1000, 30000)
    first_timestamp = rng.randrange(10_000, 1_000_000) * 160
    header = b""
    out: list[bytes] = []
    at_ms = 0
    for index, press in enumerate(presses(keys, key_gap_ms=key_gap_ms)):
        if index:
            at_ms += press.wait_ms
        timestamp = (first_timestamp + at_ms * SAMPLES_PER_MS + index * EVENT_SAMPLES) & 0xFFFFFFFF
        header, packets = _read_pcap(pcap_for(press.key))
        first_time = packets[0][0]
        first_seq = struct.unpack_from("!H", packets[0][1], RTP_OFFSET + 2)[0]
        last_seq = seq
        for when, packet in packets:
            buf = bytearray(packet)
            orig_seq = struct.unpack_from("!H", buf, RTP_OFFSET + 2)[0]
            last_seq = (seq + (orig_seq - first_seq)) & 0xFFFF
            struct.pack_into("!H", buf, RTP_OFFSET + 2, last_seq)
            struct.pack_into("!I", buf, RTP_OFFSET + 4, timestamp)
            struct.pack_into("!H", buf, UDP_CHECKSUM_OFFSET, 0)  # IPv4 UDP: 0 means "no checksum"
            sec, usec = divmod(at_ms * 1000 + round((when - first_time) * 1e6), 1_000_000)
            out.append(struct.pack("<IIII", sec, usec, len(buf), len(buf)) + bytes(buf))
        seq = (last_seq + 1) & 0xFFFF
    return header + b"".join(out)


# --- scenarios -----------------------------------------------------------------------


def _template(name: str) -> str:
    """A template with its header comment (which names the placeholders)
    replaced by where the scenario came from."""
    text = (SCENARIO_DIR / name).read_text()
    start = text.index("<!--")
    end = text.index("-->", start) + 3
    return f"{text[:start]}<!-- written by ivr_auth/sipp.py from sipp-scenarios/{name} -->{text[end:]}"


def _attr(value: str) -> str:
    return escape(value, {'"': "&quot;"})


def _fill(text: str, **values: object) -> str:
    for name, value in values.items():
        text = text.replace(f"@{name}@", str(value))
    if leftover := re.findall(r"@[A-Z_]+@", text):
        raise ValueError(f"scenario template left unfilled: {sorted(set(leftover))}")
    return text


def _block(text: str, name: str) -> tuple[str, str, str]:
    """Split a template around its ``<!-- @NAME@ -->`` ... ``<!-- @END_NAME@ -->``
    block: (before, the block, after)."""
    begin, end = f"  <!-- @{name}@ -->\n", f"  <!-- @END_{name}@ -->\n"
    head, _, rest = text.partition(begin)
    block, found, tail = rest.partition(end)
    if not found:
        raise ValueError(f"scenario template has no @{name}@ block")
    return head, block, tail


def _rfc2833_steps(keys: str, pcap_path: Path | None, first_key_ms: int, key_gap_ms: int) -> str:
    plan = presses(keys, key_gap_ms=key_gap_ms)
    if not plan:
        return ""
    if pcap_path is None:
        raise ValueError("keys need a pcap to play")
    return "\n".join(
        [
            # A BYE while waiting to key (the far end gave up) still ends the call cleanly.
            f'  <recv request="BYE" timeout="{first_key_ms + plan[0].wait_ms}" ontimeout="keys" next="bye"/>',
            '  <label id="keys"/>',
            f'  <nop><action><exec play_pcap_audio="{_attr(str(pcap_path))}"/></action></nop>',
        ]
    )


def _info_steps(keys: str, first_key_ms: int, key_gap_ms: int) -> str:
    _, block, _ = _block(_template("uas-dtmf-info.xml.in"), "EACH_KEY")
    return "".join(
        _fill(
            block,
            INDEX=index,
            WAIT_MS=press.wait_ms + (first_key_ms if index == 1 else 0),
            SIGNAL=press.key,
            DURATION_MS=INFO_DURATION_MS,
        )
        for index, press in enumerate(presses(keys, key_gap_ms=key_gap_ms), start=1)
    )


def handset_scenario(
    keys: str,
    pcap_path: Path | None,
    *,
    ring_ms: int = 300,
    first_key_ms: int = 1500,
    key_gap_ms: int = 300,
    hangup_after_ms: int | None = None,
    dtmf: Dtmf = "rfc2833",
) -> str:
    """A UAS scenario that answers and keys ``keys``, ``first_key_ms`` after
    answering: as RFC 2833 events by playing ``pcap_path`` (from
    ``dtmf_pcap(keys)``), or as SIP INFO requests; silent without keys. It
    waits for the far end to hang up, or with ``hangup_after_ms`` hangs up
    itself that long after its last key (after answering when it has none)."""
    if dtmf == "info":
        steps = _info_steps(keys, first_key_ms, key_gap_ms)
    else:
        steps = _rfc2833_steps(keys, pcap_path, first_key_ms, key_gap_ms)
    if hangup_after_ms is not None:
        wait = hangup_after_ms + trailing_pause_ms(keys)
        plan = presses(keys, key_gap_ms=key_gap_ms)
        if plan and dtmf == "rfc2833":
            # The pcap plays on while the scenario moves on: wait for its end too.
            wait += sum(p.wait_ms for p in plan[1:]) + KEY_MS
        # SIPp reads a timeout of 0 as "none".
        return _fill(_template("uas-answer-hangup.xml.in"), RING_MS=ring_ms, KEYS=steps, HANGUP_WAIT_MS=max(wait, 1))
    if dtmf == "info":
        head, _, tail = _block(_template("uas-dtmf-info.xml.in"), "EACH_KEY")
        return _fill(head + steps + tail, RING_MS=ring_ms)
    return _fill(_template("uas-answer-keys.xml.in"), RING_MS=ring_ms, KEYS=steps)


def by_number_scenario(pcaps: Mapping[str, Path], *, ring_ms: int = 300, first_key_ms: int = 1500) -> str:
    """A UAS scenario for many calls at once that plays, on each call, the
    pcap of the number dialled (the Request-URI's user part)."""
    head, block, tail = _block(_template("uas-answer-by-number.xml.in"), "EACH_NUMBER")
    blocks = "".join(
        _fill(block, INDEX=index, NUMBER=_attr(number), PCAP=_attr(str(pcap)))
        for index, (number, pcap) in enumerate(pcaps.items(), start=1)
    )
    return _fill(head + blocks + tail, RING_MS=ring_ms, FIRST_KEY_MS=first_key_ms)


# --- the SIPp process ----------------------------------------------------------------


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
    """One SIPp process acting as the far end (UAS) on ``host:port``, for
    ``calls`` calls (at once or one after another).

    Either ``scenario`` names a file in sipp-scenarios/, or the handset
    answers and then:

    - ``keys``: keys them ``first_key_ms`` after answering (empty: stays
      silent), as RFC 2833 events or, with ``dtmf="info"``, as SIP INFO;
    - ``hangup_after_ms``: hangs up itself that long after its last key
      (after answering when it has none) instead of waiting for the far end;
    - ``keys_by_number``: keys on each call the code of the number dialled,
      as the Request-URI has it (``+8190...`` in the e164 trunk format);
      other numbers are answered and hear silence.
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
    dtmf: Dtmf = "rfc2833"
    hangup_after_ms: int | None = None
    keys_by_number: Mapping[str, str] | None = None
    _proc: asyncio.subprocess.Process | None = None
    _dir: Path | None = None

    def __post_init__(self) -> None:
        generated = self.keys is not None or self.hangup_after_ms is not None or self.keys_by_number is not None
        if self.scenario and (generated or self.dtmf != "rfc2833"):
            raise ValueError("a handset runs a scenario file or keys of its own, not both")
        if not self.scenario and not generated:
            raise ValueError("a handset needs a scenario file, keys, keys_by_number or hangup_after_ms")
        if self.dtmf not in ("rfc2833", "info"):
            raise ValueError(f"dtmf: {self.dtmf!r} is not 'rfc2833' or 'info'")
        if self.hangup_after_ms is not None and self.hangup_after_ms < 0:
            raise ValueError("hangup_after_ms cannot be negative")
        presses(self.keys or "")
        if self.keys_by_number is not None:
            if self.keys is not None or self.hangup_after_ms is not None or self.dtmf != "rfc2833":
                raise ValueError("keys_by_number keys RFC 2833 events and waits for the far end to hang up")
            for number, keys in self.keys_by_number.items():
                if keys.startswith(PAUSE):
                    # Every call starts keying first_key_ms after answering.
                    raise ValueError(f"keys_by_number[{number!r}]: no pause before the first key")
                presses(keys)

    async def start(self) -> None:
        binary = shutil.which("sipp")
        if binary is None:
            raise errors.NotInstalled(
                "SIPp is not installed (no 'sipp' on PATH); run `make setup` (Debian: sip-tester)"
            )
        ports.require_free(self.host, self.port, "udp", "trunk.port", "the SIPp handset")
        self._require_media_ports()
        self._dir = Path(tempfile.mkdtemp(prefix="ivr-auth-sipp-"))
        scenario_file = self._write_scenario(self._dir)
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
            # Warnings (a receive timeout taken on purpose is one) can land in
            # the middle of the screen on stdout; the screen file is clean.
            "-trace_screen",
            "-screen_file",
            str(self._dir / "screen.log"),
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
            if self._proc.returncode == 0:
                break  # already served its calls (a short scenario on a fast INVITE)
            if self._proc.returncode is not None or time.monotonic() > deadline:
                out = await self._output()
                raise errors.IvrAuthError(f"SIPp did not start listening on {self.host}:{self.port}: {out}")
            await asyncio.sleep(0.05)

    def _require_media_ports(self) -> None:
        # SIPp binds -mp (audio) and -mp + 2 (video) and will not start without both.
        for port in (self.media_port, self.media_port + 2):
            if not ports.is_free(self.host, port, socket.SOCK_DGRAM):
                who = ports.holder(port, "udp")
                raise errors.PortInUse(
                    f"the SIPp handset needs UDP port {port} on {self.host} for media, but it is in use"
                    f"{f' by {who}' if who else ''}; give the handset another media_port"
                )

    def _write_scenario(self, workdir: Path) -> Path:
        if self.scenario:
            return SCENARIO_DIR / self.scenario
        if self.keys_by_number is not None:
            pcaps: dict[str, Path] = {}
            for index, (number, keys) in enumerate(self.keys_by_number.items(), start=1):
                if presses(keys):
                    pcaps[number] = _write(workdir / f"keys-{index}.pcap", dtmf_pcap(keys, key_gap_ms=self.key_gap_ms))
            text = by_number_scenario(pcaps, ring_ms=self.ring_ms, first_key_ms=self.first_key_ms)
        else:
            keys = self.keys or ""
            pcap = None
            if self.dtmf == "rfc2833" and presses(keys):
                pcap = _write(workdir / "keys.pcap", dtmf_pcap(keys, key_gap_ms=self.key_gap_ms))
            text = handset_scenario(
                keys,
                pcap,
                ring_ms=self.ring_ms,
                first_key_ms=self.first_key_ms,
                key_gap_ms=self.key_gap_ms,
                hangup_after_ms=self.hangup_after_ms,
                dtmf=self.dtmf,
            )
        return _write(workdir / "handset.xml", text.encode())

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
        screen = output
        if self._dir is not None:
            log = self._dir / "errors.log"
            if log.exists():
                errors_log = log.read_text(errors="replace")[-4000:]
            screen_log = self._dir / "screen.log"
            if screen_log.exists():
                screen = screen_log.read_text(errors="replace")
            shutil.rmtree(self._dir, ignore_errors=True)
        return SippResult(
            returncode=returncode,
            successful=_count(screen, "Successful call"),
            failed=_count(screen, "Failed call"),
            output=output[-4000:],
            errors_log=errors_log,
        )

    async def __aenter__(self) -> Handset:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _count(output: str, label: str) -> int:
    """Read a counter from SIPp's final statistics screen (its last value)."""
    found = re.findall(rf"{label}\s*\|\s*\d+\s*\|\s*(\d+)", output)
    return int(found[-1]) if found else 0
