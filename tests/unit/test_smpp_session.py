"""smpp.Carrier against a scripted SMSC on loopback: the protocol's corners
that the test SMSC (tests/e2e/test_smpp_carrier.py) does not make happen on
demand: unanswered enquire_link, an unbind from the SMSC, an unreadable PDU,
generic_nack, held responses (the window)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator

import pytest

from ivr_auth import config
from ivr_auth.sms import pdu, smpp, text


class ScriptedSmsc:
    def __init__(self) -> None:
        self.password = "secret"
        self.answer_enquire_link = True
        self.submit_status = 0
        self.nack_submits = False
        self.hold_responses = 0.0
        self.received: list[pdu.Pdu] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.binds = 0
        self.outstanding = 0
        self.most_outstanding = 0
        self.message_ids = 0
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)

    async def stop(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def received_ids(self, command_id: int) -> list[pdu.Pdu]:
        return [p for p in self.received if p.command_id == command_id]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                header = await reader.readexactly(16)
                message = pdu.decode(header + await reader.readexactly(pdu.read_length(header) - 16))
                self.received.append(message)
                await self._answer(message, writer)

    async def _answer(self, message: pdu.Pdu, writer: asyncio.StreamWriter) -> None:
        if message.command_id == pdu.BIND_TRANSCEIVER:
            self.binds += 1
            good = message.body.split(b"\0")[1] == self.password.encode()
            writer.write(pdu.response(message, 0 if good else 0x0E, b"scripted\0").encode())
        elif message.command_id == pdu.UNBIND or (message.command_id == pdu.ENQUIRE_LINK and self.answer_enquire_link):
            writer.write(pdu.response(message).encode())
        elif message.command_id == pdu.SUBMIT_SM:
            self.outstanding += 1
            self.most_outstanding = max(self.most_outstanding, self.outstanding)
            asyncio.get_running_loop().call_later(self.hold_responses, self._submit_response, message, writer)

    def _submit_response(self, message: pdu.Pdu, writer: asyncio.StreamWriter) -> None:
        self.outstanding -= 1
        if self.nack_submits:
            writer.write(pdu.generic_nack(message.sequence, 0x01).encode())
            return
        self.message_ids += 1
        body = f"m{self.message_ids}\0".encode() if self.submit_status == 0 else b""
        writer.write(pdu.response(message, self.submit_status, body).encode())

    def send(self, message: pdu.Pdu) -> None:
        self.writers[-1].write(message.encode())


@pytest.fixture
async def smsc() -> AsyncIterator[ScriptedSmsc]:
    server = ScriptedSmsc()
    await server.start()
    yield server
    await server.stop()


class Recorder:
    def __init__(self) -> None:
        self.receipts: list[smpp.Receipt] = []
        self.bound: list[bool] = []

    async def on_receipt(self, receipt: smpp.Receipt) -> None:
        self.receipts.append(receipt)


def carrier_for(smsc: ScriptedSmsc, recorder: Recorder, **changes: object) -> smpp.Carrier:
    settings: dict[str, object] = {
        "name": "scripted",
        "port": smsc.port,
        "password": "secret",
        "response_timeout_seconds": 1.0,
        "reconnect_min_seconds": 0.05,
        "reconnect_max_seconds": 0.2,
        "messages_per_second": 1000.0,
        **changes,
    }
    cfg = config.SmsCarrierConfig.model_validate(settings)
    return smpp.Carrier(cfg, recorder.on_receipt, on_bound=recorder.bound.append)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


async def eventually(condition: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_the_window_bounds_submits_awaiting_their_response(smsc: ScriptedSmsc, recorder: Recorder) -> None:
    smsc.hold_responses = 0.05
    carrier = carrier_for(smsc, recorder, window=3)
    await carrier.start()
    assert await carrier.wait_bound(5)
    message = text.encode("code 123456", 0)
    results = await asyncio.gather(*(carrier.submit(f"+8190000000{n:02d}", message) for n in range(12)))
    await carrier.stop()
    assert sorted(i for ids in results for i in ids) == sorted(f"m{n}" for n in range(1, 13))
    assert smsc.most_outstanding == 3


async def test_refusals_by_status(smsc: ScriptedSmsc, recorder: Recorder) -> None:
    carrier = carrier_for(smsc, recorder)
    await carrier.start()
    assert await carrier.wait_bound(5)
    message = text.encode("x" * 200, 5)  # two parts
    smsc.submit_status = 0x0B
    with pytest.raises(smpp.SubmitRefused) as refused:
        await carrier.submit("+819012345678", message)
    assert refused.value.command_status == 0x0B
    assert "ESME_RINVDSTADR" in str(refused.value)
    assert len(smsc.received_ids(pdu.SUBMIT_SM)) == 1  # the second part is not sent
    smsc.submit_status = 0x58
    with pytest.raises(smpp.SubmitFailed) as throttled:
        await carrier.submit("+819012345678", message)
    assert throttled.value.command_status == 0x58
    smsc.submit_status, smsc.nack_submits = 0, True
    with pytest.raises(smpp.SubmitRefused, match="generic_nack ESME_RINVMSGLEN"):
        await carrier.submit("+819012345678", message)
    with pytest.raises(smpp.SubmitRefused, match=r"E\.164"):
        await carrier.submit("090-1234-5678", message)
    await carrier.stop()


async def test_an_unanswered_enquire_link_ends_the_bind(smsc: ScriptedSmsc, recorder: Recorder) -> None:
    smsc.answer_enquire_link = False
    carrier = carrier_for(smsc, recorder, enquire_link_seconds=0.1, response_timeout_seconds=0.2)
    await carrier.start()
    await eventually(lambda: smsc.binds >= 2)
    smsc.answer_enquire_link = True
    await eventually(lambda: carrier.bound)
    await carrier.stop()
    assert recorder.bound[:3] == [True, False, True]


async def test_an_unbind_from_the_smsc_is_answered_and_the_carrier_binds_again(
    smsc: ScriptedSmsc, recorder: Recorder
) -> None:
    carrier = carrier_for(smsc, recorder)
    await carrier.start()
    assert await carrier.wait_bound(5)
    smsc.send(pdu.request(pdu.UNBIND, 77))
    await eventually(lambda: smsc.binds == 2 and carrier.bound)
    assert pdu.Pdu(pdu.UNBIND_RESP, 0, 77) in smsc.received
    assert await carrier.submit("+819012345678", text.encode("after", 0)) == ["m1"]
    await carrier.stop()


async def test_an_unreadable_pdu_closes_that_connection_only(smsc: ScriptedSmsc, recorder: Recorder) -> None:
    carrier = carrier_for(smsc, recorder)
    await carrier.start()
    assert await carrier.wait_bound(5)
    smsc.writers[-1].write(struct.pack(">IIII", 8, pdu.DELIVER_SM, 0, 1))
    await eventually(lambda: smsc.binds == 2 and carrier.bound)
    assert await carrier.submit("+819012345678", text.encode("after", 0)) == ["m1"]
    await carrier.stop()


async def test_every_deliver_sm_is_answered(smsc: ScriptedSmsc, recorder: Recorder) -> None:
    carrier = carrier_for(smsc, recorder)
    await carrier.start()
    assert await carrier.wait_bound(5)

    def deliver(sequence: int, body: bytes, esm_class: int = 0x04) -> None:
        short = pdu.ShortMessage(1, 1, "819012345678", 5, 0, "IVRAUTH", esm_class, 0, body)
        smsc.send(pdu.Pdu(pdu.DELIVER_SM, 0, sequence, short.body()))

    deliver(11, b"id:unknown-to-us sub:001 dlvrd:001 stat:UNDELIV err:001")
    deliver(12, b"hello from a handset", esm_class=0)
    deliver(13, b"stat:DELIVRD")  # no id: dropped, but answered
    answered = {11, 12, 13}
    await eventually(lambda: {p.sequence for p in smsc.received_ids(pdu.DELIVER_SM_RESP)} == answered)
    assert recorder.receipts == [smpp.Receipt("scripted", "unknown-to-us", "UNDELIV", "001")]
    assert all(p.command_status == 0 for p in smsc.received_ids(pdu.DELIVER_SM_RESP))
    await carrier.stop()


async def test_an_unknown_command_gets_generic_nack(smsc: ScriptedSmsc, recorder: Recorder) -> None:
    carrier = carrier_for(smsc, recorder)
    await carrier.start()
    assert await carrier.wait_bound(5)
    smsc.send(pdu.Pdu(0x00000103, 0, 21, b""))  # data_sm
    await eventually(lambda: bool(smsc.received_ids(pdu.GENERIC_NACK)))
    assert smsc.received_ids(pdu.GENERIC_NACK) == [pdu.Pdu(pdu.GENERIC_NACK, pdu.ESME_RINVCMDID, 21)]
    assert carrier.bound
    await carrier.stop()


async def test_a_wrong_password_leaves_it_unbound(smsc: ScriptedSmsc, recorder: Recorder) -> None:
    smsc.password = "other"
    carrier = carrier_for(smsc, recorder)
    await carrier.start()
    await eventually(lambda: smsc.binds >= 2)
    assert not carrier.bound
    assert set(recorder.bound) == {False}
    with pytest.raises(smpp.SubmitFailed, match="not bound"):
        await carrier.submit("+819012345678", text.encode("x", 0))
    await carrier.stop()


async def test_stop_unbinds(smsc: ScriptedSmsc, recorder: Recorder) -> None:
    carrier = carrier_for(smsc, recorder)
    await carrier.start()
    assert await carrier.wait_bound(5)
    await carrier.stop()
    assert smsc.received_ids(pdu.UNBIND)
    assert not carrier.bound
    assert recorder.bound == [True, False]


async def test_a_submit_unanswered_in_time_fails_for_now_and_the_bind_stays(
    smsc: ScriptedSmsc, recorder: Recorder
) -> None:
    smsc.hold_responses = 30.0
    carrier = carrier_for(smsc, recorder, response_timeout_seconds=0.3)
    await carrier.start()
    assert await carrier.wait_bound(5)
    with pytest.raises(smpp.SubmitFailed, match=r"no response within 0\.3s") as failed:
        await carrier.submit("+819012345678", text.encode("x", 0))
    assert failed.value.command_status is None
    assert carrier.bound
    assert smsc.binds == 1
    await carrier.stop()
