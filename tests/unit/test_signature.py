"""Webhook signatures: what a receiver's check accepts and refuses."""

from __future__ import annotations

import pytest

from ivr_auth import signature

SECRET = "whsec-test-0123456789abcdefghijklmnopqrstuvwxyz"
BODY = b'{"id":"6f0c","status":"verified","event":{"id":"e1"}}'
NOW = 1_790_000_000


def test_a_signed_body_verifies() -> None:
    header = signature.sign(SECRET, BODY, NOW)

    assert header.startswith(f"t={NOW},v1=")
    assert signature.verify(SECRET, header, BODY, now=NOW) == NOW


def test_the_digest_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()

    assert signature.sign(SECRET, BODY, NOW) == f"t={NOW},v1={expected}"


@pytest.mark.parametrize(
    "body",
    [
        BODY.replace(b"verified", b"failed"),
        BODY + b" ",
        BODY[:-1],
        b"",
    ],
    ids=["changed", "appended", "truncated", "empty"],
)
def test_a_tampered_body_fails(body: bytes) -> None:
    header = signature.sign(SECRET, BODY, NOW)

    with pytest.raises(signature.InvalidSignature, match="does not match"):
        signature.verify(SECRET, header, body, now=NOW)


def test_another_secret_fails() -> None:
    header = signature.sign(SECRET, BODY, NOW)

    with pytest.raises(signature.InvalidSignature, match="does not match"):
        signature.verify(SECRET + "x", header, BODY, now=NOW)


def test_a_changed_timestamp_fails() -> None:
    digest = signature.sign(SECRET, BODY, NOW).split(",", 1)[1]

    with pytest.raises(signature.InvalidSignature, match="does not match"):
        signature.verify(SECRET, f"t={NOW + 1},{digest}", BODY, now=NOW)


@pytest.mark.parametrize("skew", [-300, -1, 0, 1, 300])
def test_clock_skew_within_the_tolerance(skew: int) -> None:
    header = signature.sign(SECRET, BODY, NOW)

    assert signature.verify(SECRET, header, BODY, now=NOW + skew) == NOW


@pytest.mark.parametrize("skew", [-301, 301, 86400])
def test_clock_skew_beyond_the_tolerance(skew: int) -> None:
    header = signature.sign(SECRET, BODY, NOW)

    with pytest.raises(signature.InvalidSignature, match="off"):
        signature.verify(SECRET, header, BODY, now=NOW + skew)


def test_the_tolerance_can_be_set() -> None:
    header = signature.sign(SECRET, BODY, NOW)

    assert signature.verify(SECRET, header, BODY, now=NOW + 900, tolerance=1000) == NOW
    with pytest.raises(signature.InvalidSignature):
        signature.verify(SECRET, header, BODY, now=NOW + 11, tolerance=10)


def test_any_of_several_v1_values_verifies() -> None:
    # A receiver may be sent two signatures while a secret is rotated.
    good = signature.sign(SECRET, BODY, NOW).split(",", 1)[1]

    assert signature.verify(SECRET, f"t={NOW},v1=deadbeef,{good}", BODY, now=NOW) == NOW


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (None, "no IVR-Auth-Signature"),
        ("", "no IVR-Auth-Signature"),
        ("v1=abc", "no timestamp"),
        (f"t=abc,v1={'0' * 64}", "no timestamp"),
        (f"t={NOW}", "no v1="),
        (f"t={NOW},v0=abc", "no v1="),
        ("garbage", "no timestamp"),
    ],
)
def test_malformed_headers_are_refused(header: str | None, why: str) -> None:
    with pytest.raises(signature.InvalidSignature, match=why):
        signature.verify(SECRET, header, BODY, now=NOW)
