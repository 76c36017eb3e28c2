"""SIPp virtual phones: the handsets ivr-auth calls (UAS) and the callers
that call it (UAC), for the demo, the tests and the benchmark: each one SIPp
process, run on a scenario file from ``sipp-scenarios/`` or on one written
for it by ``sipp_scenarios``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ivr_auth import errors, ports
from ivr_auth_devkit import rtp_pcap, sipp_scenarios

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SippResult:
    returncode: int
    successful: int
    failed: int
    output: str
    errors_log: str
    # A caller's calls: the final status of each INVITE, in the order the calls began.
    final_statuses: tuple[int, ...] = ()
    # A capturing handset's calls: the headers (names in lower case) of each
    # INVITE it received, in the order the calls came.
    invites: tuple[dict[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0 and self.successful > 0

    @property
    def final_status(self) -> int | None:
        """The first call's final status (None: none came)."""
        return self.final_statuses[0] if self.final_statuses else None


class _SippProcess:
    """One SIPp process: the plumbing shared by handsets and callers."""

    host: str
    port: int
    media_port: int
    calls: int
    timeout: float
    extra_args: list[str]
    _proc: asyncio.subprocess.Process | None
    _dir: Path | None
    _role = "the SIPp process"
    _trace_messages = False

    @property
    def pid(self) -> int | None:
        """The SIPp process's id once started (the bench reads its CPU)."""
        return None if self._proc is None else self._proc.pid

    def _write_scenario(self, workdir: Path) -> Path:
        raise NotImplementedError

    def _target_args(self) -> list[str]:
        return []

    def _require_port(self) -> None:
        self._require_free(self.port, "port")

    async def _started(self) -> None:
        """Return once the process is ready for calls."""

    async def start(self) -> None:
        binary = shutil.which("sipp")
        if binary is None:
            raise errors.NotInstalled(
                "SIPp is not installed (no 'sipp' on PATH); run `make setup` (Debian: sip-tester)"
            )
        self._require_port()
        # SIPp binds -mp (audio) and -mp + 2 (video) and will not start without both.
        for port in (self.media_port, self.media_port + 2):
            self._require_free(port, "media_port")
        self._dir = Path(tempfile.mkdtemp(prefix="ivr-auth-sipp-"))
        scenario_file = self._write_scenario(self._dir)
        trace = ["-trace_msg", "-message_file", str(self._dir / "messages.log")] if self._trace_messages else []
        argv = [
            binary,
            *self._target_args(),
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
            *trace,
            *self.extra_args,
        ]
        self._proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self._dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        await self._started()

    def _require_free(self, port: int, attr: str) -> None:
        if not ports.is_free(self.host, port, socket.SOCK_DGRAM):
            who = ports.holder(port, "udp")
            raise errors.PortInUse(
                f"{self._role} needs UDP port {port} on {self.host}, but it is in use"
                f"{f' by {who}' if who else ''}; give it another {attr}"
            )

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
            raise errors.IvrAuthError(f"{self._role} was never started")
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
        statuses: tuple[int, ...] = ()
        invites: tuple[dict[str, str], ...] = ()
        if self._dir is not None:
            log = self._dir / "errors.log"
            if log.exists():
                errors_log = log.read_text(errors="replace")[-4000:]
            screen_log = self._dir / "screen.log"
            if screen_log.exists():
                screen = screen_log.read_text(errors="replace")
            messages = self._dir / "messages.log"
            if messages.exists():
                trace = messages.read_text(errors="replace")
                statuses = final_statuses(trace)
                invites = received_invites(trace)
            shutil.rmtree(self._dir, ignore_errors=True)
        return SippResult(
            returncode=returncode,
            successful=_count(screen, "Successful call"),
            failed=_count(screen, "Failed call"),
            output=output[-4000:],
            errors_log=errors_log,
            final_statuses=statuses,
            invites=invites,
        )


@dataclass
class Handset(_SippProcess):
    """One SIPp process acting as the far end (UAS) on ``host:port``, for
    ``calls`` calls (at once or one after another).

    Either ``scenario`` names a file in sipp-scenarios/, or the handset
    answers and then:

    - ``keys``: keys them ``first_key_ms`` after answering (empty: stays
      silent), as RFC 2833 events or, with ``dtmf="info"``, as SIP INFO;
    - ``greeting_ms``: says hello first, as soon as it has answered:
      ``greeting_ms`` of a voice-like tone then ``greeting_silence_ms`` of
      silence, sent as RTP throughout (for AMD()); its ``keys`` follow the
      silence (``first_key_ms`` is not used);
    - ``hangup_after_ms``: hangs up itself that long after its last key
      (after answering when it has none) instead of waiting for the far end;
    - ``keys_by_number``: keys on each call the code of the number dialled,
      as the Request-URI has it (``+8190...`` in the e164 trunk format),
      ``first_key_ms`` after answering plus the pauses (",") in front of
      that number's keys, sent as silence; other numbers are answered and
      hear silence.

    ``capture_invites``: the result's ``invites`` holds the headers of each
    INVITE received (who called: From, P-Asserted-Identity).
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
    dtmf: sipp_scenarios.Dtmf = "rfc2833"
    hangup_after_ms: int | None = None
    keys_by_number: Mapping[str, str] | None = None
    greeting_ms: int | None = None
    greeting_silence_ms: int = sipp_scenarios.DEFAULT_GREETING_SILENCE_MS
    capture_invites: bool = False
    _proc: asyncio.subprocess.Process | None = field(default=None, init=False, repr=False)
    _dir: Path | None = field(default=None, init=False, repr=False)
    _role = "the SIPp handset"

    def __post_init__(self) -> None:
        self._trace_messages = self.capture_invites
        generated = any(v is not None for v in (self.keys, self.hangup_after_ms, self.keys_by_number, self.greeting_ms))
        if self.scenario and (generated or self.dtmf != "rfc2833"):
            raise ValueError("a handset runs a scenario file or keys of its own, not both")
        if not self.scenario and not generated:
            raise ValueError("a handset needs a scenario file, keys, keys_by_number, greeting_ms or hangup_after_ms")
        if self.dtmf not in ("rfc2833", "info"):
            raise ValueError(f"dtmf: {self.dtmf!r} is not 'rfc2833' or 'info'")
        if self.hangup_after_ms is not None and self.hangup_after_ms < 0:
            raise ValueError("hangup_after_ms cannot be negative")
        if self.greeting_ms is not None:
            if self.greeting_ms < 0 or self.greeting_silence_ms < 0:
                raise ValueError("greeting_ms and greeting_silence_ms cannot be negative")
            if self.dtmf != "rfc2833" or self.keys_by_number is not None:
                raise ValueError("a greeting handset keys RFC 2833 events of its own keys")
        rtp_pcap.presses(self.keys or "")
        if self.keys_by_number is not None:
            if self.keys is not None or self.hangup_after_ms is not None or self.dtmf != "rfc2833":
                raise ValueError("keys_by_number keys RFC 2833 events and waits for the far end to hang up")
            for keys in self.keys_by_number.values():
                rtp_pcap.presses(keys)

    def _require_port(self) -> None:
        ports.require_free(self.host, self.port, "udp", "trunk.port", "the SIPp handset")

    async def _started(self) -> None:
        assert self._proc is not None
        # SIPp binds its port a moment after it starts; an INVITE sent before then is lost.
        deadline = time.monotonic() + 5
        while ports.is_free(self.host, self.port, socket.SOCK_DGRAM):
            if self._proc.returncode == 0:
                break  # already served its calls (a short scenario on a fast INVITE)
            if self._proc.returncode is not None or time.monotonic() > deadline:
                out = await self._output()
                raise errors.IvrAuthError(f"SIPp did not start listening on {self.host}:{self.port}: {out}")
            await asyncio.sleep(0.05)

    def _write_scenario(self, workdir: Path) -> Path:
        if self.scenario:
            return sipp_scenarios.SCENARIO_DIR / self.scenario
        gap = self.key_gap_ms
        if self.keys_by_number is not None:
            pcaps: dict[str, Path] = {}
            for index, (number, keys) in enumerate(self.keys_by_number.items(), start=1):
                if not rtp_pcap.presses(keys):
                    continue
                # Every call starts playing first_key_ms after answering; a
                # pause before a number's first key is sent as silence frames
                # in front of its keys (one stream), as a phone's own audio.
                if keys.startswith(rtp_pcap.PAUSE):
                    data = rtp_pcap.audio_pcap(0, 0, keys=keys, key_gap_ms=gap)
                else:
                    data = rtp_pcap.dtmf_pcap(keys, key_gap_ms=gap)
                pcaps[number] = _write(workdir / f"keys-{index}.pcap", data)
            text = sipp_scenarios.by_number_scenario(pcaps, ring_ms=self.ring_ms, first_key_ms=self.first_key_ms)
        else:
            keys = self.keys or ""
            pcap = None
            if self.greeting_ms is not None:
                audio = rtp_pcap.audio_pcap(self.greeting_ms, self.greeting_silence_ms, keys=keys, key_gap_ms=gap)
                pcap = _write(workdir / "greeting.pcap", audio)
            elif self.dtmf == "rfc2833" and rtp_pcap.presses(keys):
                pcap = _write(workdir / "keys.pcap", rtp_pcap.dtmf_pcap(keys, key_gap_ms=gap))
            text = sipp_scenarios.handset_scenario(
                keys,
                pcap,
                ring_ms=self.ring_ms,
                first_key_ms=self.first_key_ms,
                key_gap_ms=gap,
                hangup_after_ms=self.hangup_after_ms,
                dtmf=self.dtmf,
                greeting_ms=self.greeting_ms,
                greeting_silence_ms=self.greeting_silence_ms,
            )
        return _write(workdir / "handset.xml", text.encode())

    async def __aenter__(self) -> Handset:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@dataclass
class Caller(_SippProcess):
    """One SIPp process calling in (UAC) from ``host:port`` to Asterisk at
    ``target_host:target_port``: ``calls`` calls to ``did`` from ``caller``
    (withheld when "" or "anonymous"), each with a P-Asserted-Identity of
    ``pai`` when given.

    ``expect="answer"``: each call must be answered; it then keys ``keys``
    ``first_key_ms`` after the answer (as RFC 2833 events) and waits for the
    far end to hang up, or hangs up itself ``hangup_after_ms`` after its last
    key. ``expect="reject"``: each call must be refused; the result's
    ``final_status`` says with what (e.g. 603 or 486).
    """

    target_port: int
    did: str
    caller: str
    target_host: str = "127.0.0.1"
    pai: str | None = None
    port: int = 5090
    host: str = "127.0.0.1"
    media_port: int = 6100
    keys: str = ""
    first_key_ms: int = 1500
    key_gap_ms: int = 300
    hangup_after_ms: int | None = None
    expect: sipp_scenarios.Expect = "answer"
    calls: int = 1
    timeout: float = 60.0
    extra_args: list[str] = field(default_factory=list)
    _proc: asyncio.subprocess.Process | None = field(default=None, init=False, repr=False)
    _dir: Path | None = field(default=None, init=False, repr=False)
    _role = "the SIPp caller"
    _trace_messages = True

    def __post_init__(self) -> None:
        if self.hangup_after_ms is not None and self.hangup_after_ms < 0:
            raise ValueError("hangup_after_ms cannot be negative")
        # Checks every argument before a process is started.
        self._scenario(Path("keys.pcap"))

    def _scenario(self, pcap: Path) -> str:
        return sipp_scenarios.caller_scenario(
            self.did,
            self.caller,
            pai=self.pai,
            expect=self.expect,
            keys=self.keys,
            pcap_path=pcap,
            first_key_ms=self.first_key_ms,
            key_gap_ms=self.key_gap_ms,
            hangup_after_ms=self.hangup_after_ms,
        )

    def _target_args(self) -> list[str]:
        return [f"{self.target_host}:{self.target_port}"]

    def _write_scenario(self, workdir: Path) -> Path:
        pcap = workdir / "keys.pcap"
        if rtp_pcap.presses(self.keys):
            _write(pcap, rtp_pcap.dtmf_pcap(self.keys, key_gap_ms=self.key_gap_ms))
        return _write(workdir / "caller.xml", self._scenario(pcap).encode())

    async def __aenter__(self) -> Caller:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def final_statuses(messages: str) -> tuple[int, ...]:
    """The final status of each INVITE in a SIPp message trace (-trace_msg),
    one per Call-ID, in the order the calls began; a retransmission counts once."""
    found: dict[str, int] = {}
    for block in re.split(r"\n-{20,}[^\n]*\n", "\n" + messages):
        status = re.search(r"message received \[\d+\] bytes :\s*\n\s*SIP/2\.0 (\d{3}) ", block)
        cseq = re.search(r"^CSeq:\s*\d+\s+INVITE\b", block, re.MULTILINE | re.IGNORECASE)
        call_id = re.search(r"^(?:Call-ID|i):\s*(\S+)", block, re.MULTILINE | re.IGNORECASE)
        if status and cseq and call_id and int(status[1]) >= 200:
            found.setdefault(call_id[1], int(status[1]))
    return tuple(found.values())


def received_invites(messages: str) -> tuple[dict[str, str], ...]:
    """The headers (names in lower case) of each INVITE received in a SIPp
    message trace (-trace_msg), one per Call-ID, in the order they came; a
    retransmission or re-INVITE counts once."""
    found: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n-{20,}[^\n]*\n", "\n" + messages):
        match = re.search(r"message received \[\d+\] bytes :\s*\n\s*INVITE \S+ SIP/2\.0\s*\n", block)
        if not match:
            continue
        headers: dict[str, str] = {}
        for line in block[match.end() :].splitlines():
            if not line.strip():
                break
            name, sep, value = line.partition(":")
            if sep:
                headers.setdefault(name.strip().lower(), value.strip())
        call_id = headers.get("call-id") or headers.get("i")
        if call_id:
            found.setdefault(call_id, headers)
    return tuple(found.values())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _count(output: str, label: str) -> int:
    """Read a counter from SIPp's final statistics screen (its last value)."""
    found = re.findall(rf"{label}\s*\|\s*\d+\s*\|\s*(\d+)", output)
    return int(found[-1]) if found else 0
