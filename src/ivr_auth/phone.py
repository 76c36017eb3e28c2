"""Phone numbers: parsing what a user typed, and writing what a carrier dials.

``phonenumbers`` (Google's libphonenumber data) does the parsing and
validation; Japanese national formats such as ``090-1234-5678`` are read
with the default country. What a user typed is checked first: phonenumbers
reads letters as keypad digits (``090-ABCD-EFGH`` becomes 090-2223-3344,
``O90-...`` loses its O) and sets an extension aside, and we would dial
another number than the one meant.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from ivr_auth import errors

if TYPE_CHECKING:
    from ivr_auth import config

# Every phonenumbers line type, by the name the API's line_type, the usage
# report and limits.allowed_line_types give it.
TYPE_NAMES = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "fixed",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_or_mobile",
    PhoneNumberType.VOIP: "ip",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.PERSONAL_NUMBER: "personal",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UNKNOWN: "unknown",
}
LINE_TYPES = tuple(TYPE_NAMES.values())
# Never presented as a caller ID: calling one back costs the callee dearly
# (premium rate, shared cost, UAN: the one-ring callback scam) or reaches
# nobody (pager, voicemail).
NOT_PRESENTED = ("premium_rate", "shared_cost", "uan", "pager", "voicemail")

# Besides digits (ASCII or full width), what people put between them, each
# read as its ASCII form. The katakana long vowel mark ー (and its half-width
# ｰ) counts as a dash: a Japanese IME in kana mode writes it for the minus
# key, so 090ー1234ー5678 is what many people type, and between digits it
# can mean nothing else. So does the minus sign (U+2212), which macOS's
# Japanese IME writes for a full-width hyphen.
_SEPARATORS = {
    **dict.fromkeys(" \u00a0\u3000", " "),
    **dict.fromkeys("-\uff0d\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff70", "-"),
    **dict.fromkeys(".\uff0e", "."),
    **dict.fromkeys("(\uff08", "("),
    **dict.fromkeys(")\uff09", ")"),
    **dict.fromkeys("/\uff0f", "/"),
}
_DIGITS = {c: c for c in "0123456789"} | {chr(0xFF10 + n): str(n) for n in range(10)}
_PLUSES = "+\uff0b"
# Letters typed for the digits they look like.
_LOOKALIKES = {"O": "0", "o": "0", "I": "1", "l": "1"}
# An extension (or digits keyed after the answer) after the number, read
# after NFKC folding (so full-width "ext" and "#" too): we call the number
# and nobody keys the rest. 内線 is Japanese for "extension". Not after a
# letter, so that 0120-XX1234 is refused for its letters.
_EXTENSION = re.compile(
    r"(?<![^\W\d_])(?:ext(?:ension)?[.=]?|x|#|,|;|\u5185\u7dda)\s*\d+\s*\)?\s*$", re.IGNORECASE | re.ASCII
)
MAX_LENGTH = 32


class InvalidPhone(errors.IvrAuthError):
    """The phone number is not valid."""


def _ascii(text: str) -> str:
    """``text`` written in ASCII digits and separators for phonenumbers;
    ``InvalidPhone`` naming what has no place in a phone number."""
    if _EXTENSION.search(unicodedata.normalize("NFKC", text)):
        raise InvalidPhone("phone: extensions cannot be called; give the number without its extension")
    out: list[str] = []
    for char in text:
        if char in _DIGITS:
            out.append(_DIGITS[char])
        elif char in _SEPARATORS:
            out.append(_SEPARATORS[char])
        elif char in _PLUSES:
            if "+" in out or any(c.isdigit() for c in out):
                raise InvalidPhone("phone: '+' may only come first, before the country code")
            out.append("+")
        elif unicodedata.category(char).startswith("L"):
            digit = _LOOKALIKES.get(unicodedata.normalize("NFKC", char))
            if digit is not None:
                raise InvalidPhone(f"phone: letters are not accepted ({char!r} is a letter, not the digit {digit})")
            raise InvalidPhone(f"phone: letters are not accepted ({char!r}); write the number in digits")
        elif unicodedata.category(char) == "Nd":
            raise InvalidPhone(f"phone: only the digits 0-9 are accepted, not {char!r}")
        else:
            raise InvalidPhone(
                f"phone: {char!r} is not accepted; write the number in digits"
                " (spaces, hyphens, dots, parentheses and a leading + may go with them)"
            )
    return "".join(out)


def parse(text: str, default_country: str) -> phonenumbers.PhoneNumber:
    """A valid number, whatever its line type: which types are called is
    the tenant's policy (``limits.check_destination``)."""
    cleaned = text.strip()
    if not cleaned or len(cleaned) > MAX_LENGTH:
        raise InvalidPhone("phone: expected a phone number in E.164 (+81...) or national format")
    try:
        number = phonenumbers.parse(_ascii(cleaned), default_country)
    except NumberParseException as exc:
        raise InvalidPhone(f"phone: {text!r} is not a phone number ({exc._msg})") from exc
    if number.extension:
        # Refused above already; kept in case phonenumbers finds one we did not.
        raise InvalidPhone("phone: extensions cannot be called; give the number without its extension")
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"phone: {text!r} is not a valid number for its country")
    return number


def normalize(text: str, default_country: str) -> str:
    """The E.164 form (``+819012345678``) of a valid number."""
    return phonenumbers.format_number(parse(text, default_country), PhoneNumberFormat.E164)


def caller_id_e164(text: str, default_country: str) -> str:
    """The E.164 form of a number our calls may present as their caller ID."""
    e164 = normalize(text, default_country)
    kind = line_type(e164)
    if kind in NOT_PRESENTED:
        raise InvalidPhone(
            f"phone: {e164} is a {kind} number, never presented as a caller ID"
            f" (a callback would cost the callee or reach nobody; refused: {', '.join(NOT_PRESENTED)})"
        )
    return e164


def line_type(e164: str) -> str:
    """One of ``LINE_TYPES``."""
    number = phonenumbers.parse(e164)
    return TYPE_NAMES.get(phonenumbers.number_type(number), "unknown")


def format_for_trunk(e164: str, number_format: str, home_country: str) -> str:
    """``e164`` written as a carrier expects it: ``+81312345678``,
    ``81312345678`` or ``0312345678``. In national format a foreign number is
    dialled as from ``home_country`` (from Japan: ``010`` + country code)."""
    if number_format == "national":
        number = phonenumbers.parse(e164)
        written = phonenumbers.format_out_of_country_calling_number(number, home_country)
        return "".join(c for c in written if c.isdigit())
    if number_format == "e164_no_plus":
        return e164.removeprefix("+")
    return e164


def dial_number(e164: str, trunk: config.TrunkConfig, home_country: str) -> str:
    """The digits put in the Request-URI sent to the carrier."""
    return f"{trunk.dial_prefix}{format_for_trunk(e164, trunk.number_format, home_country)}"


def dial_endpoint(e164: str, trunk: config.TrunkConfig, home_country: str) -> str:
    """The ARI/dialplan endpoint that dials ``e164`` out through the trunk."""
    return f"PJSIP/{dial_number(e164, trunk, home_country)}@{trunk.name}"


def caller_id(trunk: config.TrunkConfig, default_country: str) -> str:
    """The caller ID to present, written as the trunk writes numbers."""
    if not trunk.caller_id:
        return ""
    e164 = phonenumbers.format_number(phonenumbers.parse(trunk.caller_id, default_country), PhoneNumberFormat.E164)
    return format_for_trunk(e164, trunk.number_format, default_country)


def mask(e164: str) -> str:
    """For logs: country code and the last two digits only."""
    try:
        country = str(phonenumbers.parse(e164).country_code)
    except NumberParseException:
        return "*" * len(e164)
    keep = 1 + len(country)
    if not e164.startswith("+" + country) or len(e164) < keep + 4:
        return "*" * len(e164)
    return e164[:keep] + "*" * (len(e164) - keep - 2) + e164[-2:]


# What trunks put in From / P-Asserted-Identity when the caller withholds
# their number (Japan: 184 prefix; elsewhere *67 and the like).
WITHHELD = frozenset({"", "anonymous", "unknown", "restricted", "private", "unavailable", "withheld", "0"})


def withheld(presented: str | None) -> bool:
    """True when a caller ID says nothing about who is calling."""
    text = (presented or "").strip().lower()
    return text in WITHHELD or not any(c.isdigit() for c in text)


def lenient_e164(text: str, default_country: str) -> str | None:
    """E.164 of a number as a trunk or dialplan writes it: ``+819012345678``,
    ``819012345678``, ``09012345678``, ``090-1234-5678``; None when it is not
    a valid number. Unlike ``normalize`` this refuses nothing else: it reads
    who is calling and what they dialled, not what we are about to call."""
    cleaned = "".join(c for c in text if c.isdigit() or c == "+")
    if not cleaned or len(cleaned) > 20:
        return None
    candidates = [cleaned]
    if not cleaned.startswith("+"):
        # A national number first (0901234567), then one written without its
        # plus (819012345678, 0081... international prefix aside).
        candidates.append("+" + cleaned)
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, default_country)
        except NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return None


def display(e164: str, home_country: str) -> str:
    """How a web page shows a number to someone in ``home_country``:
    ``050-1234-5678`` at home, ``+44 20 7946 0000`` from abroad."""
    number = phonenumbers.parse(e164)
    if phonenumbers.region_code_for_number(number) == home_country:
        return phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)


def region(e164: str) -> str | None:
    """The ISO country of a number (``JP``), None when unknown."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164))
    except NumberParseException:
        return None
