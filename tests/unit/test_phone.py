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


# --- what people type: digits and separators, never letters or extensions --------------


@pytest.mark.parametrize(
    "text",
    [
        "\uff10\uff19\uff10\uff0d\uff11\uff12\uff13\uff14\uff0d\uff15\uff16\uff17\uff18",  # full width, as an IME types
        # full-width + and spaces
        "\uff0b\uff18\uff11\u3000\uff19\uff10\u3000\uff11\uff12\uff13\uff14\u3000\uff15\uff16\uff17\uff18",
        "090\u30fc1234\u30fc5678",  # katakana long mark for a dash (kana mode's minus key)
        "\uff10\uff19\uff10\uff70\uff11\uff12\uff13\uff14\uff70\uff15\uff16\uff17\uff18",  # its half-width form
        "090\u20101234\u20105678",  # hyphen
        "090\u20111234\u20115678",  # non-breaking hyphen
        "090\u20131234\u20135678",  # en dash
        "090\u20141234\u20145678",  # em dash
        "090\u22121234\u22125678",  # minus sign (macOS's full-width minus)
        "090.1234.5678",
        "\uff10\uff19\uff10\uff0e\uff11\uff12\uff13\uff14\uff0e\uff15\uff16\uff17\uff18",
        "(090) 1234/5678",
        "\uff08\uff10\uff19\uff10\uff09\uff11\uff12\uff13\uff14\uff0f\uff15\uff16\uff17\uff18",
        "090\u00a01234\u00a05678",  # no-break space, pasted from a web page
        "+81 (0)90-1234-5678",
        "(+81) 90-1234-5678",
        "090\uff11\uff12\uff13\uff14-5678",  # half and full width mixed
    ],
)
def test_what_people_type_is_read(text: str) -> None:
    assert phone.normalize(text, "JP") == "+819012345678"


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("090-ABCD-EFGH", "A"),  # vanity letters: phonenumbers would dial 090-2223-3344
        ("0120-FLOWER", "F"),
        ("\uff10\uff19\uff10\uff0d\uff21\uff22\uff23\uff24", "\uff21"),  # full-width letters
        ("090-1234-567l", "l"),
        ("\u041e90-1234-5678", "\u041e"),  # Cyrillic O
        ("\u96fb\u8a71 090-1234-5678", "\u96fb"),  # Japanese text around the number
        ("tel:+819012345678", "t"),
        ("abc", "a"),
    ],
)
def test_letters_are_refused_never_turned_into_digits(text: str, letter: str) -> None:
    with pytest.raises(phone.InvalidPhone, match="letters are not accepted") as info:
        phone.normalize(text, "JP")
    assert repr(letter) in str(info.value)


@pytest.mark.parametrize("text", ["O90-1234-5678", "090-1234-567O", "o9o12345678", "\uff2f\uff19\uff10"])
def test_a_letter_o_for_a_zero_is_refused_and_named(text: str) -> None:
    # phonenumbers reads O as the keypad's 6... or, at the front, drops it.
    with pytest.raises(phone.InvalidPhone, match=r"letters are not accepted .*the digit 0"):
        phone.normalize(text, "JP")


@pytest.mark.parametrize(
    "text",
    [
        "090-1234-5678 ext. 9",
        "090-1234-5678 ext 9",
        "090-1234-5678 EXT.123",
        "090-1234-5678 extension 9",
        "090-1234-5678x9",
        "090-1234-5678 x 9",
        "090-1234-5678 X9",
        "090-1234-5678#9",
        "090-1234-5678 #9",
        "090-1234-5678,9",
        "090-1234-5678,,9",
        "090-1234-5678;ext=9",
        "tel:+81-90-1234-5678;ext=9",
        "03-1234-5678 \u5185\u7dda9",  # naisen
        "03-1234-5678\uff08\u5185\u7dda\uff11\uff12\uff13\uff09",  # (naisen 123) in full width
        "\uff10\uff13\uff0d\uff11\uff12\uff13\uff14\uff0d\uff15\uff16\uff17\uff18\u3000\uff45\uff58\uff54\uff0e\uff19",
        "+1 415 555 2671 x23",
    ],
)
def test_extensions_are_refused(text: str) -> None:
    with pytest.raises(phone.InvalidPhone, match="extensions cannot be called"):
        phone.normalize(text, "JP")


@pytest.mark.parametrize(
    ("text", "char"),
    [
        ("090-1234-5678#", "#"),
        ("*67 090-1234-5678", "*"),
        ("090*1234*5678", "*"),
        ("090_1234_5678", "_"),
        ("090:1234:5678", ":"),
        ("090-1234-5678;", ";"),
        ("090-1234-5678,", ","),
        ("090\u200b1234\u200b5678", "\u200b"),  # zero-width space
        ("090-1234\n5678", "\n"),
        ("\u00b9090-1234-5678", "\u00b9"),  # superscript one
    ],
)
def test_other_characters_are_refused_and_named(text: str, char: str) -> None:
    with pytest.raises(phone.InvalidPhone, match="is not accepted") as info:
        phone.normalize(text, "JP")
    assert repr(char) in str(info.value)


def test_digits_of_other_scripts_are_refused() -> None:
    # phonenumbers reads Arabic-Indic digits; nobody types a Japanese number so.
    with pytest.raises(phone.InvalidPhone, match="digits 0-9"):
        phone.normalize("\u0660\u0669\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668", "JP")


@pytest.mark.parametrize("text", ["090+1234-5678", "++819012345678", "+81+9012345678", "81+9012345678"])
def test_a_plus_only_comes_first(text: str) -> None:
    with pytest.raises(phone.InvalidPhone, match="'\\+' may only come first"):
        phone.normalize(text, "JP")


def test_an_extension_phonenumbers_finds_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    read = phonenumbers.parse

    def with_extension(text: str, region: str) -> phonenumbers.PhoneNumber:
        number = read(text, region)
        number.extension = "9"
        return number

    monkeypatch.setattr(phonenumbers, "parse", with_extension)

    with pytest.raises(phone.InvalidPhone, match="extensions cannot be called"):
        phone.normalize("090-1234-5678", "JP")


# --- line types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("090-1234-5678", "mobile"),
        ("03-1234-5678", "fixed"),
        ("050-1234-5678", "ip"),
        ("0120-123-456", "toll_free"),
        ("0800-123-4567", "toll_free"),
        ("0570-123-456", "uan"),  # Navi Dial
        ("0990-123-456", "premium_rate"),  # Dial Q2
        ("020-4123-4567", "pager"),
        ("0600-123-456", "personal"),
        ("+33 8 84 01 23 45", "shared_cost"),
        ("+49 177 99 1234567", "voicemail"),
        ("+1 415 555 2671", "fixed_or_mobile"),
    ],
)
def test_every_valid_number_is_valid_whatever_its_line_type(text: str, kind: str) -> None:
    # Which line types are called is a policy (limits.allowed_line_types), not validity.
    e164 = phone.normalize(text, "JP")

    assert phone.line_type(e164) == kind


def test_line_type_names_cover_every_phonenumbers_type_once() -> None:
    types = {v for k, v in vars(phonenumbers.PhoneNumberType).items() if k.isupper()}

    assert set(phone.TYPE_NAMES) == types
    assert len(set(phone.TYPE_NAMES.values())) == len(types)
    assert tuple(phone.TYPE_NAMES.values()) == phone.LINE_TYPES
    # The names the API and the usage report have always used.
    assert {"mobile", "fixed", "fixed_or_mobile", "ip", "toll_free", "personal", "unknown"} <= set(phone.LINE_TYPES)


@pytest.mark.parametrize("text", ["0990-123-456", "0570-123-456", "020-4123-4567", "+33 8 84 01 23 45"])
def test_a_caller_id_is_never_a_number_a_callback_costs_or_reaches_nobody_at(text: str) -> None:
    with pytest.raises(phone.InvalidPhone, match="never presented as a caller ID"):
        phone.caller_id_e164(text, "JP")


@pytest.mark.parametrize(
    ("text", "e164"),
    [("03-1234-5678", "+81312345678"), ("0120-123-456", "+81120123456"), ("050-1234-5678", "+815012345678")],
)
def test_a_caller_id_may_be_fixed_ip_or_toll_free(text: str, e164: str) -> None:
    assert phone.caller_id_e164(text, "JP") == e164


def test_a_caller_id_with_letters_is_refused() -> None:
    with pytest.raises(phone.InvalidPhone, match="letters are not accepted"):
        phone.caller_id_e164("03-ABCD-EFGH", "JP")


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
def test_caller_id_is_written_like_the_dialled_numbers(
    caller_id: str, number_format: config.NumberFormat, expected: str
) -> None:
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
        # A premium-rate number is not called, but a trunk may still present it.
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
