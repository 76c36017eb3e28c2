"""The controller: takes queued requests from Postgres and drives their
calls through one Asterisk node.

- Claims with ``FOR UPDATE SKIP LOCKED``, so any number of controllers share
  one queue; woken by ``LISTEN/NOTIFY``, and polling all the same.
- Sends each call through one of the node's trunks (``trunks.Trunks``:
  priorities, per-trunk ``max_channels`` and ``calls_per_second``, a failed
  trunk skipped for a while), and claims no more than they can take now.
- Holds a lease on every request it is calling and renews it; a reaper (in
  every controller) settles requests whose controller stopped renewing.
- Runs each call in its own task: one call's failure is logged and settled
  as that call's error, and touches no other call.
- On shutdown stops claiming, lets calls in progress finish (up to a grace
  period), then hangs up what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

from ivr_auth import (
    ari,
    callsession,
    causes,
    config,
    errors,
    flows,
    models,
    presence,
    prompts,
    reasons,
    reconcile,
    states,
    tasks,
    trunks,
)
from ivr_auth import metrics as metrics_mod
from ivr_auth import store as store_mod
from ivr_auth.ari import node as ari_node
from ivr_auth.ari import slots
from ivr_auth.flows import FlowContext
from ivr_auth.flows import dtmf as dtmf_flow
from ivr_auth.flows import inbound as inbound_flow
from ivr_auth.flows import voice as voice_flow
from ivr_auth.store import controls, outbox, trunk_state, verifications
from ivr_auth.store import dashboard as board

logger = logging.getLogger(__name__)

FlowRunner = Callable[[FlowContext, models.Verification], Awaitable[None]]
FLOWS: dict[str, FlowRunner] = {"dtmf": dtmf_flow.run, "voice": voice_flow.run}
# Due work waiting for a shared trunk's token is looked at again after at
# least this long; trunks' shared down marks are read at least this often.
MIN_PACED_WAIT = 0.02
# The dialplan's slot loop (ivr-auth-extensions.conf, [ivr-auth-inbound]):
# its label and the variable holding the slot it tries.
INBOUND_SLOT_LABEL = "slot"
INBOUND_SLOT_VARIABLE = "IVRAUTH_SLOT"
TRUNK_SYNC_SECONDS = 5.0


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Controller:
    def __init__(
        self,
        cfg: config.Config,
        store: store_mod.Store,
        node: ari_node.AriNode,
        *,
        name: str | None = None,
        library: prompts.Library | None = None,
        metrics: metrics_mod.Metrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics or metrics_mod.Metrics(None)
        self.store = store
        self.node = node
        self.name = name or cfg.dialer.name or default_name()
        self._ctx = FlowContext(
            cfg=cfg,
            store=store,
            node=node,
            controller=self.name,
            prompts=library or prompts.Library.from_config(cfg),
            track=self._track,
            trunk_failed=self._trunk_failed,
            metrics=self.metrics,
        )
        self.trunks = trunks.Trunks.from_config(cfg)
        self._wake = asyncio.Event()
        self._calls: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._channels: dict[uuid.UUID, str] = {}
        # Inbound calls: every one in progress, and the requests they hold.
        self._inbound: set[asyncio.Task[None]] = set()
        self._leased: set[uuid.UUID] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._claiming = False
        self._running = False
        # The last claim took all the room there was (or there was none).
        self._short_of_room = False
        # Told when a webhook was written (the process's sender wakes).
        self.on_webhook: Callable[[], None] = _nothing
        self._started_at = presence.started_now()
        # The database was out of reach (a pass, a renewal or the LISTEN
        # connection failed); leases taken for lost from then on (monotonic).
        self._store_trouble = False
        self._orphans_from = 0.0
        # Trunks marked down elsewhere (NOTIFY); tasks telling others of ours.
        self._trunks_changed = asyncio.Event()
        self._sharing: set[asyncio.Task[None]] = set()
        self.listening = False
        node.on_connect = self.on_ari_connect
        node.dispatcher.fallback = self.on_unrouted_event

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.node.start()
        self._claiming = True
        self._running = True
        for coro, name in (
            (self._dial_loop(), "dialer"),
            (self._heartbeat_loop(), "heartbeat"),
            (self._reaper_loop(), "reaper"),
            (self._listen_loop(), "listener"),
            (self._housekeeping_loop(), "housekeeping"),
            (self._node_watch_loop(), "node-watch"),
            (self._trunk_sync_loop(), "trunk-sync"),
            (presence.run(self.store.dashboard, self.report), "presence"),
        ):
            self._tasks.append(asyncio.create_task(coro, name=f"{self.name}-{name}"))
        logger.info("controller %s started on node %s (app %s)", self.name, self.node.name, self.node.app)

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming, drain calls for ``grace`` seconds, hang up the rest."""
        self._claiming = False
        grace = self.cfg.dialer.shutdown_grace_seconds if grace is None else grace
        pending = [*self._calls.values(), *self._inbound]
        if pending:
            logger.info("draining %d call(s) for up to %.0fs", len(pending), grace)
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=10)
        self._running = False
        await _cancel_all(self._tasks)
        self._tasks.clear()
        await presence.forget(self.store.dashboard, self.name)
        await self.node.close()

    async def kill(self) -> None:
        """Stop at once, as a crash would: no drain, no hangups, leases left to expire."""
        self._claiming = False
        self._running = False
        await _cancel_all([*self._tasks, *self._calls.values(), *self._inbound])
        self._tasks.clear()
        await self.node.close()

    def report(self, now: float) -> board.ControllerReport:
        """What the dashboard shows of this controller (``now``: monotonic)."""
        return board.ControllerReport(
            name=self.name,
            node=self.node.name,
            ari_connected=self.node.stream.connected,
            calls=self.calls_in_progress,
            trunks=presence.trunk_states(self.trunks, now),
            started_at=self._started_at,
        )

    @property
    def calls_in_progress(self) -> int:
        return len(self._calls) + len(self._inbound)

    def wake(self) -> None:
        self._wake.set()

    # --- the dialer ----------------------------------------------------------------------

    async def _dial_loop(self) -> None:
        poll = self.cfg.dialer.poll_interval_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll)
            self._wake.clear()
            if not self._claiming:
                continue
            try:
                more = await self._dial_once()
            except errors.StoreUnavailable as exc:
                tasks.reraise_cancellation(exc)
                logger.warning("queue not reachable: %s", exc)
                await asyncio.sleep(poll)
                continue
            except errors.AppNotRegistered as exc:
                logger.warning("not dialling: %s", exc)
                continue
            except Exception as exc:
                tasks.reraise_cancellation(exc)
                logger.exception("dialer pass failed")
                await asyncio.sleep(poll)
                continue
            if more:
                self._wake.set()

    async def _dial_once(self) -> bool:
        """Claim what the trunks can take now (free channels, calls-per-second
        tokens: this controller's, and the trunks' shared ones in the claim)
        and start those calls; True if the queue may hold more that could be
        started now."""
        now = time.monotonic()
        offers = self.trunks.offers(now)
        room = sum(offer.room for offer in offers)
        # Whether work may be waiting for room: then a call's end, which frees
        # some, wakes the dialer; else it need not (new work is announced).
        self._short_of_room = True
        if room <= 0:
            wait = self.trunks.wait_time(now)
            if wait is not None:  # None: every trunk is full; a call's end wakes us
                asyncio.get_running_loop().call_later(wait, self._wake.set)
            return False
        if not self.node.stream.connected:
            return False  # never originate into an app without its websocket
        claimed, waiting = await self.store.verifications.claim(
            self.name, self.node.name, offers, self.cfg.dialer.lease_seconds
        )
        now = time.monotonic()
        for verification in claimed:
            self._start_call(verification, self.trunks.take(verification.trunk or offers[0].name, now))
        if waiting:
            # Due work the trunks could not take now, for other controllers'
            # calls on them: look again when a token is due (or, their
            # channels full, at the latest when the poll comes round).
            wait = max(MIN_PACED_WAIT, min(1.0 / offer.rate for offer in offers))
            asyncio.get_running_loop().call_later(wait, self._wake.set)
            return False
        self._short_of_room = len(claimed) == room
        return len(claimed) == room

    def _start_call(self, verification: models.Verification, trunk: config.TrunkConfig) -> None:
        flow = FLOWS.get(verification.method)
        ctx = dataclasses.replace(self._ctx, trunk=trunk)
        task = asyncio.create_task(self._run_call(flow, ctx, verification), name=f"call-{verification.id}")
        self._calls[verification.id] = task
        self._channels[verification.id] = flows.channel_id_for(verification)

    async def _run_call(self, flow: FlowRunner | None, ctx: FlowContext, verification: models.Verification) -> None:
        try:
            if flow is None:
                await self.store.verifications.transition(
                    verification.id,
                    [states.Status.CALLING],
                    states.Status.ERROR,
                    reason=reasons.Reason.UNSUPPORTED_METHOD,
                )
                return
            await flow(ctx, verification)
        except Exception:
            # The flows settle their own failures; this is the last guard.
            logger.exception("call task failed", extra={"verification_id": str(verification.id)})
        finally:
            self._calls.pop(verification.id, None)
            self._channels.pop(verification.id, None)
            if ctx.trunk is not None:
                self.trunks.release(ctx.trunk.name)
            if self._short_of_room:
                self._wake.set()  # room freed for what may be waiting

    def _trunk_failed(self, name: str) -> float:
        """Mark the trunk down (here, and for every controller through
        Postgres); the seconds until a trunk is up (0.0: another is now)."""
        now = time.monotonic()
        self.trunks.failed(name, now)
        retry = self.trunks.retry_seconds
        logger.warning("trunk %s failed; skipping it for %.0fs where another is up", name, retry, extra={"trunk": name})
        task = asyncio.create_task(self._share_trunk_down(name, retry), name=f"{self.name}-trunk-down")
        self._sharing.add(task)
        task.add_done_callback(self._sharing.discard)
        return self.trunks.until_up(now)

    async def _share_trunk_down(self, name: str, seconds: float) -> None:
        try:
            burst = self.trunks[name].bucket.burst
            await self.store.trunk_state.mark_down(name, seconds, self.name, burst)
        except errors.StoreError as exc:
            tasks.reraise_cancellation(exc)
            logger.warning("could not tell the other controllers trunk %s is down: %s", name, exc)

    async def _trunk_sync_loop(self) -> None:
        """Which trunks the other controllers found down: read now and then,
        and whenever one is marked (NOTIFY), so that a trunk down for one is
        down for all, also for a controller that started after it failed."""
        while True:
            await self.sync_trunks()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._trunks_changed.wait(), TRUNK_SYNC_SECONDS)
            self._trunks_changed.clear()

    async def sync_trunks(self) -> None:
        try:
            down = await self.store.trunk_state.down()
        except errors.StoreError as exc:
            tasks.reraise_cancellation(exc)
            logger.debug("could not read the trunks' shared state: %s", exc)
            return
        now = time.monotonic()
        for mark in down:
            was_up = mark.trunk in self.trunks.names and self.trunks[mark.trunk].up(now)
            self.trunks.down_for(mark.trunk, now, mark.seconds)
            if was_up:
                logger.warning(
                    "trunk %s marked down by %s; skipping it for %.0fs where another is up",
                    mark.trunk,
                    mark.by,
                    mark.seconds,
                    extra={"trunk": mark.trunk},
                )

    # --- inbound calls -------------------------------------------------------------------

    async def on_unrouted_event(self, event: ari.Event) -> None:
        """A call entering our inbound slot from the dialplan: not one we
        placed, so no call routes its events yet. Where StasisBroadcast
        offers it first (``CallBroadcast``), we claim it, and it enters."""
        if event.get("type") == "CallBroadcast":
            await self._claim_inbound(event)
            return
        if event.get("type") != "StasisStart" or not self.node.is_inbound_app(event.get("application")):
            return
        channel_id = str((event.get("channel") or {}).get("id", ""))
        if not channel_id or channel_id in self.node.dispatcher:
            return
        if not self._claiming:
            await self._pass_on(event, channel_id)
            return
        # Subscribed before this handler returns, so the call's next event is routed to it.
        session = callsession.CallSession(self.node, channel_id)
        task = asyncio.create_task(inbound_flow.run(self._ctx, session, event), name=f"inbound-{channel_id}")
        self._inbound.add(task)
        task.add_done_callback(self._inbound_done)

    async def _claim_inbound(self, event: ari.Event) -> None:
        """Claim a broadcast inbound call for our slot, unless draining. A
        lost claim is the normal case with several controllers: another
        won, or the offer ended (timed out, the caller hung up)."""
        app = self.node.inbound_app
        channel_id = str((event.get("channel") or {}).get("id", ""))
        if not self._claiming or app is None or not channel_id:
            return
        try:
            won = await self.node.client.claim(channel_id, app)
        except errors.AriError as exc:
            logger.warning("claim of inbound channel %s failed: %s", channel_id, exc)
            return
        self.metrics.inbound_claim(self.node.name, won=won)
        logger.debug("inbound channel %s %s by %s", channel_id, "claimed" if won else "taken elsewhere", app)

    async def _pass_on(self, event: ari.Event, channel_id: str) -> None:
        """An inbound call reaching our slot while we drain (Stasis() into
        the slot we still hold, where Asterisk has no StasisBroadcast, or a
        claim made just before): back to the dialplan's slot loop at the
        next slot, so that a controller staying up takes it; with none, the
        dialplan refuses it unanswered as ever."""
        channel = event.get("channel") or {}
        dialplan = channel.get("dialplan") or {}
        slot = slots.slot_of(self.node.inbound_base or "", str(event.get("application") or ""))
        context, extension = str(dialplan.get("context") or ""), str(dialplan.get("exten") or "")
        try:
            if slot is None or not context or not extension:
                raise errors.AriError(f"no slot or dialplan place to go back to ({context!r}, {extension!r})")
            await self.node.client.set_variable(channel_id, INBOUND_SLOT_VARIABLE, str(slot + 1))
            await self.node.client.continue_at(channel_id, context, extension, INBOUND_SLOT_LABEL)
        except errors.AriError as exc:
            logger.warning("draining: could not pass inbound call %s on (%s); refusing it", channel_id, exc)
            with contextlib.suppress(errors.AriError):
                await self.node.client.hangup(channel_id, "congestion")
            return
        logger.info("draining: inbound call %s passed on to slot %d", channel_id, slot + 1)

    def _inbound_done(self, task: asyncio.Task[None]) -> None:
        self._inbound.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("inbound call task failed", exc_info=task.exception())

    def _track(self, verification_id: uuid.UUID, channel_id: str | None) -> None:
        if channel_id is None:
            self._leased.discard(verification_id)
            self._channels.pop(verification_id, None)
        else:
            self._leased.add(verification_id)
            self._channels[verification_id] = channel_id

    # --- leases and orphans ------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self.cfg.dialer.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.store.verifications.heartbeat(
                    self.name, [*self._calls, *self._leased], self.cfg.dialer.lease_seconds
                )
            except errors.StoreError as exc:
                tasks.reraise_cancellation(exc)
                self._store_trouble = True
                logger.warning("lease renewal failed: %s", exc)

    async def _reaper_loop(self) -> None:
        while True:
            try:
                await self.reap()
            except errors.StoreError as exc:
                tasks.reraise_cancellation(exc)
                self._store_trouble = True
                logger.warning("reaper pass failed: %s", exc)
            except Exception as exc:
                tasks.reraise_cancellation(exc)
                logger.exception("reaper pass failed")
            await asyncio.sleep(self.cfg.dialer.reaper_interval_seconds)

    async def reap(self) -> int:
        """Expire what waited too long in the queue, move requests on to
        their next channel when its time came, and settle requests
        whose controller is gone: a call that was never answered goes back to
        the queue (time and attempts allowing); one that was in progress ends
        as ``error``. Its channel, if still up, is hung up."""
        expired = await self.store.verifications.expire_queued()
        # Requests whose next channel's time came (an SMS unanswered, then a call).
        moved = await self.store.verifications.advance_channels()
        for request in moved:
            logger.info(
                "request %s moved on to its channel %s (%d)",
                request.id,
                request.method,
                request.channel_index,
                extra={"verification_id": str(request.id)},
            )
        monotonic_now = time.monotonic()
        if self._store_trouble:
            # Back after the database was out of reach: every controller's
            # leases ran on meanwhile, their renewals failing. A lease is taken
            # for lost only once its controller had a lease period to renew it,
            # or calls still up (ringing ones redialled) would be settled under
            # a live controller.
            self._store_trouble = False
            self._orphans_from = monotonic_now + self.cfg.dialer.lease_seconds
            logger.info(
                "database reachable again: no lease is taken for lost for %.0fs, while controllers renew theirs",
                self.cfg.dialer.lease_seconds,
            )
        if monotonic_now < self._orphans_from:
            if expired:
                logger.info("expired %d queued request(s)", expired)
            return 0
        settled = 0
        async with self.store.verifications.orphans() as (orphans, conn):
            for orphan in orphans:
                if orphan.id in self._calls or orphan.id in self._leased:
                    continue  # ours and alive: the heartbeat is merely late
                if orphan.channel_id:
                    with contextlib.suppress(errors.AriError):
                        await self.node.client.hangup(orphan.channel_id)
                now = dt.datetime.now(dt.UTC)
                retry = (
                    orphan.status is states.Status.CALLING
                    and orphan.call_attempts < orphan.max_call_attempts
                    and orphan.expires_at > now
                )
                to_status = states.Status.QUEUED if retry else states.Status.ERROR
                await self.store.verifications.settle_orphan(
                    conn,
                    orphan,
                    to_status,
                    next_attempt_at=now if retry else None,
                    detail={"lost_controller": orphan.lease_owner, "reaped_by": self.name},
                )
                settled += 1
                logger.warning(
                    "settled orphaned request %s (%s -> %s)", orphan.id, orphan.status.value, to_status.value
                )
        if expired:
            logger.info("expired %d queued request(s)", expired)
        return settled

    # --- retention and alarms --------------------------------------------------------------

    async def _housekeeping_loop(self) -> None:
        lim = self.cfg.limits
        next_purge = 0.0
        while True:
            try:
                await self.raise_prefix_alarms()
                if time.monotonic() >= next_purge:
                    purged = await self.store.controls.purge(lim.retention_days)
                    next_purge = time.monotonic() + lim.purge_interval_seconds
                    if purged:
                        logger.info("retention purge anonymised %d finished request(s)", purged)
            except errors.StoreError as exc:
                tasks.reraise_cancellation(exc)
                logger.warning("housekeeping pass failed: %s", exc)
            except Exception as exc:
                tasks.reraise_cancellation(exc)
                logger.exception("housekeeping pass failed")
            await asyncio.sleep(min(60.0, lim.purge_interval_seconds))

    async def raise_prefix_alarms(self) -> list[controls.PrefixAlarm]:
        lim = self.cfg.limits
        alarms = await self.store.controls.prefix_alarms(
            digits=lim.prefix_digits,
            window_seconds=lim.prefix_alarm_window_seconds,
            min_calls=lim.prefix_alarm_min_calls,
            max_ratio=lim.prefix_alarm_max_verified_ratio,
        )
        for alarm in alarms:
            logger.warning(
                "prefix alarm: %s calls to %s... in %d s, %s verified (call pumping?)",
                alarm.placed,
                alarm.prefix,
                lim.prefix_alarm_window_seconds,
                alarm.verified,
                extra={"prefix": alarm.prefix},
            )
        return alarms

    # --- LISTEN/NOTIFY -------------------------------------------------------------------

    async def _listen_loop(self) -> None:
        """Wake the dialer on new work and hang up canceled calls. A hint only:
        the dialer polls anyway, so a lost connection costs latency, not work."""
        backoff = 0.5
        while True:
            try:
                channels = [
                    verifications.QUEUE_CHANNEL,
                    verifications.CANCEL_CHANNEL,
                    outbox.WEBHOOK_CHANNEL,
                    trunk_state.CHANNEL,
                ]
                async with self.store.db.listen(channels) as notes:
                    self.listening = True
                    backoff = 0.5
                    self._wake.set()  # anything queued while we were not listening
                    async for note in notes:
                        await self._on_notify(note.channel, note.payload)
            except errors.StoreError as exc:
                if not self._running:
                    raise asyncio.CancelledError from exc
                tasks.reraise_cancellation(exc)
                # Postgres restarting drops this connection first of all:
                # the reaper gives leases their time to be renewed after.
                self._store_trouble = True
                logger.warning("listen connection lost: %s", exc)
            finally:
                self.listening = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    async def _on_notify(self, channel: str, payload: str) -> None:
        if channel == verifications.QUEUE_CHANNEL:
            self._wake.set()
            return
        if channel == outbox.WEBHOOK_CHANNEL:
            self.on_webhook()
            return
        if channel == trunk_state.CHANNEL:
            self._trunks_changed.set()
            return
        if channel == verifications.CANCEL_CHANNEL:
            with contextlib.suppress(ValueError):
                channel_id = self._channels.get(uuid.UUID(payload))
                if channel_id is not None:
                    logger.info("request %s settled elsewhere; hanging up its call", payload)
                    with contextlib.suppress(errors.AriError):
                        await self.node.client.hangup(channel_id)

    # --- websocket reconnect -----------------------------------------------------------------

    async def on_ari_connect(self) -> None:
        """Events sent while the websocket was down are lost. Before the new
        socket's events are read, each call in progress is brought up to date
        with Asterisk: a call whose channel vanished meanwhile (outbound or
        inbound) is told so, so that its task ends; one that missed its
        answer or a prompt's end is told of it. Then the channels of calls
        settled while the node was lost, and any of ours left in our app that
        no call follows, are hung up (``reconcile``)."""
        # Its Asterisk restarted meanwhile: the calls it had did not end as
        # their callers ended them, whatever the made-up end would say.
        tell_gone = functools.partial(self._tell_gone, node_lost=True) if self.node.restarted else self._tell_gone
        try:
            done = await self._reconciler.after_reconnect(tell_gone)
        except errors.AriError as exc:
            logger.warning("could not list channels after reconnect: %s", exc)
            return
        except Exception as exc:
            # The events must be read whatever happened here.
            tasks.reraise_cancellation(exc)
            logger.exception("reconciling the calls after reconnect failed")
            return
        self.metrics.reconciled(self.node.name, done.told, gone=done.gone, orphans=len(done.hung_up))
        if done.gone or done.told or done.hung_up:
            logger.warning(
                "after reconnect to node %s: %d call(s) found gone, %d told what they missed (%s),"
                " %d orphaned channel(s) hung up",
                self.node.name,
                done.gone,
                sum(done.told.values()),
                ", ".join(f"{kind} {n}" for kind, n in sorted(done.told.items())) or "nothing",
                len(done.hung_up),
            )

    async def _node_watch_loop(self) -> None:
        """A node whose websocket stays down is taken for lost, with its calls.
        Nothing new is dialled through it meanwhile (the dialer needs the
        websocket), so the other nodes' controllers take the queue."""
        lost_after = self.cfg.dialer.node_lost_seconds
        down_since: float | None = None
        while True:
            await asyncio.sleep(min(1.0, lost_after / 4))
            if self.node.stream.connected:
                down_since = None
                continue
            now = time.monotonic()
            down_since = down_since or now
            waiting = self.node.dispatcher.channels()
            if now - down_since >= lost_after and waiting:
                logger.warning(
                    "node %s unreachable for %.0fs: settling its %d call(s)",
                    self.node.name,
                    now - down_since,
                    len(waiting),
                )
                # Hung up if the node comes back with them (a partition): settled now, once.
                self._reconciler.node_lost(waiting)
                await self._tell_gone(waiting, f"node {self.node.name} lost", node_lost=True)

    async def _tell_gone(self, channel_ids: list[str], why: str, *, node_lost: bool = False) -> None:
        for channel_id in channel_ids:
            if channel_id in self.node.dispatcher:
                event: ari.Event = {
                    "type": "ChannelDestroyed",
                    "channel": {"id": channel_id},
                    "cause": 0,
                    "cause_txt": why,
                    causes.MADE_UP: True,
                }
                if node_lost:
                    event[callsession.NODE_LOST] = True
                await self.node.dispatcher(event)

    @functools.cached_property
    def _reconciler(self) -> reconcile.Reconciler:
        return reconcile.Reconciler(self.node, self._ctx.sessions)


def _nothing() -> None:
    return None


async def _cancel_all(tasks: list[asyncio.Task[None]], timeout: float = 10.0) -> None:
    """Cancel and wait, but never forever: shutdown must end."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, stuck = await asyncio.wait(tasks, timeout=timeout)
    for task in stuck:
        logger.warning("task %s did not stop within %.0fs of being canceled", task.get_name(), timeout)
