"""smpp.Carrier against the development kit's test SMSC (the npm ``smpp``
0.5.1 server, an independent SMPP implementation): what the SMSC received,
the receipts it sent back, refusals, a lost connection, the rate, a wrong
password, and the doctor's bind check."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ivr_auth import config
from ivr_auth.sms import bind_check, smpp, text
from ivr_auth_devkit import smsc as smsc_mod

pytestmark = pytest.mark.e2e

SYSTEM_ID = "ivr-auth"
PASSWORD = "s3cretpw"
CODE = "482913"


@pytest.fixture
async def smsc(tmp_path: Path) -> AsyncIterator[smsc_mod.Smsc]:
    server = await asyncio.to_thread(smsc_mod.Smsc.start, tmp_path / "smsc", system_id=SYSTEM_ID, password=PASSWORD)
    yield server
    await asyncio.to_thread(server.stop)


class Receipts:
    def __init__(self) -> None:
        self.got: list[smpp.Receipt] = []
        self.bound: list[bool] = []

    async def on_receipt(self, receipt: smpp.Receipt) -> None:
        self.got.append(receipt)

    async def wait(self, count: int, timeout: float = 10.0) -> list[smpp.Receipt]:
        await eventually(lambda: len(self.got) >= count, timeout)
        return self.got


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def carrier_config(smsc: smsc_mod.Smsc, **changes: object) -> config.SmsCarrierConfig:
    settings: dict[str, object] = {
        "name": "test-smsc",
        "host": smsc.host,
        "port": smsc.port,
        "system_id": SYSTEM_ID,
        "password": PASSWORD,
        "response_timeout_seconds": 3.0,
        "reconnect_min_seconds": 0.1,
        "reconnect_max_seconds": 0.5,
        **changes,
    }
    return config.SmsCarrierConfig.model_validate(settings)


@pytest.fixture
def receipts() -> Receipts:
    return Receipts()


@pytest.fixture
async def carrier(smsc: smsc_mod.Smsc, receipts: Receipts) -> AsyncIterator[smpp.Carrier]:
    bound = smpp.Carrier(carrier_config(smsc), receipts.on_receipt, on_bound=receipts.bound.append)
    await bound.start()
    assert await bound.wait_bound(10), "the carrier did not bind to the test SMSC"
    yield bound
    await bound.stop()


async def test_gsm_and_two_part_ucs2_reach_the_smsc_and_their_receipts_come_back(
    smsc: smsc_mod.Smsc, carrier: smpp.Carrier, receipts: Receipts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    english = text.render("en", "Example Bank", CODE, 5)
    japanese = ("認証コード" + CODE + "をご入力ください。") * 5  # 100 characters
    assert len(japanese) == 100
    validity = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    gsm_ids = await carrier.submit("+819012345678", text.encode(english, 1), validity=validity)
    ucs2_ids = await carrier.submit("+819012345679", text.encode(japanese, 2))
    assert len(gsm_ids) == 1
    assert len(ucs2_ids) == 2

    messages = await asyncio.to_thread(smsc.messages)
    assert [m.message_id for m in messages] == gsm_ids + ucs2_ids
    for m in messages:
        assert (m.command, m.system_id) == ("submit_sm", SYSTEM_ID)
        assert (m.source_addr, m.source_addr_ton, m.source_addr_npi) == ("IVRAUTH", 5, 0)
        assert (m.dest_addr_ton, m.dest_addr_npi) == (1, 1)
        assert m.registered_delivery == 1
    gsm, *parts = messages
    assert gsm.destination_addr == "819012345678"
    assert (gsm.data_coding, gsm.esm_class, gsm.udh, gsm.text) == (0, 0, None, english)
    assert gsm.validity_period == f"{validity:%y%m%d%H%M%S}{validity.microsecond // 100000}00+"
    assert [(p.data_coding, p.esm_class) for p in parts] == [(8, 0x40), (8, 0x40)]
    assert [p.udh for p in parts] == [smsc_mod.Concat(0, 2, 2, 1), smsc_mod.Concat(0, 2, 2, 2)]
    assert "".join(p.text or "" for p in parts) == japanese
    assert parts[0].validity_period == ""

    got = await receipts.wait(3)
    assert sorted(got, key=lambda r: r.message_id) == sorted(
        (smpp.Receipt("test-smsc", i, "DELIVRD", "000") for i in gsm_ids + ucs2_ids), key=lambda r: r.message_id
    )
    # Each deliver_sm answered, ESME_ROK.
    await eventually(lambda: [r.response_status for r in smsc.receipts()] == [0, 0, 0])
    assert CODE not in caplog.text  # the code never reaches a log


async def test_failed_deliveries_come_back_as_their_receipts(
    smsc: smsc_mod.Smsc, carrier: smpp.Carrier, receipts: Receipts
) -> None:
    await asyncio.to_thread(
        smsc.set_rules,
        {
            "1111": smsc_mod.Rule(receipt="UNDELIV"),
            "2222": smsc_mod.Rule(receipt="EXPIRED"),
            "3333": smsc_mod.Rule(receipt="REJECTD"),
        },
    )
    ids = {}
    for suffix in ("1111", "2222", "3333"):
        [ids[suffix]] = await carrier.submit(f"+8190000{suffix}", text.encode("code 1234", 0))
    got = {r.message_id: r.stat for r in await receipts.wait(3)}
    assert got == {ids["1111"]: "UNDELIV", ids["2222"]: "EXPIRED", ids["3333"]: "REJECTD"}


async def test_a_refused_submit_raises_with_its_status(smsc: smsc_mod.Smsc, carrier: smpp.Carrier) -> None:
    await asyncio.to_thread(
        smsc.set_rules,
        {
            "0011": smsc_mod.Rule(submit_status=smsc_mod.ESME_RINVDSTADR),
            "0045": smsc_mod.Rule(submit_status=smsc_mod.ESME_RSUBMITFAIL),
            "0058": smsc_mod.Rule(submit_status=smsc_mod.ESME_RTHROTTLED),
            "0014": smsc_mod.Rule(submit_status=smsc_mod.ESME_RMSGQFUL),
        },
    )
    message = text.encode("code 1234", 0)
    for suffix, status in (("0011", 0x0B), ("0045", 0x45)):
        with pytest.raises(smpp.SubmitRefused) as refused:
            await carrier.submit(f"+81900000{suffix}", message)
        assert refused.value.command_status == status
    for suffix, status in (("0058", 0x58), ("0014", 0x14)):
        with pytest.raises(smpp.SubmitFailed) as failed:
            await carrier.submit(f"+81900000{suffix}", message)
        assert failed.value.command_status == status
    assert await carrier.submit("+8190000099", message)  # the bind carries on
    statuses = [m.command_status for m in await asyncio.to_thread(smsc.messages)]
    assert statuses == [0x0B, 0x45, 0x58, 0x14, 0]


async def test_a_dropped_connection_is_bound_again_and_submits_go_on(
    smsc: smsc_mod.Smsc, carrier: smpp.Carrier, receipts: Receipts
) -> None:
    first = [s.id for s in await asyncio.to_thread(smsc.sessions)]
    assert await asyncio.to_thread(smsc.drop_connections) == 1
    await eventually(lambda: receipts.bound[-2:] == [False, True])
    assert carrier.bound
    [message_id] = await carrier.submit("+819012345678", text.encode("after the drop", 0))
    sessions = await asyncio.to_thread(smsc.sessions)
    assert len(sessions) == 1
    assert sessions[0].id not in first
    assert sessions[0].submits == 1
    assert [r.message_id for r in await receipts.wait(1)] == [message_id]


async def test_binds_refused_for_a_while_are_retried_with_backoff(smsc: smsc_mod.Smsc, receipts: Receipts) -> None:
    await asyncio.to_thread(smsc.refuse_binds, 1.0)
    carrier = smpp.Carrier(carrier_config(smsc), receipts.on_receipt, on_bound=receipts.bound.append)
    await carrier.start()
    try:
        assert await carrier.wait_bound(10)
    finally:
        await carrier.stop()
    refused = await asyncio.to_thread(smsc.refused)
    assert len(refused) >= 2  # tried again, and again, until taken
    assert receipts.bound[-2:] == [True, False]  # bound, then stopped
    assert receipts.bound.count(True) == 1


async def test_submits_keep_to_the_rate(smsc: smsc_mod.Smsc, receipts: Receipts) -> None:
    rate = 20.0
    carrier = smpp.Carrier(
        carrier_config(smsc, window=2, messages_per_second=rate), receipts.on_receipt, on_bound=receipts.bound.append
    )
    await carrier.start()
    try:
        assert await carrier.wait_bound(10)
        message = text.encode("code 1234", 0)
        await asyncio.gather(*(carrier.submit(f"+81900000{n:04d}", message) for n in range(40)))
    finally:
        await carrier.stop()
    times = sorted(m.time for m in await asyncio.to_thread(smsc.messages))
    assert len(times) == 40
    # Never more than the rate allows in any second (one token to start
    # with, and the SMSC's clock has milliseconds): a bound that only a
    # limiter letting submits through faster would break.
    busiest = max(sum(1 for t in times if start <= t < start + dt.timedelta(seconds=1)) for start in times)
    assert busiest <= rate + 2
    span = (times[-1] - times[0]).total_seconds()
    print(f"40 submits with window 2 at {rate:g}/s: {span:.2f}s, busiest second {busiest}")


async def test_a_wrong_password_does_not_bind_and_says_why(
    smsc: smsc_mod.Smsc, receipts: Receipts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ivr_auth.sms.smpp")
    carrier = smpp.Carrier(
        carrier_config(smsc, password="wrongpw"), receipts.on_receipt, on_bound=receipts.bound.append
    )
    await carrier.start()
    try:
        await eventually(lambda: len(receipts.bound) >= 2)
        assert not carrier.bound
        with pytest.raises(smpp.SubmitFailed, match="not bound"):
            await carrier.submit("+819012345678", text.encode("x", 0))
    finally:
        await carrier.stop()
    assert set(receipts.bound) == {False}
    assert "carrier test-smsc: bind failed" in caplog.text
    assert "refused bind_transceiver as 'ivr-auth': ESME_RBINDFAIL" in caplog.text
    assert "wrongpw" not in caplog.text
    assert await asyncio.to_thread(smsc.sessions) == []


async def test_the_doctor_binds_and_unbinds(smsc: smsc_mod.Smsc) -> None:
    found = await bind_check.check(carrier_config(smsc), 5.0)
    assert found.startswith(f"{smsc.host}:{smsc.port} bound 'ivr-auth' as transceiver in ")
    assert found.endswith(" ms, and unbound")
    await eventually(lambda: smsc.sessions() == [])
    with pytest.raises(smpp.BindFailed, match="check system_id 'ivr-auth', password and system_type") as refused:
        await bind_check.check(carrier_config(smsc, password="wrongpw"), 5.0)
    assert refused.value.command_status == 0x0D
    assert "wrongpw" not in str(refused.value)
    port = smsc.port
    await asyncio.to_thread(smsc.stop)
    with pytest.raises(smpp.SmppError, match="refused the connection"):
        await bind_check.check(carrier_config(smsc, port=port), 5.0)
