"""The side-API application: routes, the middleware that turns every
failure into the contract's JSON error body, and the runner whose
connections do the same for what never reaches the application (requests
aiohttp's HTTP parser refuses). Everything it needs is injected through
``make_app``; what it keeps itself is per process and only a shortcut: the
API key cache and the long-poll GETs waiting, both told of changes by one
LISTEN connection (``listener``) that starts and stops with the
application."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from aiohttp import hdrs, http_exceptions, web, web_protocol, web_request

from ivr_auth import config, errors
from ivr_auth import metrics as metrics_mod
from ivr_auth import store as store_mod
from ivr_auth.api import handlers, key_cache, listener, openapi, schemas, usage, waiters
from ivr_auth.dashboard import routes as dashboard

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
READY_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 5
INTERNAL_MESSAGE = "an unexpected error occurred; it has been logged"

# The HTTP parser's limits, refused before any middleware runs: a request
# line over MAX_REQUEST_LINE_BYTES is 414; a header over
# MAX_HEADER_FIELD_BYTES, or more than MAX_HEADERS headers, 431. The two line
# limits must differ: aiohttp raises one LineTooLong for either line, and only
# the limit it names tells them apart.
MAX_REQUEST_LINE_BYTES = 8000  # RFC 9112 section 3's recommended minimum; the C parser counts the URL alone
MAX_HEADER_FIELD_BYTES = 8190  # aiohttp's default: name and value
MAX_HEADERS = 128  # aiohttp's default
# Both of aiohttp's parsers raise a plain BadHttpMessage with these words.
TOO_MANY_HEADERS = "Too many headers"

# Codes for the HTTP errors aiohttp raises itself (routing, body size).
HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def make_app(
    cfg: config.Config,
    store: store_mod.Store,
    checks: Mapping[str, handlers.Check],
    *,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
    metrics: metrics_mod.Metrics | None = None,
) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY_BYTES)
    app[handlers.CONFIG] = cfg
    app[handlers.STORE] = store
    app[handlers.CHECKS] = dict(checks)
    app[handlers.READY_TIMEOUT] = ready_timeout
    app[handlers.METRICS] = metrics if metrics is not None else metrics_mod.Metrics(store.gauges)
    app[handlers.WAITERS] = waiters.Waiters(cfg.http.max_waiters)
    app[handlers.KEY_CACHE] = key_cache.KeyCache(cfg.http.api_key_cache_seconds)
    app[handlers.LISTENER] = listener.Listener(store.db, app[handlers.WAITERS], app[handlers.KEY_CACHE])
    app.cleanup_ctx.append(_listening)
    # Before aiohttp waits for the handlers still running: the long polls among them answer now.
    app.on_shutdown.append(_end_waits)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_post("/v1/verifications", handlers.create_verification)
    app.router.add_get("/v1/verifications/{id}", handlers.get_verification)
    app.router.add_get("/v1/verifications/{id}/events", handlers.verification_events)
    app.router.add_post("/v1/verifications/{id}/cancel", handlers.cancel_verification)
    app.router.add_post("/v1/verifications/{id}/check", handlers.check_verification)
    app.router.add_get("/v1/usage", usage.get_usage)
    app.router.add_get("/openapi.json", openapi.serve)
    app.router.add_get("/metrics", handlers.metrics)
    dashboard.setup(app, cfg, store)
    return app


async def _listening(app: web.Application) -> AsyncIterator[None]:
    async with app[handlers.LISTENER].running():
        yield


async def _end_waits(app: web.Application) -> None:
    app[handlers.WAITERS].close()


@web.middleware
async def _errors(request: web.Request, handler: handlers.Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except schemas.ApiError as exc:
        # The code only: messages can quote the phone number that was sent.
        logger.debug("refused %s %s: %s %s", request.method, request.path, exc.status, exc.code)
        handlers.count_refusal(request, exc)
        return handlers.error_response(exc.status, exc.code, exc.message, exc.headers)
    except errors.NotFound:
        return handlers.error_response(404, "not_found", "no such verification")
    except errors.StoreUnavailable as exc:
        logger.warning("%s %s: %s", request.method, request.path, exc)
        return handlers.error_response(
            503,
            "unavailable",
            "the service is temporarily unavailable; retry later",
            {hdrs.RETRY_AFTER: str(RETRY_AFTER_SECONDS)},
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc)
    except Exception:
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return handlers.error_response(500, "internal", INTERNAL_MESSAGE)


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = HTTP_ERROR_CODES.get(exc.status, exc.reason.lower().replace(" ", "_"))
    headers: dict[str, str] = {}
    if exc.status == 404:
        message = "no such resource"
    elif exc.status == 405:
        allowed = exc.headers.get(hdrs.ALLOW, "")
        headers[hdrs.ALLOW] = allowed
        message = f"{request.method} is not allowed here (allowed: {allowed or 'none'})"
    elif exc.status == 413:
        message = f"the request body is larger than {MAX_BODY_BYTES} bytes"
    else:
        message = exc.reason
    return handlers.error_response(exc.status, code, message, headers)


# --- below the application: the HTTP connection -------------------------------------


def parse_error(
    exc: http_exceptions.HttpProcessingError,
    *,
    max_line_size: int = MAX_REQUEST_LINE_BYTES,
    max_field_size: int = MAX_HEADER_FIELD_BYTES,
    max_headers: int = MAX_HEADERS,
) -> schemas.ApiError:
    """The answer to a request aiohttp's parser refused. It never quotes the
    parser's message, which holds the start of the offending line."""
    if isinstance(exc, http_exceptions.LineTooLong):
        # args: (the start of the line, the limit it broke, its size)
        if exc.args[1:2] == (max_line_size,):
            return schemas.ApiError(
                414, "uri_too_long", f"the request line (method, URL, version) is longer than {max_line_size} bytes"
            )
        return schemas.ApiError(431, "headers_too_large", f"a request header is longer than {max_field_size} bytes")
    if exc.message.startswith(TOO_MANY_HEADERS):
        return schemas.ApiError(431, "headers_too_large", f"the request has more than {max_headers} headers")
    return schemas.ApiError(400, "bad_request", "the request is not well-formed HTTP/1.1")


class _Connection(web_protocol.RequestHandler):
    """aiohttp's HTTP/1 connection, but the errors it answers itself (a
    request its parser refused, an exception that escaped the application)
    are answered with the JSON error body; a refused request is logged as one
    line, not as a traceback at ERROR. It also tells a long-poll GET when its
    client goes (``waiters.Watched``): aiohttp does not cancel handlers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lost_callbacks: set[Callable[[], None]] = set()

    def when_lost(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._lost_callbacks.add(callback)
        return lambda: self._lost_callbacks.discard(callback)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        for callback in list(self._lost_callbacks):
            callback()

    def handle_error(
        self,
        request: web_request.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # As aiohttp does: an answer has begun, there is no sending another.
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        if status < 500 and isinstance(exc, http_exceptions.HttpProcessingError):
            refusal = parse_error(
                exc, max_line_size=self.max_line_size, max_field_size=self.max_field_size, max_headers=self.max_headers
            )
            logger.info(
                "refused a malformed request from %s: %s %s (%s)",
                request.remote,
                refusal.status,
                refusal.code,
                type(exc).__name__,
                extra={"peer": request.remote},
            )
            response = handlers.error_response(refusal.status, refusal.code, refusal.message)
        else:
            logger.error(
                "unexpected error (%s) on %s %s from %s",
                status,
                request.method,
                request.path,
                request.remote,
                exc_info=exc,
                extra={"peer": request.remote},
            )
            response = handlers.error_response(500, "internal", INTERNAL_MESSAGE)
        # As aiohttp does: whatever else the client sent on this connection is not to be trusted.
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> web_protocol.RequestHandler:
        # web.Server.__call__, with our class (and without its fallback for
        # handler arguments RequestHandler refuses: ours are known).
        return _Connection(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """``web.AppRunner`` for the API: the parser limits above, and
    connections that answer their own errors as ``_Connection`` does.

    aiohttp has no public hook for parse errors: they go to
    ``RequestHandler.handle_error``, and ``web.Server.__call__`` makes plain
    ``RequestHandler``s. So the server aiohttp builds is rebuilt, with the same
    arguments, as a ``_Server``. tests/unit/test_api_app.py pins this wiring
    and the signature overridden; tests/integration/test_http_errors.py the
    answers on a real socket."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        limits = {
            "max_line_size": MAX_REQUEST_LINE_BYTES,
            "max_field_size": MAX_HEADER_FIELD_BYTES,
            "max_headers": MAX_HEADERS,
        }
        super().__init__(app, **(limits | kwargs))

    async def _make_server(self) -> web.Server:
        built = await super()._make_server()
        return _Server(
            built.request_handler,
            request_factory=built.request_factory,
            handler_cancellation=built.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **built._kwargs,
        )
