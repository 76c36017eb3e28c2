"""SMPP 3.4 PDUs: the few an ESME bound as transceiver sends and receives,
written and read. Pure: bytes in, bytes out.

A PDU is a 16-octet header (command_length, command_id, command_status,
sequence_number, big-endian) and a body of C-strings, integers of one octet,
the short message (its length in an octet before it) and optional TLVs.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from dataclasses import dataclass, field

from ivr_auth import errors

HEADER = struct.Struct(">IIII")
HEADER_SIZE = HEADER.size
# Nothing we take part in comes near this: a longer PDU is a stream out of step.
MAX_LENGTH = 64 * 1024
INTERFACE_VERSION = 0x34
RESPONSE = 0x80000000

GENERIC_NACK = 0x80000000
BIND_TRANSCEIVER = 0x00000009
BIND_TRANSCEIVER_RESP = 0x80000009
SUBMIT_SM = 0x00000004
SUBMIT_SM_RESP = 0x80000004
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
UNBIND = 0x00000006
UNBIND_RESP = 0x80000006
ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015
OUTBIND = 0x0000000B

ESME_ROK = 0x00
ESME_RINVCMDID = 0x03
ESME_RSYSERR = 0x08
ESME_RX_T_APPN = 0x64

# command_status names, for logs and errors.
STATUS_NAMES = {
    0x00: "ESME_ROK",
    0x01: "ESME_RINVMSGLEN",
    0x02: "ESME_RINVCMDLEN",
    0x03: "ESME_RINVCMDID",
    0x04: "ESME_RINVBNDSTS",
    0x05: "ESME_RALYBND",
    0x08: "ESME_RSYSERR",
    0x0A: "ESME_RINVSRCADR",
    0x0B: "ESME_RINVDSTADR",
    0x0C: "ESME_RINVMSGID",
    0x0D: "ESME_RBINDFAIL",
    0x0E: "ESME_RINVPASWD",
    0x0F: "ESME_RINVSYSID",
    0x14: "ESME_RMSGQFUL",
    0x15: "ESME_RINVSERTYP",
    0x45: "ESME_RSUBMITFAIL",
    0x48: "ESME_RINVSRCTON",
    0x49: "ESME_RINVSRCNPI",
    0x50: "ESME_RINVDSTTON",
    0x51: "ESME_RINVDSTNPI",
    0x58: "ESME_RTHROTTLED",
    0x61: "ESME_RINVSCHED",
    0x62: "ESME_RINVEXPIRY",
    0x64: "ESME_RX_T_APPN",
    0x65: "ESME_RX_P_APPN",
    0x66: "ESME_RX_R_APPN",
    0xFF: "ESME_RUNKNOWNERR",
}
# A submit refused with one of these may pass later: throttled, the SMSC's
# queue full, a temporary application error. Any other refusal is for good.
TRANSIENT_STATUSES = frozenset({0x58, 0x14, 0x64})

TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427
TLV_NETWORK_ERROR_CODE = 0x0423
# message_state values and the receipt text's stat words for them.
MESSAGE_STATES = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
# Spelled out by some SMSCs; the store knows the 7-letter words.
_STAT_WORDS = {
    "DELIVERED": "DELIVRD",
    "UNDELIVERABLE": "UNDELIV",
    "REJECTED": "REJECTD",
    "ACCEPTED": "ACCEPTD",
    "EXPIRE": "EXPIRED",
    "DELETE": "DELETED",
}
# esm_class bits 2-5: the message type; 0x04 is an SMSC delivery receipt.
ESM_TYPE_MASK = 0x3C
ESM_DELIVERY_RECEIPT = 0x04


class PduError(errors.IvrAuthError):
    """An SMPP PDU could not be read."""


class BadReceipt(errors.IvrAuthError):
    """A delivery receipt names no message id or no state."""


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, f"0x{status:08X}")


@dataclass(frozen=True)
class Pdu:
    command_id: int
    command_status: int
    sequence: int
    body: bytes = b""

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE)

    def encode(self) -> bytes:
        return (
            HEADER.pack(HEADER_SIZE + len(self.body), self.command_id, self.command_status, self.sequence) + self.body
        )


def read_length(header: bytes) -> int:
    """The whole PDU's length from its first 16 octets; out of bounds: PduError."""
    length = int.from_bytes(header[:4], "big")
    if not HEADER_SIZE <= length <= MAX_LENGTH:
        raise PduError(f"command_length {length} is outside {HEADER_SIZE}-{MAX_LENGTH}")
    return length


def decode(data: bytes) -> Pdu:
    if len(data) < HEADER_SIZE or read_length(data) != len(data):
        raise PduError(f"a PDU of {len(data)} octets does not match its command_length")
    length, command_id, status, sequence = HEADER.unpack_from(data)
    return Pdu(command_id, status, sequence, data[HEADER_SIZE:length])


# --- writing bodies ------------------------------------------------------------------


def c_string(value: str, size: int) -> bytes:
    """A NUL-terminated ASCII field of at most ``size`` octets with the NUL."""
    encoded = value.encode("ascii")
    if len(encoded) >= size or b"\0" in encoded:
        raise ValueError(f"{value!r} does not fit a C-string of {size} octets")
    return encoded + b"\0"


def bind_transceiver(sequence: int, system_id: str, password: str, system_type: str) -> Pdu:
    body = (
        c_string(system_id, 16)
        + c_string(password, 9)
        + c_string(system_type, 13)
        + bytes((INTERFACE_VERSION, 0, 0))  # addr_ton, addr_npi: any
        + c_string("", 41)  # address_range
    )
    return Pdu(BIND_TRANSCEIVER, ESME_ROK, sequence, body)


@dataclass(frozen=True, repr=False)
class ShortMessage:
    """submit_sm and deliver_sm share this body. ``repr`` leaves
    short_message out: it holds the code."""

    source_addr_ton: int
    source_addr_npi: int
    source_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    destination_addr: str
    esm_class: int
    data_coding: int
    short_message: bytes
    registered_delivery: int = 0
    validity_period: str = ""
    service_type: str = ""
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"ShortMessage(esm_class=0x{self.esm_class:02X}, data_coding={self.data_coding}, "
            f"{len(self.short_message)} octets, tlvs={sorted(self.tlvs)})"
        )

    def body(self) -> bytes:
        if len(self.short_message) > 254:
            raise ValueError("short_message holds at most 254 octets")
        return (
            c_string(self.service_type, 6)
            + bytes((self.source_addr_ton, self.source_addr_npi))
            + c_string(self.source_addr, 21)
            + bytes((self.dest_addr_ton, self.dest_addr_npi))
            + c_string(self.destination_addr, 21)
            + bytes((self.esm_class, self.protocol_id, self.priority_flag))
            + c_string(self.schedule_delivery_time, 17)
            + c_string(self.validity_period, 17)
            + bytes((self.registered_delivery, 0, self.data_coding, 0, len(self.short_message)))
            + self.short_message
            + b"".join(struct.pack(">HH", tag, len(value)) + value for tag, value in self.tlvs.items())
        )


def submit_sm(sequence: int, message: ShortMessage) -> Pdu:
    return Pdu(SUBMIT_SM, ESME_ROK, sequence, message.body())


def response(request: Pdu, status: int = ESME_ROK, body: bytes = b"") -> Pdu:
    return Pdu(request.command_id | RESPONSE, status, request.sequence, body)


def generic_nack(sequence: int, status: int) -> Pdu:
    return Pdu(GENERIC_NACK, status, sequence)


def request(command_id: int, sequence: int) -> Pdu:
    """A request without a body: enquire_link, unbind."""
    return Pdu(command_id, ESME_ROK, sequence)


def absolute_time(when: dt.datetime) -> str:
    """SMPP's absolute time format, YYMMDDhhmmsstnnp, in UTC ("00+")."""
    utc = (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    return f"{utc:%y%m%d%H%M%S}{utc.microsecond // 100000}00+"


# --- reading bodies ------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def c_string(self) -> str:
        # Not held to the field's size in SMPP 3.4: SMSCs overrun them (a
        # longer system_id, a 64-digit message_id), and the NUL says enough.
        end = self.data.find(b"\0", self.at)
        if end < 0:
            raise PduError(f"a C-string at octet {self.at} has no NUL")
        value, self.at = self.data[self.at : end], end + 1
        return value.decode("latin-1")

    def octet(self) -> int:
        if self.at >= len(self.data):
            raise PduError("the body ends early")
        self.at += 1
        return self.data[self.at - 1]

    def octets(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise PduError("the body ends early")
        value, self.at = self.data[self.at : self.at + count], self.at + count
        return value

    def tlvs(self) -> dict[int, bytes]:
        found = {}
        while self.at < len(self.data):
            tag, length = struct.unpack(">HH", self.octets(4))
            found[tag] = self.octets(length)
        return found


def read_short_message(body: bytes) -> ShortMessage:
    """A submit_sm's or deliver_sm's body."""
    r = _Reader(body)
    service_type = r.c_string()
    source = (r.octet(), r.octet(), r.c_string())
    destination = (r.octet(), r.octet(), r.c_string())
    esm_class, protocol_id, priority_flag = r.octet(), r.octet(), r.octet()
    schedule, validity = r.c_string(), r.c_string()
    registered_delivery, _replace, data_coding, _default_id, length = (r.octet() for _ in range(5))
    short_message = r.octets(length)
    return ShortMessage(
        source_addr_ton=source[0],
        source_addr_npi=source[1],
        source_addr=source[2],
        dest_addr_ton=destination[0],
        dest_addr_npi=destination[1],
        destination_addr=destination[2],
        esm_class=esm_class,
        data_coding=data_coding,
        short_message=short_message,
        registered_delivery=registered_delivery,
        validity_period=validity,
        service_type=service_type,
        protocol_id=protocol_id,
        priority_flag=priority_flag,
        schedule_delivery_time=schedule,
        tlvs=r.tlvs(),
    )


def read_message_id(body: bytes) -> str:
    """submit_sm_resp's message_id (an SMSC may send no body with an error)."""
    return _Reader(body).c_string() if body else ""


def read_system_id(body: bytes) -> str:
    """bind_transceiver_resp's system_id."""
    return _Reader(body).c_string() if body else ""


# --- delivery receipts ---------------------------------------------------------------


@dataclass(frozen=True)
class ReceiptFields:
    message_id: str
    stat: str
    err: str | None


_FIELD = re.compile(r"(?i)\b(id|stat|err):(\S*)")


def read_receipt(message: ShortMessage) -> ReceiptFields | None:
    """The delivery receipt a deliver_sm carries, or None when it is none
    (a message from a handset). The TLVs receipted_message_id and
    message_state win over the text ("id:... stat:... err:..."), which
    SMSCs write with varying care."""
    is_receipt = (message.esm_class & ESM_TYPE_MASK) == ESM_DELIVERY_RECEIPT
    tlv_id = message.tlvs.get(TLV_RECEIPTED_MESSAGE_ID)
    if not is_receipt and tlv_id is None:
        return None
    words: dict[str, str] = {}
    if message.data_coding in (0, 1, 3):  # the default alphabet, ASCII, Latin-1: the receipt's text
        for key, value in _FIELD.findall(message.short_message.decode("latin-1")):
            words.setdefault(key.lower(), value)
    message_id = tlv_id.rstrip(b"\0").decode("latin-1") if tlv_id is not None else words.get("id", "")
    state = message.tlvs.get(TLV_MESSAGE_STATE)
    stat = MESSAGE_STATES.get(state[0], "UNKNOWN") if state else words.get("stat", "").upper()
    stat = _STAT_WORDS.get(stat, stat)
    err = words.get("err")
    network_error = message.tlvs.get(TLV_NETWORK_ERROR_CODE)
    if err is None and network_error is not None and len(network_error) == 3:
        err = f"{network_error[0]}:{int.from_bytes(network_error[1:], 'big')}"
    if not message_id or not stat:
        raise BadReceipt
    return ReceiptFields(message_id, stat, err)
