"""baresip as a real softphone for the end-to-end tests, beside the SIPp
handsets of ``sipp``: a SIP stack, codecs, a jitter buffer and RFC 4733 key
events of its own, so that a call is heard and keyed the way a phone does.

Each ``Softphone`` is one ``baresip -f DIR`` process on a config directory
written for it into a temporary directory: one account (answering by
itself, or dialling out), a silent WAV file for a microphone, audio played
to nowhere (``aubridge``), and what it hears recorded by ``sndfile``
(``dump-<time>-dec.wav``; ``-enc.wav`` is what it sends). It is driven
through its ``ctrl_tcp`` module: netstrings carrying JSON, each command
answered with its token, and call events (``CALL_ESTABLISHED``,
``CALL_CLOSED``, ...) pushed on the same connection.

Self-contained (the standard library, ``errors`` and ``ports`` of the service): the
test harness is to move out of the shipped package.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import logging
import re
import shutil
import socket
import struct
import tempfile
import time
import wave
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr_auth import errors, ports

logger = logging.getLogger(__name__)

MODULE_DIR = Path("/usr/lib/baresip/modules")
# Codecs, the file source, the null player and the recorder; then the
# account file, the command set (dial, sndcode, ...) and the control socket.
MODULES = ("g711.so", "aufile.so", "aubridge.so", "sndfile.so")
APP_MODULES = ("account.so", "menu.so", "ctrl_tcp.so")
SAMPLE_RATE = 8000
KEYS = frozenset("0123456789*#ABCD")
ESTABLISHED = "CALL_ESTABLISHED"
CLOSED = "CALL_CLOSED"
# A 20 ms frame at least this loud (RMS of 16-bit samples, about -50 dBFS)
# is sound; digital silence, as Asterisk's silence files send, is far below.
VOICED_RMS = 100.0
FRAME_MS = 20
_USER = re.compile(r"\+?[0-9A-Za-z._-]+")


class SoftphoneError(errors.IvrAuthError):
    """The baresip softphone failed."""


@dataclass(frozen=True)
class Heard:
    """What a recording holds: ``seconds`` of audio in all, of which
    ``voiced_seconds`` in frames louder than silence, at an overall ``rms``."""

    seconds: float
    voiced_seconds: float
    rms: float


# --- pure parts: config, framing, recordings ------------------------------------------


def render_config(
    *,
    host: str,
    sip_port: int,
    ctrl_port: int,
    rtp_ports: tuple[int, int],
    source: Path,
    record_dir: Path,
    module_dir: Path = MODULE_DIR,
) -> str:
    """baresip's ``config`` file for a headless phone on ``host``."""
    lines = [
        f"sip_listen {host}:{sip_port}",
        # An address: with an interface name ("lo") baresip 1.0.0 finds no address.
        f"net_interface {host}",
        "audio_player aubridge,nowhere",
        "audio_alert aubridge,nowhere",
        f"audio_source aufile,{source}",
        f"ausrc_srate {SAMPLE_RATE}",
        f"auplay_srate {SAMPLE_RATE}",
        f"rtp_ports {rtp_ports[0]}-{rtp_ports[1]}",
        f"module_path {module_dir}",
        *(f"module {name}" for name in MODULES),
        *(f"module_app {name}" for name in APP_MODULES),
        f"ctrl_tcp_listen {host}:{ctrl_port}",
        f"snd_path {record_dir}",
        # No call status line every few milliseconds in its log.
        "statmode_default off",
    ]
    return "\n".join(lines) + "\n"


def render_accounts(user: str, host: str, *, auto_answer: bool) -> str:
    """baresip's ``accounts`` file: one account ``user@host`` that never
    registers. It answers a call whose Request-URI user is ``user`` (at
    once with ``auto_answer``), and is the From of the calls it places."""
    if not _USER.fullmatch(user):
        raise ValueError(f"user: {user!r} is not a SIP user part (digits, an optional '+', letters, '._-')")
    mode = ";answermode=auto" if auto_answer else ""
    return f"<sip:{user}@{host}>;regint=0{mode}\n"


def write_silence(path: Path, seconds: float) -> Path:
    """A silent 8 kHz mono 16-bit WAV: the phone's microphone. baresip hangs
    a call up when its audio source ends, so this is also the longest call."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(bytes(2 * round(seconds * SAMPLE_RATE)))
    return path


def netstring(payload: bytes) -> bytes:
    return b"%d:%s," % (len(payload), payload)


def encode_command(command: str, params: str, token: str) -> bytes:
    body = {"command": command, "params": params, "token": token} if params else {"command": command, "token": token}
    return netstring(json.dumps(body).encode())


class NetstringDecoder:
    """Splits a byte stream into the payloads of the netstrings it carries."""

    # baresip's own limit (NETSTRING_MAX_SIZE) has nine digits.
    MAX_DIGITS = 9

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The payloads completed by ``data``; a partial one waits for more."""
        self._buffer += data
        out: list[bytes] = []
        while self._buffer:
            head, colon, rest = self._buffer.partition(b":")
            digits_ok = head.isdigit() and len(head) <= self.MAX_DIGITS and not (len(head) > 1 and head[:1] == b"0")
            if not colon:
                if len(head) > self.MAX_DIGITS or not head.isdigit():
                    raise SoftphoneError(f"ctrl_tcp sent a bad netstring length: {head[:20]!r}")
                break
            if not digits_ok:
                raise SoftphoneError(f"ctrl_tcp sent a bad netstring length: {head[:20]!r}")
            size = int(head)
            if len(rest) < size + 1:
                break
            if rest[size : size + 1] != b",":
                raise SoftphoneError("ctrl_tcp sent a netstring without its closing ','")
            out.append(rest[:size])
            self._buffer = rest[size + 1 :]
        return out


def wav_pcm(data: bytes) -> tuple[int, bytes]:
    """Sample rate and 16-bit mono samples of a WAV file's bytes, also of
    one still being written (sizes not filled in yet): its data chunk then
    runs to the end of what is there."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SoftphoneError("not a WAV file")
    offset, rate = 12, 0
    while offset + 8 <= len(data):
        kind, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = offset + 8
        if kind == b"fmt " and body + 16 <= len(data):
            fmt, channels, rate = struct.unpack_from("<HHI", data, body)
            bits = struct.unpack_from("<H", data, body + 14)[0]
            if (fmt, channels, bits) != (1, 1, 16):
                raise SoftphoneError(f"not 16-bit mono PCM (format {fmt}, {channels} channels, {bits} bits)")
        elif kind == b"data":
            if not rate:
                raise SoftphoneError("WAV data before its format")
            end = len(data) if size == 0 or body + size > len(data) else body + size
            return rate, data[body : end - (end - body) % 2]
        offset = body + size + size % 2
    raise SoftphoneError("WAV file without format and data (yet)")


def analyse(rate: int, pcm: bytes) -> Heard:
    samples = array.array("h", pcm)
    frame = rate * FRAME_MS // 1000
    voiced = 0
    energy = 0
    for start in range(0, len(samples), frame):
        chunk = samples[start : start + frame]
        chunk_energy = sum(s * s for s in chunk)
        energy += chunk_energy
        if (chunk_energy / len(chunk)) ** 0.5 >= VOICED_RMS:
            voiced += len(chunk)
    return Heard(len(samples) / rate, voiced / rate, (energy / max(len(samples), 1)) ** 0.5)


def heard_in(paths: Iterable[Path]) -> Heard:
    """``analyse`` over recordings one after another (nothing: nothing heard)."""
    rate, pcm = SAMPLE_RATE, b""
    for path in paths:
        rate, part = wav_pcm(path.read_bytes())
        pcm += part
    return analyse(rate, pcm)


# --- ctrl_tcp -------------------------------------------------------------------------


class Control:
    """One ctrl_tcp connection (baresip serves one at a time): commands
    answered by their token, events kept in the order they came."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._taken = 0
        self._changed = asyncio.Event()
        self._tokens = 0
        self.in_call = False
        # Why the connection is gone (None while it is up).
        self.gone: str | None = None
        self._task = asyncio.create_task(self._read(reader), name="baresip-ctrl-tcp")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        decoder = NetstringDecoder()
        reason = "baresip closed its control connection"
        try:
            while data := await reader.read(65536):
                for payload in decoder.feed(data):
                    self._dispatch(json.loads(payload))
        except (OSError, ValueError, SoftphoneError) as exc:
            reason = f"baresip's control connection failed: {exc}"
        finally:
            self.gone = reason
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(SoftphoneError(reason))
            self._pending.clear()
            self._changed.set()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("response"):
            future = self._pending.pop(str(message.get("token")), None)
            if future is not None and not future.done():
                future.set_result(message)
        elif message.get("event") and message.get("type") not in ("VU_RX_REPORT", "VU_TX_REPORT"):
            if message.get("type") == ESTABLISHED:
                self.in_call = True
            elif message.get("type") == CLOSED:
                self.in_call = False
            self.events.append(message)
            self._changed.set()

    async def command(self, command: str, params: str = "", *, timeout: float = 5.0) -> str:
        """Run one baresip command; its output, or SoftphoneError if it failed."""
        if self.gone is not None:
            raise SoftphoneError(self.gone)
        self._tokens += 1
        token = f"t{self._tokens}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        self._writer.write(encode_command(command, params, token))
        try:
            await self._writer.drain()
            response = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise SoftphoneError(f"baresip did not answer {command!r} within {timeout:g}s") from None
        except OSError as exc:
            raise SoftphoneError(f"baresip's control connection failed: {exc}") from exc
        finally:
            self._pending.pop(token, None)
        data = str(response.get("data", ""))
        if not response.get("ok"):
            raise SoftphoneError(f"baresip refused {f'{command} {params}'.strip()!r}: {data.strip()}")
        return data

    async def wait_event(self, kind: str, timeout: float) -> dict[str, Any]:
        """The next event of type ``kind`` after the last one a wait returned."""
        deadline = time.monotonic() + timeout
        while True:
            for index in range(self._taken, len(self.events)):
                if self.events[index].get("type") == kind:
                    self._taken = index + 1
                    return self.events[index]
            remaining = deadline - time.monotonic()
            if self.gone is not None or remaining <= 0:
                why = self.gone or f"none within {timeout:g}s"
                raise SoftphoneError(f"no {kind} event: {why} (events: {[e.get('type') for e in self.events]})")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


# --- the process ----------------------------------------------------------------------


@dataclass
class Softphone:
    """One baresip process with one account, ``user`` at ``host``.

    It listens for SIP on ``sip_port`` (UDP and TCP, and TCP ``sip_port + 1``
    for TLS, which baresip always opens), is driven on TCP ``ctrl_port`` and
    takes its RTP ports from ``rtp_ports`` (inclusive). With ``auto_answer``
    it answers a call for ``user`` at once. A call lasts at most
    ``max_call_seconds`` (its silent microphone then ends); the process
    quits by itself after ``lifetime_seconds`` should nobody stop it.
    """

    user: str
    host: str = "127.0.0.1"
    sip_port: int = 5082
    ctrl_port: int = 4444
    rtp_ports: tuple[int, int] = (10000, 10020)
    auto_answer: bool = True
    max_call_seconds: float = 120.0
    lifetime_seconds: int = 600
    start_timeout: float = 10.0
    module_dir: Path = MODULE_DIR
    _proc: asyncio.subprocess.Process | None = field(default=None, init=False, repr=False)
    _dir: Path | None = field(default=None, init=False, repr=False)
    _control: Control | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        render_accounts(self.user, self.host, auto_answer=self.auto_answer)
        low, high = self.rtp_ports
        if not 0 < low <= high < 65536:
            raise ValueError(f"rtp_ports: {self.rtp_ports} is not a range of ports")
        if self.max_call_seconds <= 0 or self.lifetime_seconds <= 0:
            raise ValueError("max_call_seconds and lifetime_seconds must be positive")

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def control(self) -> Control:
        if self._control is None:
            raise SoftphoneError("the softphone is not started")
        return self._control

    async def start(self) -> None:
        binary = shutil.which("baresip")
        if binary is None:
            raise errors.NotInstalled(
                "baresip is not installed (no 'baresip' on PATH); run `make setup` (Debian: baresip-core)"
            )
        missing = [name for name in (*MODULES, *APP_MODULES) if not (self.module_dir / name).is_file()]
        if missing:
            raise errors.NotInstalled(
                f"baresip's modules {', '.join(missing)} are not in {self.module_dir};"
                " run `make setup` (Debian: baresip-core) or give the Softphone another module_dir"
            )
        self._require_free()
        self._dir = Path(tempfile.mkdtemp(prefix="ivr-auth-baresip-"))
        try:
            await self._launch(binary, self._dir)
        except BaseException:
            await self.stop()
            raise

    def _require_free(self) -> None:
        wanted = [
            ("udp", self.sip_port, "sip_port"),
            ("tcp", self.sip_port, "sip_port"),
            ("tcp", self.sip_port + 1, "sip_port (baresip opens TLS on sip_port + 1)"),
            ("tcp", self.ctrl_port, "ctrl_port"),
            *(("udp", port, "rtp_ports") for port in range(self.rtp_ports[0], self.rtp_ports[1] + 1)),
        ]
        for proto, port, param in wanted:
            if not ports.is_free(self.host, port, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM):
                who = ports.holder(port, proto)
                raise errors.PortInUse(
                    f"the baresip softphone needs {proto.upper()} port {port} on {self.host}, but it is in use"
                    f"{f' by {who}' if who else ''}; stop that process or give the Softphone another {param}"
                )

    async def _launch(self, binary: str, workdir: Path) -> None:
        (workdir / "recordings").mkdir()
        config = render_config(
            host=self.host,
            sip_port=self.sip_port,
            ctrl_port=self.ctrl_port,
            rtp_ports=self.rtp_ports,
            source=write_silence(workdir / "silence.wav", self.max_call_seconds),
            record_dir=workdir / "recordings",
            module_dir=self.module_dir,
        )
        (workdir / "config").write_text(config)
        (workdir / "accounts").write_text(render_accounts(self.user, self.host, auto_answer=self.auto_answer))
        with (workdir / "baresip.log").open("wb") as log:
            # Into a file: a pipe nobody reads would fill up and stall it.
            self._proc = await asyncio.create_subprocess_exec(
                *(binary, "-f", str(workdir), "-t", str(self.lifetime_seconds)),
                cwd=workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        # ctrl_tcp listens once baresip is ready.
        deadline = time.monotonic() + self.start_timeout
        while self._control is None:
            if self._proc.returncode is not None:
                raise SoftphoneError(f"baresip exited ({self._proc.returncode}) while starting: {self.log_tail()}")
            try:
                self._control = Control(*await asyncio.open_connection(self.host, self.ctrl_port))
            except OSError:
                if time.monotonic() > deadline:
                    raise SoftphoneError(
                        f"baresip opened no ctrl_tcp on {self.host}:{self.ctrl_port} within"
                        f" {self.start_timeout:g}s: {self.log_tail()}"
                    ) from None
                await asyncio.sleep(0.05)
        logger.debug("baresip started", extra={"user": self.user, "pid": self._proc.pid, "sip_port": self.sip_port})

    async def stop(self) -> None:
        """Quit (then terminate, then kill, each bounded) and remove the directory."""
        proc, control = self._proc, self._control
        if proc is not None and proc.returncode is None:
            if control is not None and control.gone is None:
                with contextlib.suppress(SoftphoneError):
                    await control.command("quit", timeout=2)
            for escalate, wait in ((None, 3.0), (proc.terminate, 3.0), (proc.kill, 5.0)):
                if escalate is not None:
                    logger.warning("baresip did not exit; %s", escalate.__name__, extra={"pid": proc.pid})
                    with contextlib.suppress(ProcessLookupError):
                        escalate()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), wait)
                    break
        if control is not None:
            await control.close()
            self._control = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def __aenter__(self) -> Softphone:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_event(self, kind: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next event of type ``kind`` (``ESTABLISHED``, ``CLOSED``, ...)
        after the last one a wait returned."""
        return await self.control.wait_event(kind, timeout)

    async def dial(self, uri: str) -> None:
        """Place a call to ``uri`` (``sip:USER@HOST:PORT``) from the account."""
        await self.control.command("dial", uri)

    async def send_keys(self, keys: str) -> None:
        """Key ``keys`` into the call now, as RFC 4733 events, one after another."""
        if not keys or set(keys) - KEYS:
            raise ValueError(f"keys: {keys!r} are not DTMF keys")
        # With no call baresip answers "ok" and sends nothing: refuse here.
        if not self.control.in_call:
            raise SoftphoneError(f"no call to key {keys!r} into")
        await self.control.command("sndcode", keys)

    async def hangup(self) -> None:
        await self.control.command("hangup")

    def heard(self) -> Heard:
        """What the phone has heard so far, over all its calls."""
        if self._dir is None:
            raise SoftphoneError("the softphone is not started (its recordings go with it)")
        return heard_in(sorted((self._dir / "recordings").glob("dump-*-dec.wav")))

    async def wait_heard(self, *, seconds: float = 0.0, voiced_seconds: float = 0.0, timeout: float = 30.0) -> Heard:
        """Return once the phone has heard ``seconds`` of audio in all (a far
        end sends none between its prompts) and ``voiced_seconds`` of sound."""
        deadline = time.monotonic() + timeout
        heard = Heard(0.0, 0.0, 0.0)
        while True:
            # A recording just opened may not have its header yet.
            with contextlib.suppress(SoftphoneError):
                heard = self.heard()
            if heard.seconds >= seconds and heard.voiced_seconds >= voiced_seconds:
                return heard
            if self.control.gone is not None or time.monotonic() > deadline:
                raise SoftphoneError(
                    f"heard {heard.seconds:.2f}s ({heard.voiced_seconds:.2f}s of sound), waited for {seconds:g}s"
                    f" ({voiced_seconds:g}s of sound); events: {[e.get('type') for e in self.control.events]}"
                )
            await asyncio.sleep(0.05)

    def log_tail(self, chars: int = 2000) -> str:
        """The end of baresip's own output (for error messages)."""
        if self._dir is None:
            return ""
        with contextlib.suppress(OSError):
            return (self._dir / "baresip.log").read_text(errors="replace")[-chars:]
        return ""
