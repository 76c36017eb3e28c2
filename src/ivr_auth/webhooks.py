"""Sends the outbox's webhooks: a signed POST of each event to the request's
``callback_url``, retried with exponential backoff and jitter until a 2xx,
or given up once the event is ``webhooks.max_age_seconds`` old.

Delivery is at least once: a receiver de-duplicates on the event id (header
``IVR-Auth-Event-Id``, and ``event.id`` in the body). Redirects are not
followed: a 3xx counts as a failure, so a signed body never lands somewhere
the tenant did not name. Unless ``webhooks.allow_private_networks`` is set,
a URL whose host is or resolves to a loopback, private or otherwise
non-public address is not called: a tenant's callback must not reach into
the operator's network. Every attempt is logged in the database, never
the secret or the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import random
import socket
import time
import urllib.parse
from collections.abc import Callable

import aiohttp

from ivr_auth import config, signature, tasks
from ivr_auth import metrics as metrics_mod
from ivr_auth.store import outbox as outbox_mod

logger = logging.getLogger(__name__)

USER_AGENT = "ivr-auth-webhooks/1"
MAX_ERROR_LENGTH = 300


def backoff(attempt: int, cfg: config.WebhooksConfig, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...):
    base * 2^(attempt-1), capped, with "equal jitter" (half fixed, half random)
    so that receivers coming back up are not hit by every sender at once."""
    doubling = float(2 ** min(attempt - 1, 30))
    ceiling = min(cfg.backoff_max_seconds, cfg.backoff_base_seconds * doubling)
    return ceiling / 2 + rand() * ceiling / 2


class Sender:
    def __init__(
        self,
        cfg: config.Config,
        outbox: outbox_mod.Outbox,
        session: aiohttp.ClientSession,
        metrics: metrics_mod.Metrics | None = None,
    ) -> None:
        self.cfg = cfg.webhooks
        self.outbox = outbox
        self.session = session
        self.metrics = metrics or metrics_mod.Metrics(None)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Webhooks handed over by this process's own state changes, being sent.
        self._handed: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="webhook-sender")

    async def stop(self) -> None:
        await tasks.cancel(self._task)
        self._task = None
        # Cut off mid-attempt, a handed-over webhook is due again once its hold runs out.
        for task in list(self._handed):
            await tasks.cancel(task)

    def wake(self) -> None:
        self._wake.set()

    @property
    def hold_seconds(self) -> float:
        """How long a delivery is out of other senders' reach for one attempt."""
        return self.cfg.timeout_seconds + 5

    def take(self, delivery: outbox_mod.Delivery) -> bool:
        """Send a webhook this process just wrote (held for it), now; False
        when ``concurrency`` of them are being sent already."""
        if self._task is None or len(self._handed) >= self.cfg.concurrency:
            return False
        task = asyncio.create_task(self._send_handed(delivery), name=f"webhook-{delivery.id}")
        self._handed.add(task)
        task.add_done_callback(self._handed.discard)
        return True

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.send_due()
            except Exception as exc:  # the database may be down: try again later
                logger.warning("webhook pass failed: %s", exc)
                sent = 0
            if sent < self.cfg.concurrency:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.cfg.poll_interval_seconds)
                self._wake.clear()

    async def _send_handed(self, delivery: outbox_mod.Delivery) -> None:
        try:
            await self._send(delivery)
        except Exception as exc:  # the database may be down: the row is due again after its hold
            tasks.reraise_cancellation(exc)
            logger.warning("webhook %s not recorded: %s", delivery.id, exc)

    async def send_due(self) -> int:
        """Claim what is due (up to ``concurrency``), send it, record each result."""
        due = await self.outbox.claim(self.cfg.concurrency, self.hold_seconds)
        if due:
            await asyncio.gather(*(self._send(d) for d in due))
        return len(due)

    async def _send(self, delivery: outbox_mod.Delivery) -> None:
        log = {"verification_id": str(delivery.verification_id), "event_id": str(delivery.id)}
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        secret = self.outbox.secret(delivery)
        if secret is None:
            error = "the tenant has no webhook secret (ivr-auth tenant webhook-secret NAME)"
        else:
            error, status_code = await self._post(delivery, secret)
        duration_ms = round((time.monotonic() - started) * 1000)
        delivered = status_code is not None and 200 <= status_code < 300
        next_attempt_at = None
        if not delivered:
            if status_code is not None:
                error = f"HTTP {status_code}"
            next_attempt_at = self._next_attempt(delivery)
        await self.outbox.record(
            delivery,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
            delivered=delivered,
            next_attempt_at=next_attempt_at,
        )
        if delivered:
            # The outbox row was written with the result, in its transaction.
            since_result = (dt.datetime.now(dt.UTC) - delivery.created_at).total_seconds()
            self.metrics.webhook_attempt("delivered", since_result)
            logger.info("webhook %s delivered (%d ms)", delivery.event_type, duration_ms, extra=log)
        elif next_attempt_at is None:
            self.metrics.webhook_attempt("given_up")
            logger.warning(
                "webhook %s given up after %d attempts: %s",
                delivery.event_type,
                delivery.attempts + 1,
                error,
                extra=log,
            )
        else:
            self.metrics.webhook_attempt("failed")
            logger.info(
                "webhook %s failed (%s); retrying at %s", delivery.event_type, error, next_attempt_at, extra=log
            )

    async def _post(self, delivery: outbox_mod.Delivery, secret: str) -> tuple[str | None, int | None]:
        if not self.cfg.allow_private_networks:
            refused = await _private_destination(delivery.url)
            if refused:
                return refused, None
        body = delivery.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            signature.HEADER: signature.sign(secret, body, int(time.time())),
            signature.EVENT_ID_HEADER: str(delivery.id),
        }
        try:
            async with self.session.post(
                delivery.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_seconds),
            ) as resp:
                await resp.read()
                return None, resp.status
        except TimeoutError:
            return f"no answer within {self.cfg.timeout_seconds:g} s", None
        except aiohttp.ClientError as exc:
            return (f"{type(exc).__name__}: {exc}")[:MAX_ERROR_LENGTH], None

    def _next_attempt(self, delivery: outbox_mod.Delivery) -> dt.datetime | None:
        now = dt.datetime.now(dt.UTC)
        retry_at = now + dt.timedelta(seconds=backoff(delivery.attempts + 1, self.cfg))
        if retry_at > delivery.created_at + dt.timedelta(seconds=self.cfg.max_age_seconds):
            return None
        return retry_at


async def _private_destination(url: str) -> str | None:
    """Why ``url`` may not be called (its host is or resolves to a
    non-public address), or None. Checked before each attempt; a name that
    resolves differently between this check and the connection (DNS
    rebinding) is not caught here."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if not host:
        return "the callback URL has no host"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if not address.is_global:
            return f"{host} is a non-public address ({address}); see webhooks.allow_private_networks"
    return None
