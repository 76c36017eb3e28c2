"""The baresip softphone's pure parts (config and accounts files, netstring
framing, recordings read while still being written), its ctrl_tcp client
against a replay of what baresip 1.0.0 sent, and the errors it raises
before it starts anything."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import socket
import struct
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ivr_auth import errors
from ivr_auth_devkit import softphone

# --- files ----------------------------------------------------------------------------


def test_config_is_a_headless_phone_on_the_given_ports(tmp_path: Path) -> None:
    text = softphone.render_config(
        host="127.0.0.1",
        sip_port=5082,
        ctrl_port=4444,
        rtp_ports=(10000, 10020),
        source=tmp_path / "silence.wav",
        record_dir=tmp_path / "rec",
    )

    lines = text.splitlines()
    settings = dict(line.split(" ", 1) for line in lines)
    assert settings["sip_listen"] == "127.0.0.1:5082"
    assert settings["net_interface"] == "127.0.0.1"
    assert settings["ctrl_tcp_listen"] == "127.0.0.1:4444"
    assert settings["rtp_ports"] == "10000-10020"
    assert settings["audio_source"] == f"aufile,{tmp_path / 'silence.wav'}"
    assert settings["audio_player"].startswith("aubridge,")
    assert settings["snd_path"] == str(tmp_path / "rec")
    assert settings["module_path"] == "/usr/lib/baresip/modules"
    assert (settings["ausrc_srate"], settings["auplay_srate"]) == ("8000", "8000")
    assert [line.split()[1] for line in lines if line.startswith("module ")] == list(softphone.MODULES)
    assert [line.split()[1] for line in lines if line.startswith("module_app ")] == list(softphone.APP_MODULES)
    assert text.endswith("\n")


def test_account_answers_by_itself_or_only_dials() -> None:
    assert (
        softphone.render_accounts("+819012345678", "127.0.0.1", auto_answer=True)
        == "<sip:+819012345678@127.0.0.1>;regint=0;answermode=auto\n"
    )
    assert softphone.render_accounts("09012345678", "127.0.0.1", auto_answer=False) == (
        "<sip:09012345678@127.0.0.1>;regint=0\n"
    )


@pytest.mark.parametrize("user", ["", "90 12", "a>b", "x;answermode=auto", "+"])
def test_account_refuses_what_is_not_a_user_part(user: str) -> None:
    with pytest.raises(ValueError, match="not a SIP user part"):
        softphone.render_accounts(user, "127.0.0.1", auto_answer=True)


def test_silence_lasts_as_long_as_the_longest_call(tmp_path: Path) -> None:
    path = softphone.write_silence(tmp_path / "s.wav", 2.5)

    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert wav.getnframes() == 20000
        assert set(wav.readframes(wav.getnframes())) == {0}


# --- netstrings -----------------------------------------------------------------------


def test_a_command_is_one_netstring_of_json() -> None:
    framed = softphone.encode_command("sndcode", "246810#", "t1")

    (payload,) = softphone.NetstringDecoder().feed(framed)
    assert framed == b"%d:%s," % (len(payload), payload)
    assert json.loads(payload) == {"command": "sndcode", "params": "246810#", "token": "t1"}
    assert json.loads(softphone.NetstringDecoder().feed(softphone.encode_command("quit", "", "t2"))[0]) == {
        "command": "quit",
        "token": "t2",
    }


def test_netstrings_split_and_joined_anyhow_come_out_whole() -> None:
    stream = b"".join(softphone.netstring(p) for p in (b'{"a":1}', b"", b"x" * 300, b"1:,"))
    for size in (1, 2, 7, len(stream)):
        decoder = softphone.NetstringDecoder()
        out = [p for i in range(0, len(stream), size) for p in decoder.feed(stream[i : i + size])]
        assert out == [b'{"a":1}', b"", b"x" * 300, b"1:,"]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"x3:abc,", "bad netstring length"),
        (b"03:abc,", "bad netstring length"),
        (b"1234567890:", "bad netstring length"),
        (b"1234567890", "bad netstring length"),
        (b"3:abcd", "closing ','"),
    ],
)
def test_broken_netstrings_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(softphone.SoftphoneError, match=match):
        softphone.NetstringDecoder().feed(data)


# --- recordings -----------------------------------------------------------------------


def tone(seconds: float, amplitude: int = 8000, rate: int = 8000) -> bytes:
    count = round(seconds * rate)
    return struct.pack(f"<{count}h", *(round(amplitude * math.sin(2 * math.pi * 440 * n / rate)) for n in range(count)))


def wav_bytes(tmp_path: Path, pcm: bytes) -> bytes:
    path = tmp_path / "x.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(pcm)
    return path.read_bytes()


def test_a_finished_recording_is_read_whole(tmp_path: Path) -> None:
    pcm = tone(0.5) + bytes(8000)
    rate, samples = softphone.wav_pcm(wav_bytes(tmp_path, pcm) + b"LIST\x04\x00\x00\x00abcd")

    assert (rate, samples) == (8000, pcm)
    heard = softphone.analyse(rate, samples)
    assert heard.seconds == pytest.approx(1.0)
    assert heard.voiced_seconds == pytest.approx(0.5)
    assert heard.rms > 1000


def test_a_recording_still_being_written_is_read_as_far_as_it_goes(tmp_path: Path) -> None:
    # libsndfile fills in the RIFF and data sizes only when baresip closes it.
    data = bytearray(wav_bytes(tmp_path, tone(0.25)))
    data[4:8] = bytes(4)
    data[40:44] = bytes(4)

    rate, samples = softphone.wav_pcm(bytes(data) + b"\x01")  # half a sample more

    assert rate == 8000
    assert len(samples) == 2 * 2000
    with pytest.raises(softphone.SoftphoneError, match="without format and data"):
        softphone.wav_pcm(bytes(data[:30]))


def test_silence_is_heard_as_nothing_voiced() -> None:
    heard = softphone.analyse(8000, bytes(16000))

    assert (heard.seconds, heard.voiced_seconds, heard.rms) == (1.0, 0.0, 0.0)
    assert softphone.heard_in([]) == softphone.Heard(0.0, 0.0, 0.0)


def test_only_16_bit_mono_is_read(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(bytes(400))
    with pytest.raises(softphone.SoftphoneError, match="2 channels"):
        softphone.wav_pcm(path.read_bytes())


# --- ctrl_tcp, replayed ---------------------------------------------------------------

CALLEE = {"accountaor": "sip:+819012345678@127.0.0.1", "direction": "incoming", "peeruri": "sip:bob@127.0.0.1"}


def event(kind: str, **extra: str) -> dict[str, object]:
    return {"event": True, "type": kind, "class": "call", **CALLEE, "id": "0fd14734fab65481", **extra}


# What baresip 1.0.0 sent a ctrl_tcp client for an answered call keyed "1":
# the events of the call, then the answer to each command with its token.
ANSWERED = [
    event("CALL_REMOTE_SDP", param="offer"),
    event("CALL_LOCAL_SDP", param="answer"),
    event("CALL_ESTABLISHED", param="sip:bob@127.0.0.1"),
    event("CALL_RTPESTAB", param="audio"),
    event("VU_RX_REPORT", param="-96.00"),
    event("CALL_DTMF_START", param="1"),
    event("CALL_DTMF_END"),
]
REPLIES: dict[str, list[dict[str, object]]] = {
    "hangup": [event("CALL_CLOSED", param="Connection reset by user"), {"response": True, "ok": True, "data": ""}],
    "nosuch": [{"response": True, "ok": False, "data": "command not found (nosuch)\n"}],
}

Replay = Callable[[list[dict[str, object]]], asyncio.Future[None]]


@pytest.fixture
async def control(unused_tcp_port: int) -> AsyncIterator[tuple[softphone.Control, Replay]]:
    """A Control connected to a stand-in baresip that answers REPLIES and
    sends what the test gives it, a few bytes at a time."""
    outbox: asyncio.Queue[list[dict[str, object]]] = asyncio.Queue()
    connections: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

        async def send(messages: list[dict[str, object]], token: object = None) -> None:
            for message in messages:
                body = {**message, "token": token} if "response" in message else message
                data = softphone.netstring(json.dumps(body, separators=(",", ":")).encode())
                for i in range(0, len(data), 5):
                    writer.write(data[i : i + 5])
                    await writer.drain()

        async def pushed() -> None:
            while True:
                await send(await outbox.get())

        pusher = asyncio.create_task(pushed())
        decoder = softphone.NetstringDecoder()
        try:
            while data := await reader.read(1024):
                for payload in decoder.feed(data):
                    command = json.loads(payload)
                    await send(REPLIES[command["command"]], command["token"])
        finally:
            pusher.cancel()
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", unused_tcp_port)
    ctl = softphone.Control(*await asyncio.open_connection("127.0.0.1", unused_tcp_port))

    def replay(messages: list[dict[str, object]]) -> asyncio.Future[None]:
        return asyncio.ensure_future(outbox.put(messages))

    yield ctl, replay
    await ctl.close()
    for writer in connections:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_events_are_kept_in_order_and_taken_once(control: tuple[softphone.Control, Replay]) -> None:
    ctl, replay = control
    await replay(ANSWERED)

    established = await ctl.wait_event(softphone.ESTABLISHED, timeout=5)
    assert established["param"] == "sip:bob@127.0.0.1"
    assert ctl.in_call
    assert (await ctl.wait_event("CALL_DTMF_START", timeout=5))["param"] == "1"
    # Taken once, and what came before the last one taken is passed over.
    with pytest.raises(softphone.SoftphoneError, match=r"no CALL_ESTABLISHED event: none within 0.2s"):
        await ctl.wait_event(softphone.ESTABLISHED, timeout=0.2)
    assert "VU_RX_REPORT" not in [e["type"] for e in ctl.events]


async def test_a_command_gets_its_own_answer(control: tuple[softphone.Control, Replay]) -> None:
    ctl, replay = control
    await replay(ANSWERED)
    await ctl.wait_event(softphone.ESTABLISHED, timeout=5)

    assert await ctl.command("hangup") == ""
    assert (await ctl.wait_event(softphone.CLOSED, timeout=5))["param"] == "Connection reset by user"
    assert not ctl.in_call
    with pytest.raises(softphone.SoftphoneError, match=r"refused 'nosuch': command not found \(nosuch\)"):
        await ctl.command("nosuch")


async def test_a_closed_connection_fails_what_waits_on_it(unused_tcp_port: int) -> None:
    async def hang_up_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(softphone.netstring(json.dumps(event("CALL_INCOMING")).encode()))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hang_up_at_once, "127.0.0.1", unused_tcp_port)
    ctl = softphone.Control(*await asyncio.open_connection("127.0.0.1", unused_tcp_port))
    try:
        with pytest.raises(softphone.SoftphoneError, match="no CALL_ESTABLISHED event: baresip closed"):
            await ctl.wait_event(softphone.ESTABLISHED, timeout=5)
        assert [e["type"] for e in ctl.events] == ["CALL_INCOMING"]
        with pytest.raises(softphone.SoftphoneError, match="baresip closed its control connection"):
            await ctl.command("hangup")
    finally:
        await ctl.close()
        server.close()
        await server.wait_closed()


# --- before anything starts -----------------------------------------------------------


def fake_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A 'baresip' on PATH and its modules, none of them real."""
    monkeypatch.setattr(shutil, "which", lambda name: "/bin/false")
    for name in (*softphone.MODULES, *softphone.APP_MODULES):
        (tmp_path / name).touch()
    return tmp_path


async def test_missing_baresip_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)

    with pytest.raises(errors.NotInstalled, match=r"run `make setup` \(Debian: baresip-core\)"):
        await softphone.Softphone(user="+819012345678").start()


async def test_missing_modules_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_install(monkeypatch, tmp_path)
    (tmp_path / "ctrl_tcp.so").unlink()

    with pytest.raises(errors.NotInstalled, match=r"modules ctrl_tcp.so are not in .*make setup"):
        await softphone.Softphone(user="+819012345678", module_dir=tmp_path).start()


async def test_a_sip_port_in_use_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, unused_udp_port: int
) -> None:
    phone = softphone.Softphone(
        user="+819012345678", sip_port=unused_udp_port, module_dir=fake_install(monkeypatch, tmp_path)
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", unused_udp_port))
        with pytest.raises(errors.PortInUse, match=f"UDP port {unused_udp_port} on 127.0.0.1.*another sip_port"):
            await phone.start()
    assert phone.pid is None


async def test_a_control_port_in_use_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, unused_tcp_port: int, unused_udp_port: int
) -> None:
    phone = softphone.Softphone(
        user="+819012345678",
        sip_port=unused_udp_port,
        ctrl_port=unused_tcp_port,
        rtp_ports=(unused_udp_port + 2, unused_udp_port + 2),
        module_dir=fake_install(monkeypatch, tmp_path),
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", unused_tcp_port))
        taken.listen()
        with pytest.raises(errors.PortInUse, match=f"TCP port {unused_tcp_port} .*in use by .*another ctrl_port"):
            await phone.start()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"user": "bob smith"}, "not a SIP user part"),
        ({"rtp_ports": (10020, 10000)}, "not a range of ports"),
        ({"max_call_seconds": 0}, "must be positive"),
    ],
)
def test_bad_arguments_are_refused_at_once(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        softphone.Softphone(**{"user": "+819012345678", **kwargs})  # type: ignore[arg-type]


async def test_keys_are_checked_and_need_a_call(control: tuple[softphone.Control, Replay]) -> None:
    ctl, _ = control
    phone = softphone.Softphone(user="+819012345678")
    phone._control = ctl
    with pytest.raises(ValueError, match="not DTMF keys"):
        await phone.send_keys("12x")
    # baresip would answer "ok" and send nothing.
    with pytest.raises(softphone.SoftphoneError, match="no call to key '1' into"):
        await phone.send_keys("1")
    phone._control = None
