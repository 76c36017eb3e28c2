"""The GSM 03.38 default alphabet and its extension table (3GPP TS 23.038)."""

from __future__ import annotations

# Septet value -> character, in order 0x00-0x7F; 0x1B is the escape to the
# extension table.
BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
ESCAPE = 0x1B
# Characters written as ESCAPE followed by this septet: two septets each.
EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

BASIC_SEPTET = {c: i for i, c in enumerate(BASIC) if i != ESCAPE}
EXTENSION_CHAR = {v: c for c, v in EXTENSION.items()}
# What a sender ID may hold: the basic table's printable characters (no line
# breaks, no escape: a handset shows the ID on one line).
PRINTABLE = frozenset(c for c in BASIC_SEPTET if c not in "\n\r")


def septets(char: str) -> tuple[int, ...] | None:
    """The septets that write ``char``, or None when the alphabet lacks it."""
    if char in BASIC_SEPTET:
        return (BASIC_SEPTET[char],)
    if char in EXTENSION:
        return (ESCAPE, EXTENSION[char])
    return None


def fits(text: str) -> bool:
    return all(septets(c) is not None for c in text)


def to_septets(text: str) -> list[tuple[int, ...]]:
    """Each character's septets; every character must fit (``fits``)."""
    out = []
    for char in text:
        code = septets(char)
        if code is None:
            raise ValueError(f"{char!r} is not in the GSM 03.38 alphabet")
        out.append(code)
    return out


def from_septets(data: bytes) -> str:
    """Unpacked septets (one per octet) back to text."""
    out, escaped = [], False
    for septet in data:
        if escaped:
            out.append(EXTENSION_CHAR.get(septet, " "))
            escaped = False
        elif septet == ESCAPE:
            escaped = True
        else:
            out.append(BASIC[septet & 0x7F])
    return "".join(out)


def sender_kind(source_addr: str) -> str | None:
    """How a sender ID is addressed: "numeric" (up to 15 digits, optionally
    after '+'; TON 1/NPI 1), "alphanumeric" (1-11 printable GSM characters;
    TON 5/NPI 0), or None when it is neither."""
    digits = source_addr.removeprefix("+")
    if digits.isascii() and digits.isdigit() and len(digits) <= 15:
        return "numeric"
    if source_addr.startswith("+"):
        return None
    if 1 <= len(source_addr) <= 11 and all(c in PRINTABLE for c in source_addr) and source_addr.strip() == source_addr:
        return "alphanumeric"
    return None
