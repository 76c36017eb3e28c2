"""The side-API application: routes, and the middleware that turns every
failure into the contract's JSON error body. Stateless: everything it needs
is injected through ``make_app``."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import hdrs, web

from ivr_auth import config, errors
from ivr_auth import metrics as metrics_mod
from ivr_auth import store as store_mod
from ivr_auth.api import handlers, openapi, schemas, usage
from ivr_auth.dashboard import routes as dashboard

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
READY_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 5

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
    app[handlers.METRICS] = metrics if metrics is not None else metrics_mod.Metrics(store)
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
        return handlers.error_response(500, "internal", "an unexpected error occurred; it has been logged")


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
