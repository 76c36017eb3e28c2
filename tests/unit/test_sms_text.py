from __future__ import annotations

import pytest

from ivr_auth.sms import gsm, text


def test_the_alphabet_has_128_septets_and_ten_extension_characters() -> None:
    assert len(gsm.BASIC) == 128
    assert gsm.BASIC[0x00] == "@"
    assert gsm.BASIC[0x1B] == "\x1b"
    assert gsm.BASIC[0x7F] == "à"
    assert len(gsm.EXTENSION) == 10
    assert gsm.to_septets("€") == [(0x1B, 0x65)]


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("IVRAUTH", "alphanumeric"),
        ("My Bank", "alphanumeric"),
        ("ABCDEFGHIJK", "alphanumeric"),
        ("ABCDEFGHIJKL", None),
        ("+819012345678", "numeric"),
        ("819012345678", "numeric"),
        ("123456789012345", "numeric"),
        ("1234567890123456", None),
        ("+IVR", None),
        ("", None),
        ("認証", None),
        (" IVR", None),
        ("IVR\n", None),
    ],
)
def test_sender_ids(source: str, kind: str | None) -> None:
    assert gsm.sender_kind(source) == kind


def test_japanese_message() -> None:
    body = text.render("ja", "テスト銀行", "123456", 5)
    assert body == "【テスト銀行】認証コード: 123456\nこのコードは5分間有効です。他人に教えないでください。"
    assert text.encode(body, 1).encoding == "ucs2"


def test_english_message_fits_one_gsm_part() -> None:
    body = text.render("en", "Example Bank", "048213", 5)
    assert body == "Example Bank verification code: 048213. Valid for 5 minutes. Do not share it."
    message = text.encode(body, 1)
    assert message.encoding == "gsm7"
    assert message.parts == (text.Part(gsm_bytes(body), 0, 0),)
    assert text.render("en", "", "1234", 1) == "Your verification code: 1234. Valid for 1 minute. Do not share it."


@pytest.mark.parametrize(
    "name",
    [
        "https://evil.example/x",
        "www.example",
        "example.com",
        "pay.example.co.jp",
        "EXAMPLE.COM",
        "help@example",
        "a://b",
    ],
)
def test_a_service_name_that_looks_like_a_link_is_left_out(name: str) -> None:
    assert text.render("en", name, "1234", 5).startswith("Your verification code: 1234.")
    assert text.render("ja", name, "1234", 5).startswith("認証コード: 1234\n")


def test_service_name_is_one_line_and_bounded() -> None:
    assert text.clean_service_name("  Example\n\tBank  ") == "Example Bank"
    assert text.clean_service_name("Example Inc.") == "Example Inc."
    assert len(text.clean_service_name("x" * 100)) == text.MAX_SERVICE_NAME


def gsm_bytes(body: str) -> bytes:
    return bytes(s for c in gsm.to_septets(body) for s in c)


@pytest.mark.parametrize(("length", "parts"), [(160, 1), (161, 2), (306, 2), (307, 3)])
def test_gsm_boundaries(length: int, parts: int) -> None:
    body = ("0123456789" * 40)[:length]
    message = text.encode(body, 7)
    assert message.encoding == "gsm7"
    assert len(message.parts) == parts
    assert text.decode(message) == body
    if parts == 1:
        assert message.parts[0] == text.Part(body.encode("ascii"), 0, 0)
    else:
        for n, part in enumerate(message.parts, start=1):
            assert part.short_message[:6] == bytes((5, 0, 3, 7, parts, n))
            assert part.esm_class == 0x40
            assert part.data_coding == 0
            assert len(part.short_message) - 6 <= 153
        assert len(message.parts[0].short_message) == 6 + 153


def test_extension_characters_take_two_septets() -> None:
    body = "€" * 80  # 160 septets: one part
    message = text.encode(body, 0)
    assert message.encoding == "gsm7"
    assert len(message.parts) == 1
    assert message.parts[0].short_message == bytes((0x1B, 0x65)) * 80
    assert text.decode(text.encode("€" * 81, 0)) == "€" * 81
    assert len(text.encode("€" * 81, 0).parts) == 2


def test_an_escape_pair_is_never_split() -> None:
    body = "a" * 152 + "{" + "b" * 10  # the escape would be septet 153
    message = text.encode(body, 3)
    first = message.parts[0].short_message[6:]
    assert first == b"a" * 152
    assert message.parts[1].short_message[6:8] == bytes((0x1B, 0x28))
    assert text.decode(message) == body


@pytest.mark.parametrize(("length", "parts"), [(70, 1), (71, 2), (134, 2), (135, 3)])
def test_ucs2_boundaries(length: int, parts: int) -> None:
    body = ("あいうえおかきくけこ" * 20)[:length]
    message = text.encode(body, 300)
    assert message.encoding == "ucs2"
    assert len(message.parts) == parts
    assert text.decode(message) == body
    if parts == 1:
        assert message.parts[0] == text.Part(body.encode("utf-16-be"), 0, 8)
    else:
        assert all(p.short_message[:6] == bytes((5, 0, 3, 300 % 256, parts, n)) for n, p in enumerate(message.parts, 1))
        assert all(p.esm_class == 0x40 and p.data_coding == 8 for p in message.parts)
        assert len(message.parts[0].short_message) == 6 + 67 * 2


def test_one_character_outside_the_alphabet_makes_it_ucs2() -> None:
    assert text.encode("code 1234 ✓", 0).encoding == "ucs2"
    assert text.encode("code 1234 é", 0).encoding == "gsm7"  # é is in the alphabet
    assert text.encode("code 1234 ê", 0).encoding == "ucs2"  # ê is not


def test_surrogate_pairs_are_never_split() -> None:
    body = "a" * 66 + "😀" * 5  # 66 + 10 units: the first pair would straddle unit 67
    message = text.encode(body, 0)
    assert len(message.parts) == 2
    first = message.parts[0].short_message[6:]
    assert len(first) == 66 * 2
    assert text.decode(message) == body
    assert text.encode("😀" * 35, 0).parts[0].short_message == ("😀" * 35).encode("utf-16-be")  # 70 units
    assert len(text.encode("😀" * 36, 0).parts) == 2


def test_japanese_100_characters_make_two_parts() -> None:
    body = ("認証コードは一二三四五六です。" * 10)[:100]
    message = text.encode(body, 42)
    assert [len(p.short_message) for p in message.parts] == [6 + 134, 6 + 66]
    assert text.decode(message) == body


def test_the_real_japanese_message_is_one_part() -> None:
    body = text.render("ja", "テスト銀行", "123456", 10)
    assert len(body) <= 70
    assert len(text.encode(body, 0).parts) == 1


def test_more_than_255_parts_is_refused() -> None:
    assert len(text.encode("x" * 153 * 255, 0).parts) == 255
    with pytest.raises(ValueError, match="at most 255"):
        text.encode("x" * (153 * 255 + 1), 0)
