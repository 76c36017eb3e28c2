"""The code's short message: its words, its encoding and its parts. Pure.

A text that the GSM 03.38 default alphabet writes (extension characters
taking an escape septet each) goes as data_coding 0, one septet per octet of
short_message, unpacked: that is what SMPP carriers take for the default
alphabet (the SMSC packs it for the air). Any other text goes as UCS-2 (data
coding 8), in practice UTF-16BE: a character outside the BMP takes a
surrogate pair, which a part never splits.

A message longer than one part (160 septets, 70 UCS-2 units) goes in
concatenated parts, each opening with a 6-octet user data header (IEI 0x00,
an 8-bit reference the caller picks, the count, the part's number) and sent
with esm_class 0x40 (UDHI): 153 septets or 67 units each. Not SAR TLVs: a
UDH part is what every gateway and handset reassembles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ivr_auth.sms import gsm

Encoding = Literal["gsm7", "ucs2"]
DATA_CODING = {"gsm7": 0, "ucs2": 8}
ESM_UDHI = 0x40
MAX_PARTS = 255
# Units (septets, UTF-16 code units) in a single part and in a concatenated one.
SINGLE = {"gsm7": 160, "ucs2": 70}
CONCATENATED = {"gsm7": 153, "ucs2": 67}
# Room for a service name; longer ones are cut, so one name cannot make every
# message a multi-part one.
MAX_SERVICE_NAME = 30

# Anything that a handset could turn into a link: a scheme, "www.", or a
# domain name (labels and a top-level label of letters).
_LINK = re.compile(r"(?i)(://|www\.|[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}\b|@)")


@dataclass(frozen=True)
class Part:
    short_message: bytes
    esm_class: int
    data_coding: int


@dataclass(frozen=True)
class Message:
    encoding: Encoding
    parts: tuple[Part, ...]


def looks_like_link(text: str) -> bool:
    return _LINK.search(text) is not None


def clean_service_name(name: str) -> str:
    """The name as the message writes it: one line, trimmed, cut to
    MAX_SERVICE_NAME, and empty when it looks like a link (a code message
    never carries one: it is the mark of phishing, and carriers filter it)."""
    name = " ".join(name.split())[:MAX_SERVICE_NAME].strip()
    return "" if looks_like_link(name) else name


def render(language: str, service_name: str, code: str, ttl_minutes: int) -> str:
    """The message in ``language`` ("ja", else English)."""
    service = clean_service_name(service_name)
    if language == "ja":
        head = f"【{service}】" if service else ""
        return f"{head}認証コード: {code}\nこのコードは{ttl_minutes}分間有効です。他人に教えないでください。"
    minutes = "minute" if ttl_minutes == 1 else "minutes"
    subject = service or "Your"
    return f"{subject} verification code: {code}. Valid for {ttl_minutes} {minutes}. Do not share it."


def encode(text: str, reference: int) -> Message:
    """``text`` as the parts of one message; ``reference`` (0-255, taken
    modulo 256) ties concatenated parts together and should differ between
    messages to one handset in flight (a counter per carrier)."""
    if gsm.fits(text):
        encoding: Encoding = "gsm7"
        units = [bytes(s) for s in gsm.to_septets(text)]
    else:
        encoding = "ucs2"
        units = [c.encode("utf-16-be") for c in text]
    size = sum(len(u) for u in units) // (1 if encoding == "gsm7" else 2)
    coding = DATA_CODING[encoding]
    if size <= SINGLE[encoding]:
        return Message(encoding, (Part(b"".join(units), 0, coding),))
    chunks = _split(units, CONCATENATED[encoding] * (1 if encoding == "gsm7" else 2))
    if len(chunks) > MAX_PARTS:
        raise ValueError(f"the text needs {len(chunks)} parts; at most {MAX_PARTS} can be concatenated")
    ref = reference % 256
    parts = tuple(
        Part(bytes((0x05, 0x00, 0x03, ref, len(chunks), n)) + chunk, ESM_UDHI, coding)
        for n, chunk in enumerate(chunks, start=1)
    )
    return Message(encoding, parts)


def _split(units: list[bytes], room: int) -> list[bytes]:
    """Whole characters (an escape pair, a surrogate pair) into chunks of at
    most ``room`` octets."""
    chunks: list[bytes] = []
    current = b""
    for unit in units:
        if len(current) + len(unit) > room:
            chunks.append(current)
            current = b""
        current += unit
    chunks.append(current)
    return chunks


@dataclass(frozen=True)
class Decoded:
    """One part read back: its text and, for a concatenated one, (reference, count, number)."""

    text: str
    concatenation: tuple[int, int, int] | None


def decode_part(short_message: bytes, esm_class: int, data_coding: int) -> Decoded:
    """A part as a carrier receives it (tests, and reading what an SMSC recorded)."""
    data, concatenation = short_message, None
    if esm_class & ESM_UDHI and data:
        header = data[1 : 1 + data[0]]
        data = data[1 + data[0] :]
        if len(header) >= 5 and header[0] == 0x00:
            concatenation = (header[2], header[3], header[4])
    if data_coding == DATA_CODING["ucs2"]:
        return Decoded(data.decode("utf-16-be"), concatenation)
    return Decoded(gsm.from_septets(data), concatenation)


def decode(message: Message) -> str:
    """A message's parts put back together, in their numbered order."""
    decoded = [decode_part(p.short_message, p.esm_class, p.data_coding) for p in message.parts]
    decoded.sort(key=lambda d: d.concatenation[2] if d.concatenation else 0)
    return "".join(d.text for d in decoded)
