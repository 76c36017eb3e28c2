from __future__ import annotations

import datetime as dt
import struct

import pytest

from ivr_auth import pacing
from ivr_auth.sms import pdu, smpp


def test_bind_transceiver_octets() -> None:
    encoded = pdu.bind_transceiver(7, "ivr-auth", "secret", "").encode()
    body = b"ivr-auth\0secret\0\0\x34\0\0\0"
    assert encoded == struct.pack(">IIII", 16 + len(body), 0x09, 0, 7) + body
    assert pdu.decode(encoded) == pdu.Pdu(pdu.BIND_TRANSCEIVER, 0, 7, body)


def test_too_long_credentials_do_not_fit() -> None:
    with pytest.raises(ValueError, match="C-string of 9"):
        pdu.bind_transceiver(1, "ivr-auth", "123456789", "")


def test_submit_sm_round_trip() -> None:
    short = pdu.ShortMessage(
        source_addr_ton=5,
        source_addr_npi=0,
        source_addr="IVRAUTH",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="819012345678",
        esm_class=0x40,
        data_coding=8,
        short_message=bytes((5, 0, 3, 9, 2, 1)) + "認証".encode("utf-16-be"),
        registered_delivery=1,
        validity_period="261206141000000+",
    )
    encoded = pdu.submit_sm(42, short).encode()
    header = pdu.HEADER.unpack_from(encoded)
    assert header == (len(encoded), pdu.SUBMIT_SM, 0, 42)
    body = encoded[16:]
    assert body.startswith(b"\0\x05\x00IVRAUTH\0\x01\x01819012345678\0\x40\x00\x00\x00261206141000000+\x00")
    assert body.endswith(bytes((1, 0, 8, 0, 10)) + short.short_message)
    assert pdu.read_short_message(pdu.decode(encoded).body) == short


def test_a_short_messages_repr_leaves_the_text_out() -> None:
    short = pdu.ShortMessage(5, 0, "IVRAUTH", 1, 1, "819012345678", 0, 0, b"code 123456")
    assert "123456" not in repr(short)
    assert "819012345678" not in repr(short)


def test_responses_and_requests_without_body() -> None:
    enquire = pdu.request(pdu.ENQUIRE_LINK, 3)
    assert enquire.encode() == struct.pack(">IIII", 16, 0x15, 0, 3)
    assert pdu.response(enquire) == pdu.Pdu(pdu.ENQUIRE_LINK_RESP, 0, 3)
    assert pdu.response(enquire).is_response
    assert pdu.generic_nack(9, pdu.ESME_RINVCMDID).encode() == struct.pack(">IIII", 16, 0x80000000, 3, 9)


@pytest.mark.parametrize("length", [0, 15, 64 * 1024 + 1])
def test_a_length_out_of_bounds_is_an_error(length: int) -> None:
    with pytest.raises(pdu.PduError, match="command_length"):
        pdu.read_length(struct.pack(">IIII", length, 4, 0, 1))


def test_a_truncated_body_is_an_error() -> None:
    encoded = pdu.submit_sm(1, pdu.ShortMessage(5, 0, "A", 1, 1, "81", 0, 0, b"xyz")).encode()
    with pytest.raises(pdu.PduError):
        pdu.read_short_message(encoded[16:-2])
    with pytest.raises(pdu.PduError, match="no NUL"):
        pdu.read_short_message(b"abc")
    with pytest.raises(pdu.PduError, match="does not match"):
        pdu.decode(encoded[:-1])


def test_message_id_and_system_id() -> None:
    assert pdu.read_message_id(b"0123456789abcdef\0") == "0123456789abcdef"
    assert pdu.read_message_id(b"") == ""
    assert pdu.read_system_id(b"a-rather-long-smsc-name\0") == "a-rather-long-smsc-name"


def test_absolute_time_is_utc() -> None:
    when = dt.datetime(2026, 12, 6, 23, 59, 58, 700000, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    assert pdu.absolute_time(when) == "261206145958700+"
    assert pdu.absolute_time(dt.datetime(2026, 1, 2, 3, 4, 5)) == "260102030405000+"


def receipt(short_message: bytes, esm_class: int = 0x04, tlvs: dict[int, bytes] | None = None) -> pdu.ShortMessage:
    return pdu.ShortMessage(1, 1, "819012345678", 5, 0, "IVRAUTH", esm_class, 0, short_message, tlvs=tlvs or {})


def test_receipt_from_the_text() -> None:
    text = b"id:0a1b2c sub:001 dlvrd:001 submit date:2612061410 done date:2612061411 stat:DELIVRD err:000 text:123456"
    assert pdu.read_receipt(receipt(text)) == pdu.ReceiptFields("0a1b2c", "DELIVRD", "000")
    assert pdu.read_receipt(receipt(b"ID:77 Stat:undeliv")) == pdu.ReceiptFields("77", "UNDELIV", None)
    assert pdu.read_receipt(receipt(b"id:78 stat:DELIVERED err:0")) == pdu.ReceiptFields("78", "DELIVRD", "0")


def test_receipt_tlvs_win_over_the_text() -> None:
    tlvs = {pdu.TLV_RECEIPTED_MESSAGE_ID: b"abc\0", pdu.TLV_MESSAGE_STATE: bytes((3,))}
    found = pdu.read_receipt(receipt(b"id:other stat:DELIVRD err:000", tlvs=tlvs))
    assert found == pdu.ReceiptFields("abc", "EXPIRED", "000")
    network = {**tlvs, pdu.TLV_NETWORK_ERROR_CODE: bytes((3, 0, 27))}
    assert pdu.read_receipt(receipt(b"", tlvs=network)) == pdu.ReceiptFields("abc", "EXPIRED", "3:27")


def test_a_message_from_a_handset_is_no_receipt() -> None:
    assert pdu.read_receipt(receipt(b"id:1 stat:DELIVRD", esm_class=0)) is None


def test_a_receipt_without_id_is_bad() -> None:
    with pytest.raises(pdu.BadReceipt):
        pdu.read_receipt(receipt(b"stat:DELIVRD"))


def test_statuses() -> None:
    assert pdu.status_name(0x58) == "ESME_RTHROTTLED"
    assert pdu.status_name(0x400) == "0x00000400"
    assert {0x58, 0x14} <= pdu.TRANSIENT_STATUSES
    assert not {0x0B, 0x45, 0x0A} & pdu.TRANSIENT_STATUSES


def test_addresses() -> None:
    assert smpp.source_address("IVRAUTH") == (5, 0, "IVRAUTH")
    assert smpp.source_address("+815012345678") == (1, 1, "815012345678")
    assert smpp.destination_address("+819012345678") == (1, 1, "819012345678")
    with pytest.raises(ValueError, match=r"E\.164"):
        smpp.destination_address("+81-90")


def test_reconnect_delays_double_within_bounds() -> None:
    low = [smpp.reconnect_delay(n, 1.0, 60.0, 0.0) for n in range(8)]
    high = [smpp.reconnect_delay(n, 1.0, 60.0, 0.999999) for n in range(8)]
    assert low == [1.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert high == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0], rel=1e-5)
    assert smpp.reconnect_delay(10_000, 1.0, 60.0, 0.5) == 45.0


def test_the_token_bucket_spaces_submits() -> None:
    bucket = pacing.TokenBucket(rate=10.0, burst=1.0)
    bucket.take(100.0)
    assert bucket.wait_time(100.0) == pytest.approx(0.1)
    assert bucket.wait_time(100.05) == pytest.approx(0.05)
    assert bucket.wait_time(100.1) == pytest.approx(0.0, abs=1e-9)
