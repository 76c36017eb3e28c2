"""The API's runner and its connections: how a request aiohttp's HTTP parser
refuses is classified (with the exceptions both of aiohttp's parsers really
raise), and the hook into aiohttp's private parts, pinned so that an aiohttp
upgrade that moves them fails here. Served on loopback, with a bare
application: nothing here needs the database."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from unittest import mock

import pytest
from aiohttp import http_exceptions, http_parser, web, web_protocol

from ivr_auth.api import app as api_app
from tests.support import served
from tests.support.raw_http import exchange

PARSERS = [http_parser.HttpRequestParserPy, http_parser.HttpRequestParserC]
LONG_URL = b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
# Over the header limit, and under the request line's: the limit alone tells them apart.
LONG_HEADER = b"GET / HTTP/1.1\r\nHost: x\r\nIdempotency-Key: " + b"k" * 9_000 + b"\r\n\r\n"
MANY_HEADERS = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % n for n in range(200)) + b"\r\n"
NOT_HTTP = b"\x00\x01 this is not HTTP\r\n\r\n"
REFUSED = [
    (LONG_URL, 414, "uri_too_long"),
    (LONG_HEADER, 431, "headers_too_large"),
    (MANY_HEADERS, 431, "headers_too_large"),
    (NOT_HTTP, 400, "bad_request"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n", 400, "bad_request"),
]
REFUSED_IDS = ["long URL", "long header", "200 headers", "not HTTP", "bad header name"]


# --- classification -----------------------------------------------------------------


def test_the_two_line_limits_differ() -> None:
    assert api_app.MAX_REQUEST_LINE_BYTES != api_app.MAX_HEADER_FIELD_BYTES


@pytest.mark.parametrize("parser_class", PARSERS, ids=["python", "c"])
@pytest.mark.parametrize(("raw", "status", "code"), REFUSED, ids=REFUSED_IDS)
async def test_what_each_parser_raises_is_classified(
    parser_class: type[http_parser.HttpRequestParser], raw: bytes, status: int, code: str
) -> None:
    parser = parser_class(
        mock.Mock(),
        asyncio.get_running_loop(),
        2**16,
        max_line_size=api_app.MAX_REQUEST_LINE_BYTES,
        max_field_size=api_app.MAX_HEADER_FIELD_BYTES,
        max_headers=api_app.MAX_HEADERS,
    )
    with pytest.raises(http_exceptions.HttpProcessingError) as info:
        parser.feed_data(raw)
    refusal = api_app.parse_error(info.value)
    assert (refusal.status, refusal.code) == (status, code)


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (http_exceptions.LineTooLong(b"GET /secret...", api_app.MAX_REQUEST_LINE_BYTES), 414, "uri_too_long"),
        (http_exceptions.LineTooLong(b"X-Token: secret...", api_app.MAX_HEADER_FIELD_BYTES), 431, "headers_too_large"),
        (http_exceptions.BadHttpMessage("Too many headers received"), 431, "headers_too_large"),
        (http_exceptions.BadHttpMethod("secret"), 400, "bad_request"),
        (http_exceptions.BadStatusLine("GET /secret HTTP/9"), 400, "bad_request"),
        (http_exceptions.InvalidHeader(b"secret header"), 400, "bad_request"),
        (http_exceptions.BadHttpMessage("Duplicate 'secret' header found."), 400, "bad_request"),
        (http_exceptions.TransferEncodingError("secret"), 400, "bad_request"),
    ],
)
def test_parse_errors_never_quote_the_request(exc: http_exceptions.HttpProcessingError, status: int, code: str) -> None:
    refusal = api_app.parse_error(exc)
    assert (refusal.status, refusal.code) == (status, code)
    assert "secret" not in refusal.message


def test_limits_named_in_the_messages_are_the_connections() -> None:
    long_line = http_exceptions.LineTooLong(b"...", 100)
    assert "100 bytes" in api_app.parse_error(long_line, max_line_size=100, max_field_size=200).message
    assert "200 bytes" in api_app.parse_error(long_line, max_line_size=50, max_field_size=200).message
    many = http_exceptions.BadHttpMessage("Too many headers received")
    assert "more than 7 headers" in api_app.parse_error(many, max_headers=7).message


# --- the hook into aiohttp ----------------------------------------------------------


def test_handle_error_overrides_aiohttps_signature() -> None:
    def shape(function: Callable[..., object]) -> list[tuple[str, object, object]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    assert shape(api_app._Connection.handle_error) == shape(web_protocol.RequestHandler.handle_error)


async def test_the_runner_rebuilds_aiohttps_server_with_every_argument() -> None:
    kwargs: dict[str, Any] = {"access_log": None, "keepalive_timeout": 12.0, "handler_cancellation": True}
    plain = web.AppRunner(web.Application(), **kwargs)
    ours = api_app.Runner(web.Application(), **kwargs)
    await plain.setup()
    await ours.setup()
    try:
        assert plain.server is not None
        assert ours.server is not None
        assert type(ours.server) is api_app._Server
        # Every attribute aiohttp's own server has, with the same arguments and our limits.
        assert set(vars(ours.server)) == set(vars(plain.server))
        assert ours.server._kwargs == plain.server._kwargs | {
            "max_line_size": api_app.MAX_REQUEST_LINE_BYTES,
            "max_field_size": api_app.MAX_HEADER_FIELD_BYTES,
            "max_headers": api_app.MAX_HEADERS,
        }
        assert ours.server.handler_cancellation is True
        assert ours.server._loop is asyncio.get_running_loop()
        connection = ours.server()
        assert type(connection) is api_app._Connection
        assert (connection.max_line_size, connection.max_field_size, connection.max_headers) == (
            api_app.MAX_REQUEST_LINE_BYTES,
            api_app.MAX_HEADER_FIELD_BYTES,
            api_app.MAX_HEADERS,
        )
        assert connection.keepalive_timeout == 12.0
    finally:
        await plain.cleanup()
        await ours.cleanup()


# --- on a real socket, with either parser ---------------------------------------------


async def _ok(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


async def _boom(request: web.Request) -> web.StreamResponse:
    raise RuntimeError("boom")


@pytest.fixture(params=PARSERS, ids=["python", "c"])
def parser_class(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections made with this parser (as with AIOHTTP_NO_EXTENSIONS=1, or not)."""
    monkeypatch.setattr(web_protocol, "HttpRequestParser", request.param)


@pytest.fixture
async def base_url(parser_class: None) -> AsyncIterator[str]:
    """A bare application (no error middleware) served by the API's runner."""
    app = web.Application()
    app.router.add_get("/", _ok)
    app.router.add_get("/boom", _boom)
    async with served.on_port(app) as url:
        yield url


@pytest.mark.parametrize(("raw", "status", "code"), REFUSED, ids=REFUSED_IDS)
async def test_refusals_are_json_and_logged_as_one_line(
    base_url: str, raw: bytes, status: int, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await exchange(base_url, raw)
    assert answer.status == status
    assert answer.error()["code"] == code
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    (line,) = [r for r in caplog.records if r.name == api_app.__name__]
    assert line.levelno == logging.INFO
    assert line.getMessage().startswith(f"refused a malformed request from 127.0.0.1: {status} {code} (")


async def test_an_exception_that_escapes_the_application_is_500_json_with_its_traceback_logged(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    answer = await exchange(base_url, b"GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.status == 500
    error = answer.error()
    assert error == {"code": "internal", "message": api_app.INTERNAL_MESSAGE}
    (line,) = [r for r in caplog.records if r.name == api_app.__name__]
    assert line.levelno == logging.ERROR
    assert "GET /boom" in line.getMessage()
    assert line.exc_info is not None
    assert isinstance(line.exc_info[1], RuntimeError)


async def test_a_good_request_is_untouched(base_url: str) -> None:
    answer = await exchange(base_url, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (answer.status, answer.body) == (200, b"ok")
