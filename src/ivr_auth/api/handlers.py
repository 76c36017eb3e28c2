"""HTTP resources of the public API (v1). Each one is thin: check the
request (``schemas``), ask the store, shape the answer. Errors are raised and
turned into JSON by the middleware in ``app``."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import prometheus_client
from aiohttp import hdrs, web

from ivr_auth import channels as channel_list
from ivr_auth import config, crypto, errors, inbound_match, limits, models, phone
from ivr_auth import metrics as metrics_mod
from ivr_auth import store as store_mod
from ivr_auth.api import key_cache, listener, schemas, waiters
from ivr_auth.store import verifications

logger = logging.getLogger(__name__)

# A readiness probe of one dependency: returns when it is usable, raises
# (with a message fit for an operator) when not.
Check = Callable[[], Awaitable[object]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TenantHandler = Callable[[web.Request, models.Tenant], Awaitable[web.StreamResponse]]

CONFIG = web.AppKey("config", config.Config)
STORE = web.AppKey("store", store_mod.Store)
CHECKS: web.AppKey[Mapping[str, Check]] = web.AppKey("checks")
READY_TIMEOUT = web.AppKey("ready_timeout", float)
METRICS = web.AppKey("metrics", metrics_mod.Metrics)
WAITERS = web.AppKey("waiters", waiters.Waiters)
KEY_CACHE = web.AppKey("key_cache", key_cache.KeyCache)
LISTENER = web.AppKey("listener", listener.Listener)

IDEMPOTENCY_KEY = "Idempotency-Key"
# Line types an SMS is sent to: a fixed line or an IP phone (050 in Japan)
# takes none; a number whose type is unknown is tried.
SMS_LINE_TYPES = frozenset({"mobile", "fixed_or_mobile", "personal", "unknown"})
# Responses may carry a code: no proxy or browser should keep them.
NO_STORE: dict[str, str] = {hdrs.CACHE_CONTROL: "no-store"}
MAX_CHECK_MESSAGE = 300


def _json_default(value: object) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # never from timestamptz; assume UTC rather than guess a zone
            value = value.replace(tzinfo=dt.UTC)
        return models.iso(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


dumps = functools.partial(json.dumps, default=_json_default)


def json_response(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    all_headers: dict[str, str] = {**NO_STORE, **(headers or {})}
    return web.json_response(data, status=status, headers=all_headers, dumps=dumps)


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


# --- authentication -----------------------------------------------------------------


def authenticated(handler: TenantHandler) -> Handler:
    """``handler`` called with the tenant that owns the request's API key."""

    @functools.wraps(handler)
    async def with_tenant(request: web.Request) -> web.StreamResponse:
        return await handler(request, await _tenant(request))

    return with_tenant


async def _tenant(request: web.Request) -> models.Tenant:
    key = schemas.parse_bearer(request.headers.getall(hdrs.AUTHORIZATION, []))
    tenant = await _tenant_for_key(request.app, key) if key is not None else None
    if tenant is None:
        # One answer for missing, malformed and unknown keys: nothing to probe.
        raise schemas.ApiError(
            401,
            "unauthorized",
            "a valid API key is required: Authorization: Bearer <api key>",
            headers={hdrs.WWW_AUTHENTICATE: "Bearer"},
        )
    return tenant


async def _tenant_for_key(app: web.Application, key: str) -> models.Tenant | None:
    """From the key cache when it has the key, else from Postgres (and kept)."""
    cache = app[KEY_CACHE]
    store = app[STORE]
    if not cache.enabled:
        return await store.tenants.for_key(key)
    key_hash = store.keys.api_key_hash(key)
    tenant = cache.get(key_hash)
    if tenant is None:
        generation = cache.generation
        tenant = await store.tenants.for_key(key)
        if tenant is not None:
            cache.put(key_hash, tenant, generation)
    return tenant


def _verification_id(request: web.Request) -> uuid.UUID:
    verification_id = schemas.parse_verification_id(request.match_info["id"])
    if verification_id is None:
        # Same answer as for someone else's id: ids are not to be guessed at.
        raise errors.NotFound()
    return verification_id


async def _body(request: web.Request) -> dict[str, Any]:
    _json_content_type(request)
    try:
        raw = await request.read()
    except web.RequestPayloadError as exc:  # a broken Content-Encoding or chunked framing
        raise schemas.ApiError(
            400, "invalid_body", "the request body could not be read: its Content-Encoding or framing is broken"
        ) from exc
    return schemas.decode_body(raw)


def _json_content_type(request: web.Request) -> None:
    schemas.check_json_content_type(request.headers.getall(hdrs.CONTENT_TYPE, []))


# --- verifications ------------------------------------------------------------------


@authenticated
async def create_verification(request: web.Request, tenant: models.Tenant) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    store = request.app[STORE]
    idempotency_key = schemas.parse_idempotency_key(request.headers.getall(IDEMPOTENCY_KEY, []))
    body = await _body(request)
    parsed = schemas.parse_create(body, cfg, tenant_language=tenant.default_language)
    number_to_call = None
    if parsed.method == "inbound":
        number_to_call = inbound_match.number_to_call(cfg, tenant)
        if number_to_call is None:
            raise schemas.ApiError(
                422,
                "inbound_not_configured",
                "method: 'inbound' needs a published number to call; none is configured for this tenant"
                " (inbound.numbers in the config, or `ivr-auth tenant set NAME --inbound-number N`)",
            )
    plan = parsed.channels or (channel_list.Step(parsed.method),)
    if channel_list.texts(plan):
        _check_sms(cfg, parsed)
    new = verifications.NewVerification(
        tenant_id=tenant.id,
        method=parsed.method,
        phone=parsed.phone,
        line_type=parsed.line_type,
        code=parsed.code if parsed.code is not None else crypto.generate_code(parsed.code_length),
        language=parsed.language,
        reference=parsed.reference,
        callback_url=parsed.callback_url,
        ttl_seconds=parsed.ttl_seconds,
        max_code_attempts=parsed.max_code_attempts,
        max_call_attempts=cfg.verification.max_call_attempts,
        idempotency_key=idempotency_key,
        # Only kept when a replay needs it: the body holds the phone number
        # and perhaps the caller's code.
        request_hash=store.keys.request_hash(schemas.canonical(body)) if idempotency_key is not None else None,
        inbound_number=number_to_call,
        ask_code=parsed.ask_code,
        channels=parsed.channels,
    )
    policy = limits.Policy.for_tenant(cfg, tenant)
    try:
        limits.check_destination(policy, parsed.phone)
        created = await store.verifications.create(new, policy)
    except limits.Refused as refused:
        request.app[METRICS].refused(refused.reason)
        await _log_refusal(store, tenant, parsed, refused)
        retry = refused.retry_after_header
        raise schemas.ApiError(
            refused.status, refused.code, str(refused), headers={hdrs.RETRY_AFTER: retry} if retry else None
        ) from refused
    except errors.IdempotencyMismatch as exc:
        raise schemas.ApiError(422, "idempotency_key_reused", str(exc)) from exc
    except errors.Conflict as exc:  # the first request with this key is still being inserted
        raise schemas.ApiError(409, "idempotency_key_in_use", str(exc), headers={hdrs.RETRY_AFTER: "1"}) from exc
    verification = created.verification
    if created.created:
        request.app[METRICS].created(verification.method)
    # The code is shown only to whoever did not choose it; a replay shows it
    # again while the request is open (the sealed copy is wiped at the end).
    extra = {"code": created.code} if parsed.code is None and created.code is not None else None
    logger.info(
        "%s verification %s (%s to %s) for tenant %s",
        "created" if created.created else "replayed",
        verification.id,
        verification.method,
        phone.mask(verification.phone),
        tenant.id,
        extra={"verification_id": str(verification.id), "tenant_id": str(tenant.id)},
    )
    return json_response(
        _public(verification, cfg, extra),
        status=201 if created.created else 200,
        headers={hdrs.LOCATION: f"/v1/verifications/{verification.id}"},
    )


def _check_sms(cfg: config.Config, parsed: schemas.CreateRequest) -> None:
    """An SMS channel needs a carrier, and a number that takes SMS."""
    if not cfg.sms.carriers:
        raise schemas.ApiError(
            422,
            "sms_not_configured",
            "channel 'sms' needs an SMS carrier; none is configured (sms.carriers in the config)",
        )
    if parsed.line_type not in SMS_LINE_TYPES:
        raise schemas.ApiError(
            422,
            "sms_not_possible",
            f"phone: {phone.mask(parsed.phone)} is a {parsed.line_type} number, which takes no SMS; use a call channel",
        )


async def _log_refusal(
    store: store_mod.Store, tenant: models.Tenant, parsed: schemas.CreateRequest, refused: limits.Refused
) -> None:
    """Every refusal is in the operator's log (and the service log), number masked."""
    detail = {
        "reason": refused.reason,
        "method": parsed.method,
        "phone": phone.mask(parsed.phone),
        "retry_after": refused.retry_after_header,
    }
    logger.warning(
        "refused a %s request to %s for tenant %s: %s",
        parsed.method,
        phone.mask(parsed.phone),
        tenant.id,
        refused.reason,
        extra={"tenant_id": str(tenant.id)},
    )
    try:
        await store.controls.log(tenant.id, "refused", detail)
    except errors.StoreError as exc:  # the refusal stands; losing its log line must not turn it into a 5xx
        logger.warning("could not log the refusal: %s", exc)


def _public(
    verification: models.Verification, cfg: config.Config, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    out = verification.public(extra=extra)
    if verification.inbound_number is not None:
        # What the web page shows: the number as dialled at home (050-1234-5678).
        out["inbound_number_display"] = phone.display(verification.inbound_number, cfg.default_country)
    return out


@authenticated
async def get_verification(request: web.Request, tenant: models.Tenant) -> web.StreamResponse:
    """With ``?wait=S``: once the status differs from the one it has now (or,
    with ``until=end``, once the request has ended), or after S seconds, or
    at once when it is terminal (``waiters``)."""
    wait = schemas.parse_wait(request.query.getall("wait", []))
    until_end = schemas.parse_until(request.query.getall("until", []), wait) == "end"
    verification_id = _verification_id(request)
    store = request.app[STORE]
    if wait is None:
        verification = await store.verifications.get(tenant.id, verification_id)
    else:
        read = functools.partial(store.verifications.get, tenant.id, verification_id)
        try:
            verification = await request.app[WAITERS].wait_for_change(
                verification_id, read, wait, request=request, until_end=until_end
            )
        except waiters.TooManyWaiters as exc:
            logger.warning("refused a long poll: %s", exc)
            raise schemas.ApiError(
                503,
                "unavailable",
                "too many requests are waiting for a result; retry later, or without wait",
                headers={hdrs.RETRY_AFTER: "1"},
            ) from exc
    return json_response(_public(verification, request.app[CONFIG]))


@authenticated
async def verification_events(request: web.Request, tenant: models.Tenant) -> web.StreamResponse:
    store = request.app[STORE]
    verification_id = _verification_id(request)
    # events() and calls() look up by id alone; this is the tenant check.
    await store.verifications.get(tenant.id, verification_id)
    events = await store.verifications.events(verification_id)
    calls = await store.calls.for_request(verification_id)
    deliveries = await store.outbox.for_request(verification_id)
    messages = await store.sms.messages(verification_id)
    return json_response(
        {
            "events": [dataclasses.asdict(e) for e in events],
            "calls": [dataclasses.asdict(c) for c in calls],
            "sms": [m.public() for m in messages],
            "webhooks": [dataclasses.asdict(d) for d in deliveries],
        }
    )


@authenticated
async def cancel_verification(request: web.Request, tenant: models.Tenant) -> web.StreamResponse:
    verification_id = _verification_id(request)
    # No body is needed; one sent is ignored, but only if it is JSON like every other.
    if request.body_exists:
        _json_content_type(request)
    try:
        verification = await request.app[STORE].verifications.cancel(tenant.id, verification_id)
    except errors.Conflict as exc:
        raise schemas.ApiError(409, "not_cancelable", str(exc)) from exc
    logger.info(
        "canceled verification %s for tenant %s",
        verification.id,
        tenant.id,
        extra={"verification_id": str(verification.id), "tenant_id": str(tenant.id)},
    )
    return json_response(_public(verification, request.app[CONFIG]))


@authenticated
async def check_verification(request: web.Request, tenant: models.Tenant) -> web.StreamResponse:
    verification_id = _verification_id(request)
    parsed = schemas.parse_check(await _body(request))
    try:
        verification, verified = await request.app[STORE].verifications.check_code(
            tenant.id, verification_id, parsed.code, source="api"
        )
    except errors.Conflict as exc:
        raise schemas.ApiError(409, "not_checkable", str(exc)) from exc
    logger.info(
        "code check on verification %s: %s (%s)",
        verification.id,
        "match" if verified else "no match",
        verification.status.value,
        extra={"verification_id": str(verification.id), "tenant_id": str(tenant.id)},
    )
    return json_response({"verified": verified, "verification": _public(verification, request.app[CONFIG])})


def count_refusal(request: web.Request, exc: schemas.ApiError) -> None:
    """Counts a refusal by its status; a limit's is counted where it is
    raised, under the limit's own reason."""
    if exc.status >= 400 and not isinstance(exc.__cause__, limits.Refused):
        request.app[METRICS].api_error(exc.status)


# --- health -------------------------------------------------------------------------


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus's scrape: no API key (keep the listen address internal)."""
    body = await request.app[METRICS].exposition()
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: prometheus_client.CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    checks = request.app[CHECKS]
    timeout = request.app[READY_TIMEOUT]
    names = list(checks)
    results = await asyncio.gather(*(_run_check(name, checks[name], timeout) for name in names))
    ready = all(ok for ok, _ in results)
    report = {name: message for name, (_, message) in zip(names, results, strict=True)}
    return json_response(
        {"status": "ready" if ready else "not_ready", "checks": report},
        status=200 if ready else 503,
    )


async def _run_check(name: str, check: Check, timeout: float) -> tuple[bool, str]:
    try:
        async with asyncio.timeout(timeout):
            await check()
    except TimeoutError:
        message = f"no answer within {timeout:g} s"
    except Exception as exc:
        # The message only: a probe's answer is no place for a stack trace.
        message = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:MAX_CHECK_MESSAGE]
    else:
        return True, "ok"
    logger.warning("readiness check %s failed: %s", name, message, extra={"check": name})
    return False, message
