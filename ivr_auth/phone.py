"""Phone numbers: parsing what a user typed, and writing what a carrier dials.

``phonenumbers`` (Google's libphonenumber data) does the parsing and
validation; Japanese national formats such as ``090-1234-5678`` are read
with the default country.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from ivr_auth import config, errors

# Numbers we never call: premium rate and shared-cost ranges (toll fraud),
# and ranges that are not a person's phone.
REFUSED_TYPES = frozenset(
    {
        PhoneNumberType.PREMIUM_RATE,
        PhoneNumberType.SHARED_COST,
        PhoneNumberType.UAN,
        PhoneNumberType.PAGER,
        PhoneNumberType.VOICEMAIL,
    }
)
TYPE_NAMES = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "fixed",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_or_mobile",
    PhoneNumberType.VOIP: "ip",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PERSONAL_NUMBER: "personal",
}


class InvalidPhone(errors.IvrAuthError):
    """The phone number is not valid."""


def parse(text: str, default_country: str) -> phonenumbers.PhoneNumber:
    cleaned = text.strip()
    if not cleaned or len(cleaned) > 32:
        raise InvalidPhone("phone: expected a phone number in E.164 (+81...) or national format")
    try:
        number = phonenumbers.parse(cleaned, default_country)
    except NumberParseException as exc:
        raise InvalidPhone(f"phone: {text!r} is not a phone number ({exc._msg})") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"phone: {text!r} is not a valid number for its country")
    if phonenumbers.number_type(number) in REFUSED_TYPES:
        raise InvalidPhone(f"phone: {text!r} is a premium-rate or special-service number")
    return number


def normalize(text: str, default_country: str) -> str:
    """The E.164 form (``+819012345678``) of a valid, callable number."""
    return phonenumbers.format_number(parse(text, default_country), PhoneNumberFormat.E164)


def line_type(e164: str) -> str:
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
