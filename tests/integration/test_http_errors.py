"""What the API answers to requests its application never sees (refused by
aiohttp's HTTP parser: headers or URL too long, too many headers, not HTTP)
and to bodies that are not JSON. Served as ``ivr-auth run`` serves it: the
API's own runner on a real port, against the real Postgres; the malformed
requests are written as raw bytes."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ivr_auth import config, models
from ivr_auth import store as store_mod
from ivr_auth.api import app as api_app
from tests.integration.conftest import Conn
from tests.support import served
from tests.support.raw_http import exchange

pytestmark = pytest.mark.integration

# Limits high enough not to stand in the way here: tests/integration/test_limits.py tests them.
CFG = config.from_mapping({"limits": {"requests_per_minute": 10_000, "sends_per_phone": 10_000}})
BODY = {"phone": "+819012345678", "method": "dtmf"}
JSON_BODY = json.dumps(BODY).encode()
HEADER = "Idempotency-Key: "


@pytest.fixture
async def base_url(store: store_mod.Store, tenant: tuple[models.Tenant, str], db: Conn) -> AsyncIterator[str]:
    """The API served by its runner on a port of its own; the tenant and its
    requests are deleted afterwards."""
    try:
        async with served.on_port(api_app.make_app(CFG, store, {})) as url:
            yield url
    finally:
        await db.execute("DELETE FROM tenants WHERE id = %s", [tenant[0].id])


def create_request(key: str, *extra_headers: str) -> bytes:
    head = [
        "POST /v1/verifications HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {key}",
        "Content-Type: application/json",
        f"Content-Length: {len(JSON_BODY)}",
        *extra_headers,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + JSON_BODY


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def requests_of(db: Conn, tenant: tuple[models.Tenant, str]) -> int:
    cur = await db.execute("SELECT count(*) AS n FROM verifications WHERE tenant_id = %s", [tenant[0].id])
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


# --- refused by the HTTP parser -----------------------------------------------------


async def test_a_20_kb_idempotency_key_is_431_json_logged_once_without_traceback(
    base_url: str, tenant: tuple[models.Tenant, str], db: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await exchange(base_url, create_request(tenant[1], HEADER + "k" * 20_000))
    assert answer.status == 431
    error = answer.error()
    assert error["code"] == "headers_too_large"
    assert "kkkk" not in error["message"]
    assert not errors_logged(caplog)
    refusals = [r for r in caplog.records if r.name == api_app.__name__ and "headers_too_large" in r.getMessage()]
    assert len(refusals) == 1
    assert refusals[0].levelno == logging.INFO
    assert "127.0.0.1" in refusals[0].getMessage()
    assert "kkkk" not in caplog.text
    assert await requests_of(db, tenant) == 0


async def test_a_20_kb_url_is_414_json(base_url: str, caplog: pytest.LogCaptureFixture) -> None:
    answer = await exchange(base_url, b"GET /v1/verifications/" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status == 414
    error = answer.error()
    assert error["code"] == "uri_too_long"
    assert "aaaa" not in error["message"]
    assert not errors_logged(caplog)


async def test_the_request_line_limit(base_url: str) -> None:
    """A request line of exactly the limit reaches the application (a 404
    here); a URL one byte over the limit is 414 (aiohttp's C parser counts
    the URL, its Python parser the whole line)."""
    rest = b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    at_limit = api_app.MAX_REQUEST_LINE_BYTES - len("GET / HTTP/1.1")
    answer = await exchange(base_url, b"GET /" + b"a" * at_limit + rest)
    assert (answer.status, answer.error()["code"]) == (404, "not_found")
    answer = await exchange(base_url, b"GET /" + b"a" * api_app.MAX_REQUEST_LINE_BYTES + rest)
    assert (answer.status, answer.error()["code"]) == (414, "uri_too_long")


async def test_200_headers_are_431_json(base_url: str, caplog: pytest.LogCaptureFixture) -> None:
    headers = b"".join(b"X-Header-%d: v\r\n" % n for n in range(200))
    answer = await exchange(base_url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert answer.status == 431
    assert answer.error()["code"] == "headers_too_large"
    assert not errors_logged(caplog)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x01 this is not HTTP\r\n\r\n",
        b"HELLO\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
        b"POST /v1/verifications HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
    ids=["binary", "one word", "space in a header name", "Content-Length and chunked"],
)
async def test_what_is_not_http_is_400_json(base_url: str, raw: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await exchange(base_url, raw)
    assert answer.status == 400
    error = answer.error()
    assert error["code"] == "bad_request"
    assert "not HTTP" not in error["message"]
    assert not errors_logged(caplog)


# --- the application's own caps, at their boundaries --------------------------------


@pytest.mark.parametrize(
    ("length", "status", "code"),
    [
        (255, 201, None),
        (256, 400, "invalid_idempotency_key"),
        # Between the application's cap and the parser's: the application refuses it.
        (api_app.MAX_HEADER_FIELD_BYTES - len(HEADER), 400, "invalid_idempotency_key"),
        # Over the parser's limit: refused before the application.
        (api_app.MAX_HEADER_FIELD_BYTES + 1, 431, "headers_too_large"),
    ],
)
async def test_idempotency_key_length(
    base_url: str, tenant: tuple[models.Tenant, str], db: Conn, length: int, status: int, code: str | None
) -> None:
    answer = await exchange(base_url, create_request(tenant[1], HEADER + "k" * length, "Connection: close"))
    assert answer.status == status, answer.body
    if code is not None:
        assert answer.error()["code"] == code
    assert await requests_of(db, tenant) == (1 if status == 201 else 0)


@pytest.mark.parametrize(("length", "status"), [(128, 201), (129, 422)])
async def test_reference_length(
    base_url: str, http_session: aiohttp.ClientSession, tenant: tuple[models.Tenant, str], length: int, status: int
) -> None:
    resp = await http_session.post(
        f"{base_url}/v1/verifications",
        json=BODY | {"reference": "r" * length},
        headers={"Authorization": f"Bearer {tenant[1]}"},
    )
    data = await resp.json()
    assert resp.status == status, data
    if status == 201:
        assert data["reference"] == "r" * length
    else:
        assert data["error"]["code"] == "invalid_field"
        assert data["error"]["message"].startswith("reference:")


# --- bodies are JSON ----------------------------------------------------------------


async def post(
    session: aiohttp.ClientSession, url: str, key: str, body: bytes, content_type: str | None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    # Without it, aiohttp's client would label the bytes application/octet-stream.
    async with session.post(url, data=body, headers=headers, skip_auto_headers=["Content-Type"]) as resp:
        return resp.status, await resp.json()


REFUSED_TYPES = [
    None,
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "application/jsonp",
    "application/merge-patch+json",
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
]
ACCEPTED_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json;charset=UTF-8",
    'application/json; charset="utf-8"',
    "APPLICATION/JSON",
    "Application/Json ; Charset=Utf-8",
]


@pytest.mark.parametrize("content_type", REFUSED_TYPES)
async def test_create_with_another_body_type_is_415_and_creates_nothing(
    base_url: str, http_session: aiohttp.ClientSession, tenant: tuple[models.Tenant, str], db: Conn, content_type: str
) -> None:
    status, data = await post(http_session, f"{base_url}/v1/verifications", tenant[1], JSON_BODY, content_type)
    assert status == 415, data
    assert data["error"]["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in data["error"]["message"]
    if content_type is not None and content_type.startswith("application/json; charset="):
        assert f"charset '{content_type.rpartition('=')[2]}'" in data["error"]["message"]
    assert await requests_of(db, tenant) == 0


@pytest.mark.parametrize("content_type", REFUSED_TYPES)
async def test_check_with_another_body_type_is_415_and_checks_nothing(
    base_url: str, http_session: aiohttp.ClientSession, tenant: tuple[models.Tenant, str], db: Conn, content_type: str
) -> None:
    status, created = await post(http_session, f"{base_url}/v1/verifications", tenant[1], JSON_BODY, "application/json")
    assert status == 201, created
    right_code = json.dumps({"code": created["code"]}).encode()
    url = f"{base_url}/v1/verifications/{created['id']}/check"
    status, data = await post(http_session, url, tenant[1], right_code, content_type)
    assert status == 415, data
    assert data["error"]["code"] == "unsupported_media_type"
    cur = await db.execute("SELECT status FROM verifications WHERE id = %s", [created["id"]])
    assert await cur.fetchone() == {"status": "queued"}


@pytest.mark.parametrize("content_type", ACCEPTED_TYPES)
async def test_json_bodies_are_accepted(
    base_url: str, http_session: aiohttp.ClientSession, tenant: tuple[models.Tenant, str], content_type: str
) -> None:
    status, created = await post(http_session, f"{base_url}/v1/verifications", tenant[1], JSON_BODY, content_type)
    assert status == 201, created
    right_code = json.dumps({"code": created["code"]}).encode()
    url = f"{base_url}/v1/verifications/{created['id']}/check"
    status, data = await post(http_session, url, tenant[1], right_code, content_type)
    assert (status, data["verified"]) == (200, True)


async def test_cancel_needs_no_body_but_a_body_must_be_json(
    base_url: str, http_session: aiohttp.ClientSession, tenant: tuple[models.Tenant, str]
) -> None:
    _, created = await post(http_session, f"{base_url}/v1/verifications", tenant[1], JSON_BODY, "application/json")
    url = f"{base_url}/v1/verifications/{created['id']}/cancel"
    status, data = await post(http_session, url, tenant[1], b"cancel it", "text/plain")
    assert (status, data["error"]["code"]) == (415, "unsupported_media_type")
    status, data = await post(http_session, url, tenant[1], b"", None)
    assert (status, data["status"]) == (200, "canceled")


async def test_an_empty_json_body_is_still_invalid_json(
    base_url: str, http_session: aiohttp.ClientSession, tenant: tuple[models.Tenant, str]
) -> None:
    status, data = await post(http_session, f"{base_url}/v1/verifications", tenant[1], b"", "application/json")
    assert (status, data["error"]["code"]) == (400, "invalid_json")


async def test_a_body_that_cannot_be_decoded_is_400_not_500(
    base_url: str, http_session: aiohttp.ClientSession, tenant: tuple[models.Tenant, str]
) -> None:
    headers = {"Authorization": f"Bearer {tenant[1]}", "Content-Type": "application/json", "Content-Encoding": "gzip"}
    async with http_session.post(f"{base_url}/v1/verifications", data=JSON_BODY, headers=headers) as resp:
        data = await resp.json()
    assert (resp.status, data["error"]["code"]) == (400, "invalid_body"), data


async def test_415_is_counted_as_invalid(
    base_url: str, http_session: aiohttp.ClientSession, tenant: tuple[models.Tenant, str]
) -> None:
    async def invalid() -> float:
        async with http_session.get(f"{base_url}/metrics") as resp:
            text = await resp.text()
        line = 'ivr_auth_api_refusals_total{reason="invalid"} '
        return sum(float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line))

    before = await invalid()
    status, _ = await post(http_session, f"{base_url}/v1/verifications", tenant[1], JSON_BODY, "text/plain")
    assert status == 415
    assert await invalid() == before + 1
