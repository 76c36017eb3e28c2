from __future__ import annotations

import hashlib
import hmac
import string
import uuid

import pytest

from ivr_auth import crypto, errors

SECRET = "s" * 32
OTHER_SECRET = "t" * 32
KEYS = crypto.Keys.from_secret(SECRET)
OTHER_KEYS = crypto.Keys.from_secret(OTHER_SECRET)
REQUEST = uuid.UUID("00000000-0000-4000-8000-000000000001")
OTHER_REQUEST = uuid.UUID("00000000-0000-4000-8000-000000000002")
BASE32_LOWER = set(string.ascii_lowercase + "234567")


# --- codes ----------------------------------------------------------------------------


def test_code_hash_is_stable_for_one_request_and_secret() -> None:
    assert KEYS.code_hash(REQUEST, "123456") == KEYS.code_hash(REQUEST, "123456")
    assert len(KEYS.code_hash(REQUEST, "123456")) == 32


def test_code_hash_is_keyed_per_request_id() -> None:
    assert KEYS.code_hash(REQUEST, "123456") != KEYS.code_hash(OTHER_REQUEST, "123456")


def test_code_hash_is_keyed_per_secret() -> None:
    assert KEYS.code_hash(REQUEST, "123456") != OTHER_KEYS.code_hash(REQUEST, "123456")


def test_code_hash_is_not_a_plain_hash_of_the_code() -> None:
    plain = {
        hashlib.sha256(b"123456").digest(),
        hashlib.sha256(f"{REQUEST}:123456".encode()).digest(),
        hmac.new(SECRET.encode(), f"{REQUEST}:123456".encode(), hashlib.sha256).digest(),
    }

    assert KEYS.code_hash(REQUEST, "123456") not in plain


def test_code_matches() -> None:
    stored = KEYS.code_hash(REQUEST, "123456")

    assert KEYS.code_matches(REQUEST, "123456", stored)
    # psycopg may hand bytea back as a memoryview or a bytearray.
    assert KEYS.code_matches(REQUEST, "123456", memoryview(stored))  # type: ignore[arg-type]
    assert KEYS.code_matches(REQUEST, "123456", bytearray(stored))  # type: ignore[arg-type]


# The last: the right code in full-width digits, as a Japanese IME may type it.
@pytest.mark.parametrize("code", ["123457", "12345", "1234567", "", "123456 ", "\uff11\uff12\uff13\uff14\uff15\uff16"])
def test_a_wrong_code_does_not_match(code: str) -> None:
    assert not KEYS.code_matches(REQUEST, code, KEYS.code_hash(REQUEST, "123456"))


def test_the_code_of_another_request_does_not_match() -> None:
    assert not KEYS.code_matches(OTHER_REQUEST, "123456", KEYS.code_hash(REQUEST, "123456"))
    assert not OTHER_KEYS.code_matches(REQUEST, "123456", KEYS.code_hash(REQUEST, "123456"))


def test_code_matches_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    stored = KEYS.code_hash(REQUEST, "123456")

    assert KEYS.code_matches(REQUEST, "123456", stored)
    assert not KEYS.code_matches(REQUEST, "654321", stored)
    assert len(calls) == 2
    assert all(b == stored for _, b in calls)


@pytest.mark.parametrize("length", range(1, 11))
def test_generate_code_has_the_length_and_only_ascii_digits(length: int) -> None:
    for _ in range(20):
        code = crypto.generate_code(length)
        assert len(code) == length
        assert set(code) <= set("0123456789")


def test_generate_code_is_random() -> None:
    assert len({crypto.generate_code(6) for _ in range(50)}) > 40


# --- sealed codes -----------------------------------------------------------------------


def test_seal_and_open_round_trip() -> None:
    sealed = KEYS.seal_code(REQUEST, "0123456789")

    assert KEYS.open_code(REQUEST, sealed) == "0123456789"
    assert KEYS.open_code(REQUEST, memoryview(sealed)) == "0123456789"  # type: ignore[arg-type]
    assert b"0123456789" not in sealed


def test_each_seal_has_its_own_nonce() -> None:
    assert KEYS.seal_code(REQUEST, "123456") != KEYS.seal_code(REQUEST, "123456")


def test_a_seal_is_bound_to_its_request_id() -> None:
    sealed = KEYS.seal_code(REQUEST, "123456")

    with pytest.raises(errors.IvrAuthError, match="did not open"):
        KEYS.open_code(OTHER_REQUEST, sealed)


def test_another_secret_cannot_open_a_seal() -> None:
    sealed = KEYS.seal_code(REQUEST, "123456")

    with pytest.raises(errors.IvrAuthError, match="did not open"):
        OTHER_KEYS.open_code(REQUEST, sealed)


@pytest.mark.parametrize("position", [0, 11, 12, -1])
def test_a_tampered_seal_does_not_open(position: int) -> None:
    sealed = bytearray(KEYS.seal_code(REQUEST, "123456"))
    sealed[position] ^= 0x01

    with pytest.raises(errors.IvrAuthError, match="did not open"):
        KEYS.open_code(REQUEST, bytes(sealed))


@pytest.mark.parametrize("length", [12, 20, 27])
def test_a_truncated_seal_does_not_open(length: int) -> None:
    sealed = KEYS.seal_code(REQUEST, "123456")[:length]

    with pytest.raises(errors.IvrAuthError, match="did not open"):
        KEYS.open_code(REQUEST, sealed)


@pytest.mark.parametrize("length", [0, 5])
def test_a_seal_too_short_for_its_nonce_raises_the_projects_error(length: int) -> None:
    sealed = KEYS.seal_code(REQUEST, "123456")[:length]

    with pytest.raises(errors.IvrAuthError):
        KEYS.open_code(REQUEST, sealed)


# --- API keys ----------------------------------------------------------------------------


def test_new_api_key_format() -> None:
    key, prefix = crypto.new_api_key()
    tag, found_prefix, secret = key.split("_", 2)

    assert tag == "ivra"
    assert found_prefix == prefix
    assert len(prefix) == 8
    assert set(prefix) <= BASE32_LOWER
    assert len(secret) >= 43  # 32 random bytes, url-safe base64
    assert crypto.api_key_prefix(key) == prefix


def test_new_api_keys_differ() -> None:
    keys = [crypto.new_api_key() for _ in range(20)]

    assert len({k for k, _ in keys}) == 20
    assert len({p for _, p in keys}) == 20


def test_api_key_prefix_allows_underscores_in_the_secret() -> None:
    # token_urlsafe uses "_" too; only the first two separate the parts.
    assert crypto.api_key_prefix("ivra_abcdefgh_" + "se_cr_et" * 5) == "abcdefgh"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "ivra",
        "ivra_abcdefgh",
        "ivra_abcdefghsecret",
        "ivrb_abcdefgh_secret",
        "IVRA_abcdefgh_secret",
        "ivra_abcdefg_secret",
        "ivra_abcdefghi_secret",
        "ivra__secret",
        "Bearer ivra_abcdefgh_secret",
        "_ivra_abcdefgh_secret",
    ],
)
def test_api_key_prefix_of_a_malformed_key_is_none(key: str) -> None:
    assert crypto.api_key_prefix(key) is None


@pytest.mark.parametrize("key", ["ivra_abcdefgh_", "ivra_!!!!!!!!_secret", "ivra_abcd efg_secret"])
def test_api_key_prefix_of_a_key_that_new_api_key_cannot_make_is_none(key: str) -> None:
    assert crypto.api_key_prefix(key) is None


def test_api_key_hash_is_keyed() -> None:
    key, _ = crypto.new_api_key()

    assert KEYS.api_key_hash(key) == KEYS.api_key_hash(key)
    assert KEYS.api_key_hash(key) != OTHER_KEYS.api_key_hash(key)
    assert KEYS.api_key_hash(key) != hashlib.sha256(key.encode()).digest()


# --- keys and the server secret --------------------------------------------------------


def test_request_hash_is_keyed() -> None:
    body = b'{"phone": "+819012345678", "method": "dtmf", "code": "1234"}'

    assert KEYS.request_hash(body) == KEYS.request_hash(body)
    assert KEYS.request_hash(body) != OTHER_KEYS.request_hash(body)
    assert KEYS.request_hash(body) != hashlib.sha256(body).digest()
    assert KEYS.request_hash(body) != KEYS.request_hash(body + b" ")


def test_each_purpose_has_its_own_key() -> None:
    derived = [KEYS.code_key, KEYS.seal_key, KEYS.api_key_key, KEYS.request_key]

    assert len(set(derived)) == 4
    assert SECRET.encode() not in derived
    assert all(len(k) == 32 for k in derived)


def test_repr_of_keys_hides_the_material() -> None:
    for text in (repr(KEYS), str(KEYS), f"{KEYS!r}", repr([KEYS])):
        assert "hidden" in text
        for material in (KEYS.code_key, KEYS.seal_key, KEYS.api_key_key, KEYS.request_key):
            assert material.hex() not in text
            assert repr(material) not in text
        assert "code_key" not in text
        assert SECRET not in text


@pytest.mark.parametrize("secret", ["", "short", "x" * 31])
def test_a_secret_shorter_than_32_is_refused(secret: str) -> None:
    with pytest.raises(errors.ConfigError, match="server_secret"):
        crypto.Keys.from_secret(secret)


def test_a_secret_of_32_is_accepted() -> None:
    assert crypto.Keys.from_secret("x" * 32).code_key != crypto.Keys.from_secret("x" * 33).code_key


def test_generate_secret_is_long_enough() -> None:
    secret = crypto.generate_secret()

    assert len(secret) >= crypto.MIN_SECRET_LENGTH
    crypto.Keys.from_secret(secret)
    assert crypto.generate_secret() != secret
