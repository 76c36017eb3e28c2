"""HTTP resources of the dashboard: the page, its login, its JSON and its
server-sent events. Mounted on the side-API's aiohttp app by ``setup``."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import hdrs, web

from ivr_auth import config, errors, logs
from ivr_auth import store as store_mod
from ivr_auth.api import handlers, schemas
from ivr_auth.dashboard import live, session
from ivr_auth.store import operators

logger = logging.getLogger(__name__)

HUB = web.AppKey("dashboard_hub", live.Hub)
STATIC = resources.files("ivr_auth.dashboard").joinpath("static")
# name -> content type: nothing else is served from the package.
STATIC_FILES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# No inline script or style, nothing from elsewhere, never in a frame.
PAGE_HEADERS = {
    hdrs.CACHE_CONTROL: "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
KEEPALIVE_SECONDS = 15.0
# How often an open stream checks that its login still holds.
RECHECK_SECONDS = 60.0
LOGIN_FAILED = '<p class="error" role="alert">That token is not valid (or has been revoked).</p>'

OperatorHandler = Callable[[web.Request, operators.Operator], Awaitable[web.StreamResponse]]


def setup(app: web.Application, cfg: config.Config, store: store_mod.Store) -> None:
    hub = live.Hub(store.dashboard, cfg)
    app[HUB] = hub
    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/", to_page)
    app.router.add_get("/dashboard/login", login_page)
    app.router.add_post("/dashboard/login", login)
    app.router.add_post("/dashboard/logout", logout)
    app.router.add_get("/dashboard/static/{name}", static)
    app.router.add_get("/dashboard/api/overview", api_overview)
    app.router.add_get("/dashboard/api/verifications/{id}", api_request)
    app.router.add_get("/dashboard/api/stream", stream)

    async def on_shutdown(app: web.Application) -> None:
        hub.end_pages()

    async def on_cleanup(app: web.Application) -> None:
        await hub.close()

    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)


# --- who is asking -----------------------------------------------------------------------


async def _operator(request: web.Request) -> tuple[operators.Operator, session.Session | None] | None:
    """The operator behind a session cookie or an ``Authorization: Bearer``
    operator token (for scripts); a tenant's API key is never one."""
    store = request.app[handlers.STORE]
    token = schemas.parse_bearer(request.headers.getall(hdrs.AUTHORIZATION, []))
    if token is not None:
        operator = await store.operators.for_token(token)
        return None if operator is None else (operator, None)
    cookie = request.cookies.get(session.COOKIE)
    if not cookie:
        return None
    current = session.decode(store.keys, cookie, dt.datetime.now(dt.UTC))
    if current is None:
        return None
    operator = await store.operators.session(current.operator_id, current.issued)
    return None if operator is None else (operator, current)


def operator_only(handler: OperatorHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        found = await _operator(request)
        if found is None:
            raise schemas.ApiError(
                401,
                "unauthorized",
                "an operator login is required: log in at /dashboard/login, or send"
                " Authorization: Bearer <operator token> (`ivr-auth operator add NAME`)",
                headers={hdrs.WWW_AUTHENTICATE: "Bearer"},
            )
        return await handler(request, found[0])

    return checked


# --- pages -------------------------------------------------------------------------------------


def _html(name: str, *, status: int = 200, replace: tuple[str, str] | None = None) -> web.Response:
    text = STATIC.joinpath(name).read_text(encoding="utf-8")
    if replace is not None:
        text = text.replace(*replace)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={**PAGE_HEADERS, hdrs.LOCATION: location})


async def to_page(request: web.Request) -> web.StreamResponse:
    """``/dashboard/``, as people type it."""
    return _see_other("/dashboard")


async def page(request: web.Request) -> web.StreamResponse:
    if await _operator(request) is None:
        return _see_other("/dashboard/login")
    return _html("index.html")


async def login_page(request: web.Request) -> web.StreamResponse:
    return _html("login.html")


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    token = form.get("token")
    store = request.app[handlers.STORE]
    operator = await store.operators.for_token(token.strip()) if isinstance(token, str) else None
    if operator is None or operator.at is None:
        logger.warning("dashboard: a login with an unknown operator token from %s", request.remote)
        return _html("login.html", status=401, replace=("<!--error-->", LOGIN_FAILED))
    cfg = request.app[handlers.CONFIG]
    lifetime = dt.timedelta(hours=cfg.dashboard.session_hours)
    new = session.Session(operator.id, operator.at, operator.at + lifetime)
    logger.info("dashboard: operator %s logged in", operator.name)
    response = _see_other("/dashboard")
    response.set_cookie(
        session.COOKIE,
        session.encode(store.keys, new),
        max_age=int(lifetime.total_seconds()),
        path=session.PATH,
        httponly=True,
        samesite="Strict",
        # Behind a proxy that ends TLS, aiohttp sees http: take the proxy's word.
        secure=request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https",
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    found = await _operator(request)
    if found is not None:
        await request.app[handlers.STORE].operators.end_sessions(found[0].id)
        logger.info("dashboard: operator %s logged out", found[0].name)
    response = _see_other("/dashboard/login")
    response.del_cookie(session.COOKIE, path=session.PATH)
    return response


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        raise errors.NotFound()
    body = STATIC.joinpath(name).read_bytes()
    return web.Response(body=body, headers={**PAGE_HEADERS, hdrs.CONTENT_TYPE: content_type})


# --- data --------------------------------------------------------------------------------------


@operator_only
async def api_overview(request: web.Request, operator: operators.Operator) -> web.StreamResponse:
    message = await live.overview(request.app[handlers.STORE].dashboard, request.app[handlers.CONFIG])
    return handlers.json_response(message)


def _masked(value: Any) -> Any:
    """Event details and errors as stored, with anything like a phone number masked."""
    if isinstance(value, str):
        return logs.mask_phones(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _url_without_query(url: str) -> str:
    """Callback URLs may carry a tenant's token in their query: not shown."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


@operator_only
async def api_request(request: web.Request, operator: operators.Operator) -> web.StreamResponse:
    verification_id = schemas.parse_verification_id(request.match_info["id"])
    store = request.app[handlers.STORE]
    detail = await store.dashboard.request_detail(verification_id) if verification_id is not None else None
    if verification_id is None or detail is None:
        raise errors.NotFound()
    events = await store.verifications.events(verification_id)
    calls = await store.calls.for_request(verification_id)
    messages = await store.sms.messages(verification_id)
    deliveries = [
        dataclasses.asdict(dataclasses.replace(d, url=_url_without_query(d.url)))
        for d in await store.outbox.for_request(verification_id)
    ]
    return handlers.json_response(
        {
            "request": detail,
            "events": _masked([dataclasses.asdict(e) for e in events]),
            "calls": [dataclasses.asdict(c) for c in calls],
            "sms": [m.public() for m in messages],
            "webhooks": _masked(deliveries),
        }
    )


@operator_only
async def stream(request: web.Request, operator: operators.Operator) -> web.StreamResponse:
    """Server-sent events: ``overview`` whenever something moved,
    ``unavailable`` while Postgres is not answering, ``logout`` when the
    login ends, ``closing`` when this process stops (the page reconnects)."""
    response = web.StreamResponse(
        headers={
            hdrs.CONTENT_TYPE: "text/event-stream",
            hdrs.CACHE_CONTROL: "no-store",
            "X-Accel-Buffering": "no",  # nginx: do not hold the events back
        }
    )
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    hub = request.app[HUB]
    checked_at = asyncio.get_running_loop().time()
    try:
        async with hub.subscribe() as queue:
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                now = asyncio.get_running_loop().time()
                if now - checked_at >= RECHECK_SECONDS:
                    checked_at = now
                    if await _operator(request) is None:
                        message = {"type": "logout"}
                await response.write(_event(message))
                if message["type"] in ("logout", "closing"):
                    break
    except (ConnectionResetError, errors.StoreError):
        pass  # the page went away, or the login could not be checked: it reconnects
    return response


def _event(message: dict[str, Any]) -> bytes:
    return f"event: {message['type']}\ndata: {handlers.dumps(message)}\n\n".encode()
