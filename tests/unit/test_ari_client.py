from __future__ import annotations

import base64

import pytest

from ivr_auth import errors
from ivr_auth.ari import client


def test_authorization_is_http_basic() -> None:
    assert client.authorization("ivr-auth", "s3cret") == "Basic aXZyLWF1dGg6czNjcmV0"


@pytest.mark.parametrize(("username", "password"), [("user", "pa:ss"), ("ユーザー", "パスワード"), ("u", "")])
def test_authorization_round_trips(username: str, password: str) -> None:
    scheme, token = client.authorization(username, password).split(" ")

    assert scheme == "Basic"
    assert base64.b64decode(token, validate=True).decode() == f"{username}:{password}"


def test_401_says_the_credentials_were_refused_and_hides_the_body() -> None:
    exc = client._error("GET", "asterisk/info", 401, b'{"message": "Authentication required"}')

    assert type(exc) is errors.AriError
    assert exc.status == 401
    assert str(exc) == "ARI refused the credentials (HTTP 401) for GET asterisk/info"


def test_json_message_is_extracted() -> None:
    exc = client._error("DELETE", "channels/c1", 404, b'{"message": "Channel not found"}')

    assert exc.status == 404
    assert str(exc) == "ARI DELETE channels/c1: HTTP 404 Channel not found"


def test_json_message_may_be_non_ascii() -> None:
    exc = client._error("POST", "channels", 400, '{"message": "不正な番号"}'.encode())

    assert str(exc) == "ARI POST channels: HTTP 400 不正な番号"


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (b"Internal Server Error\n", "Internal Server Error"),
        (b'{"error": "Bad"}', '{"error": "Bad"}'),
        (b'["not", "an", "object"]', '["not", "an", "object"]'),
        (b"null", "null"),
        (b"\xff\xfebroken", "\ufffd\ufffdbroken"),
    ],
)
def test_body_without_a_json_message_is_shown_as_text(body: bytes, shown: str) -> None:
    exc = client._error("POST", "channels", 500, body)

    assert exc.status == 500
    assert str(exc) == f"ARI POST channels: HTTP 500 {shown}"


def test_empty_body_leaves_no_trailing_space() -> None:
    exc = client._error("POST", "channels/c1/play", 422, b"")

    assert str(exc) == "ARI POST channels/c1/play: HTTP 422"
    assert exc.status == 422


def test_ari_errors_are_project_errors_but_not_unavailability() -> None:
    exc = client._error("GET", "channels", 500, b"")

    assert isinstance(exc, errors.IvrAuthError)
    assert not isinstance(exc, errors.AriUnavailable)


def test_503_from_an_asterisk_shutting_down_is_unavailability_with_its_html_stripped() -> None:
    body = b"<html><head><title>503 Service Unavailable</title></head><body><p>Shutdown in progress</p></body></html>"

    exc = client._error("POST", "channels", 503, body)

    assert isinstance(exc, errors.AriUnavailable)
    assert exc.status == 503
    assert str(exc) == "ARI POST channels: HTTP 503 503 Service Unavailable Shutdown in progress"
