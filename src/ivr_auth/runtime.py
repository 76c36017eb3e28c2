"""The composition root: builds the store, ARI node, controller, SMS
sender and HTTP API from a config, and runs them until a signal asks them to stop.
Nothing else in the package creates connections."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import urllib.parse
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from ivr_auth import agi, config, connections, controller, errors, metrics, prompts, webhooks
from ivr_auth import store as store_mod
from ivr_auth.api import app as api_app
from ivr_auth.api import handlers as api_handlers
from ivr_auth.ari import node as ari_node
from ivr_auth.sms import sender as sms_sender
from ivr_auth.store import sms as sms_store

logger = logging.getLogger(__name__)


class Runtime:
    """What one process runs: the API, a controller, the SMS sender, or several of them."""

    def __init__(
        self,
        cfg: config.Config,
        endpoints: connections.Connections,
        *,
        api: bool = True,
        dialer: bool = True,
        name: str | None = None,
        http_port: int | None = None,
        fastagi: bool | None = None,
        sms: bool = False,
    ) -> None:
        self.cfg = cfg
        self.endpoints = endpoints
        self.with_api = api
        self.with_dialer = dialer
        self.with_sms = sms
        if sms and not cfg.sms.carriers:
            raise errors.ConfigError("sms.carriers is empty: there is no carrier to send SMS through")
        self.name = name or cfg.dialer.name or controller.default_name()
        self._http_port = http_port
        # The FastAGI server runs beside the controller unless told otherwise
        # (and never when agi.listen is empty).
        self.with_agi = (dialer if fastagi is None else fastagi) and bool(cfg.agi.listen)
        self.agi: agi.AgiServer | None = None
        self.webhooks: webhooks.Sender | None = None
        self.store: store_mod.Store | None = None
        self.session: aiohttp.ClientSession | None = None
        self.node: ari_node.AriNode | None = None
        self.controller: controller.Controller | None = None
        self.sms: sms_sender.Sender | None = None
        self.metrics: metrics.Metrics | None = None
        self._runner: web.AppRunner | None = None
        self._metrics_runner: web.AppRunner | None = None
        self.http_url: str | None = None
        self.metrics_url: str | None = None

    async def start(self) -> None:
        self.store = store_mod.Store.from_url(
            self.endpoints.database_url, self.endpoints.server_secret, max_size=20, timeout=5.0, name=f"{self.name}-db"
        )
        # Not waiting here: the API answers 503 while the database is down
        # and the pool recovers by itself when it is back.
        await self.store.open(wait=None)
        self.session = aiohttp.ClientSession()
        # One per process, shared by all its parts. Only the API reads the
        # database's figures: a controller-only process would repeat them.
        self.metrics = metrics.Metrics(self.store.gauges if self.with_api else None)
        self.node = ari_node.AriNode(
            self.session,
            self.endpoints.ari_url,
            self.endpoints.ari_username,
            self.endpoints.ari_password,
            # One app name per process: a second websocket for the same name
            # would take over the first one's calls.
            f"{self.cfg.ari.app}-{self.name}",
            name=self.cfg.ari.node or urllib.parse.urlsplit(self.endpoints.ari_url).netloc,
            # Inbound calls come in through the dialplan into one of the
            # inbound slots, each held by one controller.
            inbound_app=self.cfg.inbound.app if self.with_dialer else None,
            inbound_slots=self.cfg.inbound.slots,
            inbound_slot=self.cfg.inbound.slot,
            # An API-only process never connects the websocket: no gauge of it.
            metrics=self.metrics if self.with_dialer else None,
        )
        if self.with_dialer:
            library = prompts.Library.from_config(self.cfg)
            for problem in library.check(self.cfg.languages):
                logger.warning("%s", problem)
            self.controller = controller.Controller(
                self.cfg,
                self.store,
                self.node,
                name=self.name,
                library=library,
                metrics=self.metrics,
            )
            await self.controller.start()
        if self.with_dialer:
            # Every controller process sends webhooks too (claims are SKIP LOCKED).
            self.webhooks = webhooks.Sender(self.cfg, self.store.outbox, self.session, self.metrics)
            self.webhooks.start()
            if self.controller is not None:
                self.controller.on_webhook = self.webhooks.wake
            # The webhooks of the changes this process makes go out from here at once.
            self.store.verifications.hand_webhooks_to(self.webhooks.take, self.webhooks.hold_seconds)
        if self.with_sms:
            self.sms = sms_sender.Sender(
                self.cfg,
                self.store.sms,
                owner=self.name,
                metrics=self.metrics,
                listen=functools.partial(self.store.db.listen, [sms_store.SMS_CHANNEL]),
            )
            await self.sms.start()
        if self.with_agi:
            self.agi = agi.AgiServer(self.cfg, self.store)
            await self.agi.start()
            logger.info("FastAGI listening on port %d", self.agi.port)
        if self.with_api:
            checks: dict[str, Callable[[], Awaitable[object]]] = {
                "postgres": self.store.ping,
                f"asterisk:{self.node.name}": self.node.client.asterisk_info,
            }
            if self.sms is not None:
                checks.update(self.sms.checks())
            app = api_app.make_app(self.cfg, self.store, checks, metrics=self.metrics)
            self._runner = api_app.Runner(app, access_log=None)
            await self._runner.setup()
            host, port = self.cfg.http_host_port()
            site = web.TCPSite(self._runner, host, self._http_port if self._http_port is not None else port)
            await site.start()
            bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
            self.http_url = f"http://{host}:{bound[1]}"
            logger.info("API listening on %s", self.http_url)
        elif (listen := self.cfg.metrics_host_port()) is not None:
            await self._serve_metrics(self.metrics, *listen)

    async def _serve_metrics(self, exposed: metrics.Metrics, host: str, port: int) -> None:
        """A process without the API serves its own ``GET /metrics`` (on ``metrics.listen``)."""
        app = web.Application()
        app[api_handlers.METRICS] = exposed
        app.router.add_get("/metrics", api_handlers.metrics)
        self._metrics_runner = api_app.Runner(app, access_log=None)
        await self._metrics_runner.setup()
        site = web.TCPSite(self._metrics_runner, host, port)
        await site.start()
        self.metrics_url = f"http://{host}:{port}/metrics"
        logger.info("metrics on %s", self.metrics_url)

    async def stop(self, grace: float | None = None) -> None:
        """Each step is bounded: a stuck part is logged and left, so that
        shutdown always ends."""
        drain = (self.cfg.dialer.shutdown_grace_seconds if grace is None else grace) + 15
        if self._runner is not None:
            await _bounded("http", self._runner.cleanup(), 10)
            self._runner = None
        if self._metrics_runner is not None:
            await _bounded("metrics http", self._metrics_runner.cleanup(), 10)
            self._metrics_runner = None
        if self.agi is not None:
            await _bounded("fastagi", self.agi.stop(), 10)
            self.agi = None
        if self.controller is not None:
            await _bounded("controller", self.controller.stop(grace), drain)
            self.controller = None
        elif self.node is not None:
            await _bounded("ari", self.node.close(), 10)
        if self.sms is not None:
            await _bounded("sms sender", self.sms.stop(), sms_sender.stop_bound(self.cfg.sms))
            self.sms = None
        # After the drain: the last calls' webhooks are on their way, or in
        # the outbox for whichever sender runs next.
        if self.webhooks is not None:
            await _bounded("webhooks", self.webhooks.stop(), 10)
            self.webhooks = None
        if self.session is not None:
            await _bounded("http client", self.session.close(), 5)
            self.session = None
        if self.store is not None:  # closing it twice does nothing
            await _bounded("database pool", self.store.close(), 10)

    async def kill(self) -> None:
        """Stop the controller and the SMS sender as a crash would (tests of recovery)."""
        if self.controller is not None:
            await self.controller.kill()
            self.controller = None
        if self.sms is not None:
            await self.sms.kill()
            self.sms = None
        await self.stop(0)


async def _bounded(what: str, step: Awaitable[object], timeout: float) -> None:
    try:
        await asyncio.wait_for(step, timeout)
    except TimeoutError:
        logger.warning("shutdown: %s did not stop within %.0fs; leaving it", what, timeout)


async def serve(
    cfg: config.Config, endpoints: connections.Connections, *, api: bool, dialer: bool, sms: bool = False
) -> None:
    """Run until SIGINT or SIGTERM, then drain calls and stop."""
    runtime = Runtime(cfg, endpoints, api=api, dialer=dialer, sms=sms)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runtime.start()
    if runtime.http_url:
        print(f"ivr-auth API on {runtime.http_url}", flush=True)
        print(f"operator dashboard on {runtime.http_url}/dashboard (a token: `ivr-auth operator add NAME`)", flush=True)
    if runtime.controller:
        print(f"ivr-auth controller {runtime.name} dialling via {endpoints.ari_url}", flush=True)
    if runtime.sms:
        carriers = ", ".join(f"{c.name} ({c.host}:{c.port})" for c in cfg.sms.carriers)
        print(f"ivr-auth SMS sender {runtime.name} sending through {carriers}", flush=True)
    try:
        await stop.wait()
    finally:
        draining = [what for what, running in (("calls", runtime.controller), ("SMS submits", runtime.sms)) if running]
        print(f"stopping: draining {' and '.join(draining) or 'requests'} in progress...", flush=True)
        with contextlib.suppress(Exception):
            await runtime.stop()
