"""One Asterisk node as the controller sees it: the REST client, the events
websocket for this controller's own app name, and the routing of events to
the calls in progress."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Mapping

import aiohttp

from ivr_auth import ari, errors, tasks
from ivr_auth import metrics as metrics_mod
from ivr_auth.ari import client as ari_client
from ivr_auth.ari import events
from ivr_auth.ari import release as release_mod

logger = logging.getLogger(__name__)
# How long Asterisk's word that our app is registered on our connected
# websocket is taken before an originate (one GET a second, not one a call).
APP_CONFIRMED_SECONDS = 1.0


class AriNode:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        username: str,
        password: str,
        app: str,
        *,
        name: str = "local",
        fallback: ari.EventHandler | None = None,
        on_connect: ari.ConnectHandler | None = None,
        extra_apps: tuple[str, ...] = (),
        metrics: metrics_mod.Metrics | None = None,
    ) -> None:
        self.name = name
        self.app = app
        # Apps whose calls start in the dialplan (inbound numbers): their
        # StasisStart events reach the dispatcher's fallback.
        self.extra_apps = extra_apps
        self.client = ari_client.AriClient(session, base_url, username, password)
        self.dispatcher = events.Dispatcher(fallback)
        self._metrics = metrics
        self.stream = events.EventStream(
            session,
            base_url,
            self.client.headers,
            ",".join((app, *extra_apps)),
            self.dispatcher,
            on_connect=self._connected,
            on_status=self._connection_changed if metrics is not None else None,
        )
        if metrics is not None:
            metrics.ari_connection(name, up=False)
        # Called after the release is read, each time the websocket connects
        # (the controller resyncs its calls there).
        self.on_connect = on_connect
        # (websocket connection number, second) of the last confirmation.
        self._app_confirmed: tuple[int, float] | None = None
        # The node's Asterisk, read each time the websocket connects; None
        # before, or when it does not say (then no newer feature is used).
        self.release: release_mod.Release | None = None
        self._task: asyncio.Task[None] | None = None

    async def _connected(self) -> None:
        await self.read_release()
        if self.on_connect is not None:
            await self.on_connect()

    async def read_release(self) -> release_mod.Release | None:
        """Ask the node which Asterisk it runs (an Asterisk may come back
        upgraded), log it once per change, warn past its end of life."""
        try:
            info = await self.client.asterisk_info()
            found = release_mod.Release.from_info(info) if isinstance(info, Mapping) else None
        except errors.AriError as exc:
            logger.warning("ARI node %s: could not read its Asterisk version: %s", self.name, exc)
            return self.release
        if found != self.release:
            if found is None:
                logger.warning(
                    "ARI node %s: its Asterisk gives no version that reads as one; newer ARI is not used", self.name
                )
            else:
                logger.info(
                    "ARI node %s runs Asterisk %s (newer ARI: %s)",
                    self.name,
                    found.text,
                    ", ".join(found.features()) or "none",
                )
                if found.past_end_of_life(dt.date.today()):
                    ended = found.end_of_life()
                    logger.warning(
                        "ARI node %s: Asterisk %d %s; run 20 or 22 LTS",
                        self.name,
                        found.major,
                        f"reached its end of life in {ended:%B %Y}" if ended else "is past its end of life",
                    )
                if self._metrics is not None:
                    self._metrics.asterisk_release(self.name, str(found))
        self.release = found
        return found

    def has(self, feature: release_mod.Feature) -> bool:
        """Whether the node's Asterisk has a newer ARI feature (False until known)."""
        return self.release is not None and self.release.has(feature)

    async def start(self, timeout: float = 10.0) -> None:
        """Connect the events websocket and make sure Asterisk knows the app."""
        if self._task is None:
            self._task = asyncio.create_task(self.stream.run(), name=f"ari-events-{self.name}")
        await self.stream.wait_connected(timeout)
        await self.require_app()

    async def require_app(self) -> None:
        """Originating into an app without a connected websocket returns 200 and
        loses the call on answer, so check before every originate: our
        websocket is connected, and Asterisk confirmed the app on it within
        the last ``APP_CONFIRMED_SECONDS`` (one GET a second at most, not one
        a call; a new connection is confirmed anew)."""
        if not self.stream.connected:
            raise self._not_registered()
        now = time.monotonic()
        if self._app_confirmed == (self.stream.connects, now // APP_CONFIRMED_SECONDS):
            return
        if await self.client.application(self.app) is None:
            self._app_confirmed = None
            raise self._not_registered()
        self._app_confirmed = (self.stream.connects, now // APP_CONFIRMED_SECONDS)

    def _not_registered(self) -> errors.AppNotRegistered:
        return errors.AppNotRegistered(
            f"Stasis app {self.app!r} has no connected events websocket on ARI node {self.name!r}"
        )

    def _connection_changed(self, up: bool) -> None:
        if self._metrics is not None:
            self._metrics.ari_connection(self.name, up=up, reconnect=up and self.stream.connects > 1)

    async def close(self) -> None:
        await tasks.cancel(self._task)
        self._task = None
