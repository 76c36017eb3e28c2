"""One Asterisk node as the controller sees it: the REST client, the events
websocket for this controller's own app name, a second one for the inbound
slot it holds (see ``ari.slots``), and the routing of both's events to the
calls in progress."""

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
from ivr_auth.ari import events, slots
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
        inbound_app: str | None = None,
        inbound_slots: int = 8,
        inbound_slot: int | None = None,
        metrics: metrics_mod.Metrics | None = None,
    ) -> None:
        self.name = name
        self.app = app
        self.client = ari_client.AriClient(session, base_url, username, password)
        self.dispatcher = events.Dispatcher(fallback)
        self._metrics = metrics
        self.stream = events.EventStream(
            session,
            base_url,
            self.client.headers,
            app,
            self.dispatcher,
            on_connect=self._connected,
            on_status=self._connection_changed if metrics is not None else None,
        )
        # Calls that start in the dialplan (inbound numbers) come in through
        # one of the slots <inbound_app>-1..-<inbound_slots> (the pinned
        # ``inbound_slot``, or the lowest free): a websocket of its own, so
        # that moving to another slot never drops the one our calls use.
        # Their CallBroadcast and StasisStart reach the dispatcher's fallback.
        self.inbound_base = inbound_app
        self._inbound_slots = inbound_slots
        self._inbound_slot = inbound_slot
        self.inbound: events.EventStream | None = None
        if inbound_app is not None:
            self.inbound = events.EventStream(
                session,
                base_url,
                self.client.headers,
                slots.app(inbound_app, inbound_slot or 1),
                self.dispatcher,
                choose_app=self._choose_slot,
            )
        self._inbound_task: asyncio.Task[None] | None = None
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
        # When the node's Asterisk started (``GET /asterisk/info``), and
        # whether that changed since the websocket was last connected: a
        # restart ended every call the node had.
        self.startup_time: str | None = None
        self.restarted = False
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
            self.restarted = False
            return self.release
        status = info.get("status") if isinstance(info, Mapping) else None
        started = status.get("startup_time") if isinstance(status, Mapping) else None
        started = started if isinstance(started, str) else None
        self.restarted = None not in (started, self.startup_time) and started != self.startup_time
        if self.restarted:
            logger.warning("ARI node %s: its Asterisk restarted (up since %s)", self.name, started)
        self.startup_time = started or self.startup_time
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
        """Connect the events websockets and make sure Asterisk knows our app.
        Without an inbound slot this controller still dials: a warning."""
        if self._task is None:
            self._task = asyncio.create_task(self.stream.run(), name=f"ari-events-{self.name}")
        if self.inbound is not None and self._inbound_task is None:
            self._inbound_task = asyncio.create_task(self.inbound.run(), name=f"ari-inbound-{self.name}")
        await self.stream.wait_connected(timeout)
        await self.require_app()
        if self.inbound is not None:
            try:
                await self.inbound.wait_connected(timeout)
            except errors.AriUnavailable as exc:
                logger.warning("ARI node %s: %s; inbound calls go to other controllers meanwhile", self.name, exc)

    @property
    def inbound_app(self) -> str | None:
        """The slot app this node holds now; None while it holds none."""
        return self.inbound.app if self.inbound is not None and self.inbound.connected else None

    def is_inbound_app(self, app: object) -> bool:
        """Whether ``app`` is one of the inbound slots (the one we hold, as
        only its events reach us)."""
        return (
            self.inbound_base is not None and isinstance(app, str) and slots.slot_of(self.inbound_base, app) is not None
        )

    async def _choose_slot(self, replaced: bool) -> str | None:
        """The slot to connect with: after a reconnect, the one held before
        (unless another websocket took it over); else the pinned one, or the
        lowest that no websocket holds; None (try again later) when there
        is none."""
        assert self.inbound_base is not None
        assert self.inbound is not None
        found = await self.client.applications()
        registered = [str(a.get("name")) for a in found]
        previous = self.inbound.app if self.inbound.connects and not replaced else None
        if previous is not None:
            # Asterisk keeps an app whose websocket went while channels are
            # in it: when those are our calls, the app is still ours, and
            # their events come back with it.
            held = next((a for a in found if a.get("name") == previous), None)
            if held is None or set(held.get("channel_ids") or ()) & set(self.dispatcher.channels()):
                return previous
        if self._inbound_slot is not None:
            pinned = slots.app(self.inbound_base, self._inbound_slot)
            if pinned in registered:
                logger.warning(
                    "ARI node %s: inbound slot %s (inbound.slot) is held by another websocket", self.name, pinned
                )
                return None
            return pinned
        slot = slots.choose(self.inbound_base, self._inbound_slots, registered)
        if slot is None:
            logger.warning(
                "ARI node %s: all %d inbound slots are held (more controllers than inbound.slots?);"
                " this one takes no inbound call until one is free",
                self.name,
                self._inbound_slots,
            )
            return None
        logger.info("ARI node %s: taking inbound slot %s", self.name, slots.app(self.inbound_base, slot))
        return slots.app(self.inbound_base, slot)

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
        await tasks.cancel(self._inbound_task)
        self._inbound_task = None
        await tasks.cancel(self._task)
        self._task = None
