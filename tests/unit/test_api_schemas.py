"""The API's request checks: every field, every refusal, every default."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import pytest

from ivr_auth import config
from ivr_auth.api import schemas

CFG = config.Config()
JP_MOBILE = "+819012345678"
US_NUMBER = "+12015550123"
UK_NUMBER = "+442079460000"
# Digits to str.isdigit(), not to a telephone keypad.
FULLWIDTH_DIGITS = "\uff11\uff12\uff13\uff14"
ARABIC_INDIC_DIGITS = "\u0661\u0662\u0663\u0664"


def create(body: dict[str, Any], cfg: config.Config = CFG, tenant_language: str | None = None) -> schemas.CreateRequest:
    return schemas.parse_create(body, cfg, tenant_language=tenant_language)


def refused(body: dict[str, Any], cfg: config.Config = CFG) -> schemas.ApiError:
    with pytest.raises(schemas.ApiError) as info:
        create(body, cfg)
    return info.value


def minimal(**fields: Any) -> dict[str, Any]:
    return {"phone": JP_MOBILE, "method": "dtmf", **fields}


# --- decode_body --------------------------------------------------------------------


def test_decode_body_returns_the_object() -> None:
    assert schemas.decode_body(b' {"phone": "+81", "n": [1, 2]} ') == {"phone": "+81", "n": [1, 2]}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   \n",
        b"{",
        b"{'phone': 1}",
        b'{"a": 1,}',
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b"\xff\xfe{}",
        b'{"a": 1} trailing',
        b'{"n": ' + b"9" * 5000 + b"}",  # longer than Python will read as an int
        b"[" * 20000 + b"]" * 20000,  # deeper than the parser's recursion limit
    ],
)
def test_decode_body_refuses_what_is_not_json(raw: bytes) -> None:
    with pytest.raises(schemas.ApiError) as info:
        schemas.decode_body(raw)
    assert (info.value.status, info.value.code) == (400, "invalid_json")


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"[]", "an array"), (b'"x"', "a string"), (b"3", "a number"), (b"null", "null"), (b"true", "a boolean")],
)
def test_decode_body_wants_an_object(raw: bytes, kind: str) -> None:
    with pytest.raises(schemas.ApiError) as info:
        schemas.decode_body(raw)
    assert (info.value.status, info.value.code) == (400, "invalid_body")
    assert kind in info.value.message


def test_canonical_ignores_key_order_and_spacing() -> None:
    a = schemas.decode_body(b'{"method": "dtmf", "phone": "+819012345678"}')
    b = schemas.decode_body(b'{ "phone":"+819012345678",\n "method":"dtmf" }')
    assert schemas.canonical(a) == schemas.canonical(b) == b'{"method":"dtmf","phone":"+819012345678"}'
    assert schemas.canonical(a) != schemas.canonical({**a, "ttl_seconds": 60})


# --- create: the whole body ---------------------------------------------------------


def test_minimal_body_takes_the_defaults() -> None:
    parsed = create(minimal())
    assert parsed == schemas.CreateRequest(
        phone=JP_MOBILE,
        line_type="mobile",
        method="dtmf",
        code=None,
        code_length=CFG.verification.code_length,
        language="ja",
        reference=None,
        callback_url=None,
        ttl_seconds=CFG.verification.ttl_seconds,
        max_code_attempts=CFG.verification.max_code_attempts,
    )


def test_every_field_given() -> None:
    parsed = create(
        {
            "phone": "03-1234-5678",
            "method": "dtmf",
            "code": "0042",
            "code_length": 4,
            "language": "en",
            "reference": "order-17",
            "callback_url": "https://example.com/hooks/ivr?x=1",
            "ttl_seconds": 600,
            "max_code_attempts": 5,
        }
    )
    assert parsed == schemas.CreateRequest(
        phone="+81312345678",
        line_type="fixed",
        method="dtmf",
        code="0042",
        code_length=4,
        language="en",
        reference="order-17",
        callback_url="https://example.com/hooks/ivr?x=1",
        ttl_seconds=600,
        max_code_attempts=5,
    )


def test_null_optional_fields_mean_not_given() -> None:
    body = minimal(
        code=None,
        code_length=None,
        language=None,
        reference=None,
        callback_url=None,
        ttl_seconds=None,
        max_code_attempts=None,
    )
    assert create(body) == create(minimal())


def test_repr_hides_code_and_number() -> None:
    parsed = create(minimal(code="987654"))
    assert "987654" not in repr(parsed)
    assert JP_MOBILE not in repr(parsed)
    assert "987654" not in repr(schemas.parse_check({"code": "987654"}))


def test_the_request_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        create(minimal()).code = "1234"  # type: ignore[misc]


@pytest.mark.parametrize("field", ["phone", "method"])
@pytest.mark.parametrize("value", ["<absent>", None])
def test_required_fields(field: str, value: object) -> None:
    body = minimal()
    if value == "<absent>":
        del body[field]
    else:
        body[field] = value
    error = refused(body)
    assert (error.status, error.code) == (422, "missing_field")
    assert error.message.startswith(f"{field}:")


def test_an_empty_object_names_the_first_missing_field() -> None:
    assert refused({}).message.startswith("phone:")


@pytest.mark.parametrize("field", ["phne", "Phone", "codeLength", "tenant_id"])
def test_unknown_fields_are_named(field: str) -> None:
    error = refused(minimal(**{field: "x"}))
    assert (error.status, error.code) == (422, "unknown_field")
    assert error.message.startswith(f"{field}:")


def test_a_long_unknown_field_name_is_cut_short() -> None:
    error = refused(minimal(**{"x" * 5000: 1}))
    assert error.code == "unknown_field"
    assert error.message.startswith("x" * 64 + "...:")
    assert len(error.message) < 300


def test_unknown_field_is_reported_before_other_problems() -> None:
    error = refused({"phone": 1, "zzz": 1, "aaa": 2})
    assert (error.code, error.message.split(":")[0]) == ("unknown_field", "aaa")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phone", 819012345678),
        ("phone", ["+819012345678"]),
        ("phone", True),
        ("method", 1),
        ("method", {"name": "dtmf"}),
        ("code", 123456),
        ("code", ["1", "2", "3", "4"]),
        ("code_length", "6"),
        ("code_length", 6.0),
        ("code_length", True),
        ("language", 1),
        ("language", ["ja"]),
        ("reference", 17),
        ("reference", {"id": 1}),
        ("callback_url", 1),
        ("callback_url", False),
        ("ttl_seconds", "300"),
        ("ttl_seconds", 300.5),
        ("ttl_seconds", True),
        ("max_code_attempts", False),
        ("max_code_attempts", "3"),
        ("max_code_attempts", [3]),
    ],
)
def test_wrong_json_types_are_named(field: str, value: object) -> None:
    error = refused(minimal(**{field: value}))
    assert (error.status, error.code) == (422, "invalid_field")
    assert error.message.startswith(f"{field}: expected")


# --- phone --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "e164", "line"),
    [
        ("+819012345678", "+819012345678", "mobile"),
        ("090-1234-5678", "+819012345678", "mobile"),
        (" 09012345678 ", "+819012345678", "mobile"),
        ("03-1234-5678", "+81312345678", "fixed"),
        ("+1 201 555 0123", US_NUMBER, "fixed_or_mobile"),
    ],
)
def test_phone_is_normalised(typed: str, e164: str, line: str) -> None:
    parsed = create(minimal(phone=typed))
    assert (parsed.phone, parsed.line_type) == (e164, line)


def test_national_format_follows_the_default_country() -> None:
    us = config.with_overrides(CFG, default_country="US")
    assert create(minimal(phone="(201) 555-0123"), us).phone == US_NUMBER


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("", "E.164"),
        ("abc", "letters are not accepted ('a')"),
        ("---", "not a phone number"),
        ("12", "not a valid number"),
        ("+8190123456789", "not a valid number"),
        ("1" * 40, "E.164"),
        ("090-ABCD-EFGH", "phone: letters are not accepted ('A'); write the number in digits"),
        ("O90-1234-5678", "phone: letters are not accepted ('O' is a letter, not the digit 0)"),
        ("090-1234-5678 ext. 9", "phone: extensions cannot be called; give the number without its extension"),
        ("090-1234-5678#9", "extensions cannot be called"),
        ("03-1234-5678 \u5185\u7dda12", "extensions cannot be called"),
        ("*67 090-1234-5678", "phone: '*' is not accepted"),
    ],
)
def test_invalid_phone_uses_the_normaliser_message(typed: str, says: str) -> None:
    error = refused(minimal(phone=typed))
    assert (error.status, error.code) == (422, "invalid_phone")
    assert error.message.startswith("phone:")
    assert says in error.message


@pytest.mark.parametrize(
    ("typed", "e164", "line"),
    [
        ("\uff10\uff19\uff10\uff0d\uff11\uff12\uff13\uff14\uff0d\uff15\uff16\uff17\uff18", JP_MOBILE, "mobile"),
        ("\uff10\uff19\uff10\u30fc\uff11\uff12\uff13\uff14\u30fc\uff15\uff16\uff17\uff18", JP_MOBILE, "mobile"),
        ("\uff10\uff13\uff0d\uff11\uff12\uff13\uff14\uff0d\uff15\uff16\uff17\uff18", "+81312345678", "fixed"),
        # Valid numbers whatever their line type: whether they are called is
        # the tenant's policy (limits.check_destination, 403), not a 422.
        ("0120-123-456", "+81120123456", "toll_free"),
        ("0570-123-456", "+81570123456", "uan"),
        ("0990-123-456", "+81990123456", "premium_rate"),
        ("+1 900 234 5678", "+19002345678", "premium_rate"),
    ],
)
def test_full_width_input_and_every_line_type_are_read(typed: str, e164: str, line: str) -> None:
    parsed = create(minimal(phone=typed))
    assert (parsed.phone, parsed.line_type) == (e164, line)


# --- method -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dtmf", "voice", "inbound"])
def test_every_method_is_served(method: str) -> None:
    parsed = schemas.parse_create(minimal(method=method), CFG, tenant_language=None)
    assert parsed.method == method
    assert parsed.ask_code is False


def test_ask_code_for_inbound() -> None:
    parsed = schemas.parse_create(minimal(method="inbound", ask_code=True), CFG, tenant_language=None)
    assert parsed.ask_code is True


@pytest.mark.parametrize("method", ["dtmf", "voice"])
def test_ask_code_is_for_inbound_only(method: str) -> None:
    error = refused(minimal(method=method, ask_code=True))
    assert (error.status, error.code) == (422, "invalid_field")
    assert error.message.startswith("ask_code:")


@pytest.mark.parametrize("value", ["yes", 1, None.__class__.__name__, [], {}])
def test_ask_code_must_be_a_boolean(value: Any) -> None:
    error = refused(minimal(method="inbound", ask_code=value))
    assert error.message.startswith("ask_code: expected true or false")


@pytest.mark.parametrize("method", ["", "SMS", "DTMF", "dtmf ", "Voice"])
def test_unknown_methods(method: str) -> None:
    error = refused(minimal(method=method))
    assert (error.status, error.code) == (422, "invalid_method")
    assert error.message.startswith("method:")


# --- code and code_length -----------------------------------------------------------


@pytest.mark.parametrize("code", ["0000", "1234", "000000", "0123456789"])
def test_supplied_code_sets_the_length(code: str) -> None:
    parsed = create(minimal(code=code))
    assert (parsed.code, parsed.code_length) == (code, len(code))


@pytest.mark.parametrize(
    "code",
    [
        "",
        "123",
        "12345678901",
        "12a4",
        "12 34",
        " 1234",
        "-1234",
        "1234.",
        FULLWIDTH_DIGITS,
        ARABIC_INDIC_DIGITS,
        "12\u00b34",
        "+123",
    ],
)
def test_bad_codes(code: str) -> None:
    error = refused(minimal(code=code))
    assert (error.status, error.code) == (422, "invalid_code")
    assert error.message.startswith("code:")
    assert code not in error.message or not code  # the message never repeats a code


def test_code_and_code_length_must_agree() -> None:
    assert create(minimal(code="12345", code_length=5)).code_length == 5
    error = refused(minimal(code="12345", code_length=6))
    assert (error.status, error.code) == (422, "invalid_code")
    assert "code_length" in error.message
    assert "12345" not in error.message


@pytest.mark.parametrize("length", [4, 5, 8, 10])
def test_code_length_in_range(length: int) -> None:
    parsed = create(minimal(code_length=length))
    assert (parsed.code, parsed.code_length) == (None, length)


@pytest.mark.parametrize("length", [-1, 0, 3, 11, 100])
def test_code_length_out_of_range(length: int) -> None:
    error = refused(minimal(code_length=length))
    assert (error.status, error.code) == (422, "invalid_field")
    assert error.message.startswith("code_length:")


def test_code_length_default_follows_config() -> None:
    cfg = config.with_overrides(CFG, verification={"code_length": 8})
    assert create(minimal(), cfg).code_length == 8


# --- language -----------------------------------------------------------------------


@pytest.mark.parametrize("language", ["ja", "en"])
def test_requested_language(language: str) -> None:
    assert create(minimal(language=language, phone=US_NUMBER)).language == language


@pytest.mark.parametrize("language", ["", "fr", "JA", "ja-JP", "english"])
def test_unserved_language(language: str) -> None:
    error = refused(minimal(language=language))
    assert (error.status, error.code) == (422, "invalid_field")
    assert error.message.startswith("language:")


def test_requested_language_must_be_configured() -> None:
    only_en = config.with_overrides(CFG, languages=("en",), default_language="en")
    assert refused(minimal(language="ja"), only_en).message.startswith("language:")


def test_default_language_japanese_number() -> None:
    assert create(minimal(phone=JP_MOBILE)).language == "ja"


@pytest.mark.parametrize("number", [US_NUMBER, UK_NUMBER])
def test_default_language_foreign_number(number: str) -> None:
    assert create(minimal(phone=number)).language == "en"


def test_tenant_default_language_comes_first() -> None:
    assert create(minimal(phone=JP_MOBILE), tenant_language="en").language == "en"
    assert create(minimal(phone=US_NUMBER), tenant_language="ja").language == "ja"
    assert create(minimal(phone=US_NUMBER, language="en"), tenant_language="ja").language == "en"


def test_tenant_default_language_not_configured_is_passed_over() -> None:
    only_ja = config.with_overrides(CFG, languages=("ja",), default_language="ja")
    assert create(minimal(phone=US_NUMBER), only_ja, tenant_language="en").language == "ja"


def test_japanese_number_without_japanese_configured() -> None:
    only_en = config.with_overrides(CFG, languages=("en",), default_language="en")
    assert create(minimal(phone=JP_MOBILE), only_en).language == "en"


def test_foreign_number_without_english_falls_back_to_the_default() -> None:
    only_ja = config.with_overrides(CFG, languages=("ja",), default_language="ja")
    assert create(minimal(phone=US_NUMBER), only_ja).language == "ja"


def test_choose_language_directly() -> None:
    assert schemas.choose_language(None, JP_MOBILE, None, CFG) == "ja"
    assert schemas.choose_language(None, US_NUMBER, None, CFG) == "en"
    assert schemas.choose_language(None, US_NUMBER, "ja", CFG) == "ja"
    assert schemas.choose_language("en", JP_MOBILE, "ja", CFG) == "en"


# --- reference ----------------------------------------------------------------------


@pytest.mark.parametrize("reference", ["", "x", "注文-17", "r" * 128])
def test_reference_kept_as_given(reference: str) -> None:
    assert create(minimal(reference=reference)).reference == reference


@pytest.mark.parametrize("reference", ["a\x00b", "tab\there", "line\n", "\x7f", "\ud800", "x\udfff"])
def test_reference_refuses_what_the_database_cannot_hold(reference: str) -> None:
    error = refused(minimal(reference=reference))
    assert (error.status, error.code) == (422, "invalid_field")
    assert error.message.startswith("reference:")


def test_reference_too_long() -> None:
    error = refused(minimal(reference="r" * 129))
    assert (error.status, error.code) == (422, "invalid_field")
    assert error.message.startswith("reference:")


# --- callback_url -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "http://127.0.0.1:8080/hook",
        "https://[::1]:8443/x?a=b#frag",
        "https://user:pw@example.com/",
        "https://example.com/" + "p" * (2048 - len("https://example.com/")),
    ],
)
def test_callback_url_accepted(url: str) -> None:
    assert create(minimal(callback_url=url)).callback_url == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "example.com/hook",
        "ftp://example.com/hook",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "https://",
        "https:///path",
        "https://:443/path",
        "https://example.com:99999/",
        "https://example.com:port/",
        "https://[::1/",
        "https://exa mple.com/",
        "https://example.com/a\nb",
        "https://exämple.com/",
        "https://example.com/" + "p" * (2049 - len("https://example.com/")),
    ],
)
def test_callback_url_refused(url: str) -> None:
    error = refused(minimal(callback_url=url))
    assert (error.status, error.code) == (422, "invalid_field")
    assert error.message.startswith("callback_url:")


# --- ttl_seconds and max_code_attempts ---------------------------------------------


@pytest.mark.parametrize("ttl", [30, 31, 300, 3600])
def test_ttl_in_range(ttl: int) -> None:
    assert create(minimal(ttl_seconds=ttl)).ttl_seconds == ttl


@pytest.mark.parametrize("ttl", [-1, 0, 29, 3601, 10**12])
def test_ttl_out_of_range(ttl: int) -> None:
    error = refused(minimal(ttl_seconds=ttl))
    assert (error.status, error.code) == (422, "invalid_field")
    assert error.message.startswith("ttl_seconds:")


def test_ttl_bounds_and_default_follow_config() -> None:
    cfg = config.with_overrides(CFG, verification={"ttl_seconds": 120, "max_ttl_seconds": 600})
    assert create(minimal(), cfg).ttl_seconds == 120
    assert create(minimal(ttl_seconds=600), cfg).ttl_seconds == 600
    assert refused(minimal(ttl_seconds=601), cfg).message.startswith("ttl_seconds:")


@pytest.mark.parametrize("attempts", [1, 3, 10])
def test_max_code_attempts_in_range(attempts: int) -> None:
    assert create(minimal(max_code_attempts=attempts)).max_code_attempts == attempts


@pytest.mark.parametrize("attempts", [-3, 0, 11])
def test_max_code_attempts_out_of_range(attempts: int) -> None:
    error = refused(minimal(max_code_attempts=attempts))
    assert (error.status, error.code) == (422, "invalid_field")
    assert error.message.startswith("max_code_attempts:")


def test_max_code_attempts_default_follows_config() -> None:
    cfg = config.with_overrides(CFG, verification={"max_code_attempts": 5})
    assert create(minimal(), cfg).max_code_attempts == 5


# --- check --------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["0000", "123456", "0123456789"])
def test_check_body(code: str) -> None:
    assert schemas.parse_check({"code": code}).code == code


@pytest.mark.parametrize("code", ["", "123", "12345678901", "12a456", FULLWIDTH_DIGITS, " 1234"])
def test_check_bad_code(code: str) -> None:
    with pytest.raises(schemas.ApiError) as info:
        schemas.parse_check({"code": code})
    assert (info.value.status, info.value.code) == (422, "invalid_code")
    assert info.value.message.startswith("code:")


@pytest.mark.parametrize(
    ("body", "error_code"),
    [
        ({}, "missing_field"),
        ({"code": None}, "missing_field"),
        ({"code": 123456}, "invalid_field"),
        ({"code": True}, "invalid_field"),
        ({"code": "123456", "extra": 1}, "unknown_field"),
    ],
)
def test_check_body_problems(body: dict[str, Any], error_code: str) -> None:
    with pytest.raises(schemas.ApiError) as info:
        schemas.parse_check(body)
    assert (info.value.status, info.value.code) == (422, error_code)


# --- headers and ids ----------------------------------------------------------------


@pytest.mark.parametrize("key", ["a", "order-17", "k" * 255, "with space", "!~", str(uuid.uuid4())])
def test_idempotency_key_accepted(key: str) -> None:
    assert schemas.parse_idempotency_key([key]) == key


def test_idempotency_key_absent() -> None:
    assert schemas.parse_idempotency_key([]) is None


@pytest.mark.parametrize("values", [[""], ["k" * 256], ["tab\there"], ["é"], ["\x7f"], ["a", "b"], ["a", "a"]])
def test_idempotency_key_refused(values: list[str]) -> None:
    with pytest.raises(schemas.ApiError) as info:
        schemas.parse_idempotency_key(values)
    assert (info.value.status, info.value.code) == (400, "invalid_idempotency_key")
    assert info.value.message.startswith("Idempotency-Key:")


@pytest.mark.parametrize(
    "value",
    [
        "application/json",
        "APPLICATION/JSON",
        " application/json ",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/Json ; Charset = Utf-8",
        'application/json; charset="utf-8"',
        "application/json;",
        "application/json; profile=x",
    ],
)
def test_json_content_type_accepted(value: str) -> None:
    schemas.check_json_content_type([value])


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ([], "Content-Type: missing;"),
        ([""], "Content-Type: '' is not accepted;"),
        (["text/plain"], "Content-Type: 'text/plain' is not accepted;"),
        (["text/plain; charset=utf-8"], "'text/plain' is not accepted"),
        (["application/x-www-form-urlencoded"], "'application/x-www-form-urlencoded' is not accepted"),
        (["multipart/form-data; boundary=x"], "'multipart/form-data' is not accepted"),
        (["application/jsonp"], "'application/jsonp' is not accepted"),
        (["application/merge-patch+json"], "'application/merge-patch+json' is not accepted"),
        (["json"], "'json' is not accepted"),
        (["application/json; charset=latin-1"], "Content-Type: charset 'latin-1' is not accepted;"),
        (["application/json; charset=utf-16"], "charset 'utf-16' is not accepted"),
        (["application/json; charset=utf8"], "charset 'utf8' is not accepted"),
        (["application/json; charset="], "charset '' is not accepted"),
        (["application/json; charset=utf-8; charset=latin-1"], "charset 'latin-1' is not accepted"),
        (["application/json", "application/json"], "Content-Type: send the header once;"),
    ],
)
def test_other_content_types_are_415(values: list[str], says: str) -> None:
    with pytest.raises(schemas.ApiError) as info:
        schemas.check_json_content_type(values)
    assert (info.value.status, info.value.code) == (415, "unsupported_media_type")
    assert says in info.value.message
    assert info.value.message.endswith("with Content-Type: application/json")


def test_content_type_echo_is_short_and_printable() -> None:
    with pytest.raises(schemas.ApiError) as info:
        schemas.check_json_content_type(["text/\udcff" + "x" * 500])
    assert "'text/?" + "x" * (schemas.MAX_FIELD_NAME_ECHO - 6) + "...'" in info.value.message
    assert len(info.value.message) < 200


@pytest.mark.parametrize(
    ("values", "key"),
    [
        (["Bearer ivra_abcdefgh_secret"], "ivra_abcdefgh_secret"),
        (["bearer ivra_abcdefgh_secret"], "ivra_abcdefgh_secret"),
        (["BEARER  ivra_abcdefgh_secret "], "ivra_abcdefgh_secret"),
        (["Bearer x"], "x"),
    ],
)
def test_bearer_token(values: list[str], key: str) -> None:
    assert schemas.parse_bearer(values) == key


@pytest.mark.parametrize(
    "values",
    [
        [],
        [""],
        ["Bearer"],
        ["Bearer "],
        ["Basic dXNlcjpwdw=="],
        ["ivra_abcdefgh_secret"],
        ["Bearer two words"],
        ["Bearer ключ"],
        ["Bearer \udcff"],  # an undecodable header byte, as aiohttp hands it over
        ["Bearer " + "k" * 257],
        ["Bearer a", "Bearer a"],
    ],
)
def test_bearer_token_malformed(values: list[str]) -> None:
    assert schemas.parse_bearer(values) is None


def test_verification_id() -> None:
    value = uuid.uuid4()
    assert schemas.parse_verification_id(str(value)) == value
    assert schemas.parse_verification_id(str(value).upper()) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "not-a-uuid",
        uuid.uuid4().hex,
        "12345678123456781234-5678-1234-5678",
        "{" + str(uuid.uuid4()) + "}",
        "urn:uuid:" + str(uuid.uuid4()),
        "g" * 36,
    ],
)
def test_verification_id_malformed(text: str) -> None:
    assert schemas.parse_verification_id(text) is None


def test_api_error_carries_status_code_message_headers() -> None:
    error = schemas.ApiError(401, "unauthorized", "no", headers={"WWW-Authenticate": "Bearer"})
    assert (error.status, error.code, error.message, str(error)) == (401, "unauthorized", "no", "no")
    assert error.headers == {"WWW-Authenticate": "Bearer"}


def test_body_round_trip_through_json() -> None:
    # What the handler does: decode, then parse.
    raw = json.dumps(minimal(code_length=8, language="en")).encode()
    parsed = create(schemas.decode_body(raw))
    assert (parsed.code_length, parsed.language) == (8, "en")
