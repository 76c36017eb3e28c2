from __future__ import annotations

import phonenumbers
import pytest

from ivr_auth import config, errors, phone

# Digits and hyphen as a Japanese input method types them (U+FF10..U+FF19, U+FF0D).
FULL_WIDTH = str.maketrans({c: chr(ord(c) - ord("0") + 0xFF10) for c in "0123456789"} | {"-": "\uff0d"})


@pytest.mark.parametrize(
    ("text", "e164"),
    [
        ("090-1234-5678", "+819012345678"),
        ("09012345678", "+819012345678"),
        ("+81 90 1234 5678", "+819012345678"),
        ("+81-90-1234-5678", "+819012345678"),
        ("  080 1234 5678  ", "+818012345678"),
        ("03-1234-5678", "+81312345678"),
        ("(03) 1234-5678", "+81312345678"),
        ("06-6123-4567", "+81661234567"),
        ("0120-123-456", "+81120123456"),
        ("050-1234-5678", "+815012345678"),
        ("+1 415 555 2671", "+14155552671"),
        ("090-1234-5678".translate(FULL_WIDTH), "+819012345678"),
    ],
)
def test_normalize_to_e164(text: str, e164: str) -> None:
    assert phone.normalize(text, "JP") == e164


def test_default_country_reads_national_numbers() -> None:
    assert phone.normalize("(415) 555-2671", "US") == "+14155552671"
    assert phone.normalize("+819012345678", "US") == "+819012345678"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc",
        "12",
        "090-1234-567",  # one digit short
        "090-1234-56789",  # one digit long
        "+81 90 1234 5678 9999 9999 9999 9999",  # over 32 characters
        "0" * 33,
        "+999 1234 5678",  # no such country code
    ],
)
def test_invalid_numbers_are_refused(text: str) -> None:
    with pytest.raises(phone.InvalidPhone):
        phone.normalize(text, "JP")


@pytest.mark.parametrize("text", ["0990-123-456", "+81990123456", "0570-000-000"])
def test_premium_rate_and_shared_cost_numbers_are_refused(text: str) -> None:
    assert phonenumbers.is_valid_number(phonenumbers.parse(text, "JP"))

    with pytest.raises(phone.InvalidPhone, match="premium-rate or special-service"):
        phone.normalize(text, "JP")


def test_invalid_phone_belongs_to_the_project_root() -> None:
    with pytest.raises(errors.IvrAuthError):
        phone.parse("", "JP")


@pytest.mark.parametrize(
    ("e164", "kind"),
    [
        ("+819012345678", "mobile"),
        ("+81312345678", "fixed"),
        ("+81120123456", "toll_free"),
        ("+815012345678", "ip"),
        ("+14155552671", "fixed_or_mobile"),
    ],
)
def test_line_type(e164: str, kind: str) -> None:
    assert phone.line_type(e164) == kind


# --- how the carrier is dialled ------------------------------------------------------


@pytest.mark.parametrize(
    ("e164", "number_format", "home", "written"),
    [
        ("+819012345678", "e164", "JP", "+819012345678"),
        ("+819012345678", "e164_no_plus", "JP", "819012345678"),
        ("+819012345678", "national", "JP", "09012345678"),
        ("+81312345678", "national", "JP", "0312345678"),
        ("+14155552671", "national", "JP", "01014155552671"),
        ("+14155552671", "e164_no_plus", "JP", "14155552671"),
        ("+819012345678", "national", "US", "011819012345678"),
    ],
)
def test_format_for_trunk(e164: str, number_format: str, home: str, written: str) -> None:
    assert phone.format_for_trunk(e164, number_format, home) == written


def test_dial_number_puts_the_prefix_first() -> None:
    trunk = config.TrunkConfig(number_format="national", dial_prefix="0033")

    assert phone.dial_number("+819012345678", trunk, "JP") == "003309012345678"
    assert phone.dial_number("+14155552671", trunk, "JP") == "003301014155552671"


def test_dial_number_without_prefix() -> None:
    assert phone.dial_number("+81312345678", config.TrunkConfig(), "JP") == "+81312345678"


def test_dial_endpoint_names_the_trunk() -> None:
    trunk = config.TrunkConfig(name="carrier", number_format="e164_no_plus", dial_prefix="*99")

    assert phone.dial_endpoint("+819012345678", trunk, "JP") == "PJSIP/*99819012345678@carrier"
    assert phone.dial_endpoint("+819012345678", config.TrunkConfig(), "JP") == "PJSIP/+819012345678@trunk"


@pytest.mark.parametrize(
    ("caller_id", "number_format", "expected"),
    [
        ("", "e164", ""),
        ("03-1234-5678", "e164", "+81312345678"),
        ("03-1234-5678", "e164_no_plus", "81312345678"),
        ("+81312345678", "national", "0312345678"),
        ("0312345678", "national", "0312345678"),
    ],
)
def test_caller_id_is_written_like_the_dialled_numbers(caller_id: str, number_format: str, expected: str) -> None:
    trunk = config.TrunkConfig(caller_id=caller_id, number_format=number_format, dial_prefix="0033")

    assert phone.caller_id(trunk, "JP") == expected


# --- masking for logs ----------------------------------------------------------------


def revealed(masked: str) -> str:
    return masked.replace("*", "")


def allowed(e164: str) -> str:
    """What a masked number may show: ``+``, the country code, the last two digits."""
    return f"+{phonenumbers.parse(e164).country_code}{e164[-2:]}"


@pytest.mark.parametrize("e164", ["+819012345678", "+81312345678", "+81120123456", "+861012345678"])
def test_mask_shows_country_code_and_last_two_digits(e164: str) -> None:
    masked = phone.mask(e164)

    assert len(masked) == len(e164)
    assert masked.startswith("+" + str(phonenumbers.parse(e164).country_code))
    assert masked.endswith(e164[-2:])
    assert revealed(masked) == allowed(e164)


@pytest.mark.parametrize("text", ["", "+8", "+8190", "12345"])
def test_mask_hides_short_values_entirely(text: str) -> None:
    assert phone.mask(text) == "*" * len(text)


def test_mask_never_shows_more_than_allowed_for_three_digit_country_codes() -> None:
    masked = phone.mask("+85221234567")  # Hong Kong, country code 852

    assert set(revealed(masked)) <= set(allowed("+85221234567"))
    assert masked.endswith("67")
    assert "2123" not in masked


@pytest.mark.parametrize("e164", ["+14155552671", "+74951234567"])
def test_mask_does_not_reveal_the_area_code_of_one_digit_country_codes(e164: str) -> None:
    assert revealed(phone.mask(e164)) == allowed(e164)


# --- reading caller IDs and dialled numbers -------------------------------------------


@pytest.mark.parametrize(
    "presented",
    ["", None, "   ", "anonymous", "Anonymous", " ANONYMOUS ", "unknown", "restricted", "private", "0", "abc"],
)
def test_withheld_caller_ids(presented: str | None) -> None:
    assert phone.withheld(presented)


@pytest.mark.parametrize("presented", ["+819012345678", "09012345678", "819012345678", "+442079460000"])
def test_real_caller_ids_are_not_withheld(presented: str) -> None:
    assert not phone.withheld(presented)


@pytest.mark.parametrize(
    ("text", "e164"),
    [
        ("+819012345678", "+819012345678"),
        ("819012345678", "+819012345678"),
        ("09012345678", "+819012345678"),
        ("090-1234-5678", "+819012345678"),
        ("+81 90 1234 5678", "+819012345678"),
        ("05012345678", "+815012345678"),
        ("81312345678", "+81312345678"),
        ("+442079460000", "+442079460000"),
        ("442079460000", "+442079460000"),
        # Refused by normalize (premium rate), but a trunk may still present it.
        ("0990-123-456", "+81990123456"),
    ],
)
def test_lenient_e164(text: str, e164: str) -> None:
    assert phone.lenient_e164(text, "JP") == e164


@pytest.mark.parametrize("text", ["12", "", "abc", "+", "anonymous", "0" * 21, "+81 90 1234 5678 9999 9999"])
def test_lenient_e164_is_none_for_what_is_not_a_number(text: str) -> None:
    assert phone.lenient_e164(text, "JP") is None


@pytest.mark.parametrize(
    ("e164", "home", "shown"),
    [
        ("+815012345678", "JP", "050-1234-5678"),
        ("+819012345678", "JP", "090-1234-5678"),
        ("+442079460000", "JP", "+44 20 7946 0000"),
        ("+815012345678", "GB", "+81 50-1234-5678"),
    ],
)
def test_display_is_national_at_home_and_international_from_abroad(e164: str, home: str, shown: str) -> None:
    assert phone.display(e164, home) == shown
