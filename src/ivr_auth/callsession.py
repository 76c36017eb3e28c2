"""One channel under our control: originate, wait for answer, play, collect
keys, hang up. Events reach it through the node's dispatcher, routed by the
channel id we chose, so none is missed between a REST call and its answer.

When the far end goes away, every wait raises ``HungUp``; the flows catch it
once instead of checking after each step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ivr_auth import ari, causes, digit_collector, errors
from ivr_auth.ari import node as ari_node

logger = logging.getLogger(__name__)

GONE = frozenset({"StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"})
# Set on the ChannelDestroyed the controller makes up for a call whose node
# went away: Asterisk cannot tell us any more how the call ended.
NODE_LOST = "ivr_auth_node_lost"


class HungUp(errors.IvrAuthError):
    """The channel was hung up."""

    def __init__(self, cause: int | None, cause_txt: str) -> None:
        super().__init__(f"hung up (cause {cause}: {cause_txt})")
        self.cause = cause
        self.cause_txt = cause_txt


@dataclass(frozen=True)
class Unanswered:
    """How a call that never reached Stasis ended."""

    cause: int
    cause_txt: str
    # Our own ring timer ran out (Asterisk would report cause 0 for its timeout).
    timed_out: bool = False
    # The far end said it was ringing (180) before the end.
    rang: bool = False
    # From the originate to the end.
    seconds: float = 0.0
    # The SIP response that ended it (ARI's tech_cause, Asterisk 22 on; None: not given).
    tech_cause: int | None = None

    def outcome(self, timer_b_seconds: float) -> causes.Outcome:
        """What all that is known of this end says (``causes.unanswered_end``),
        with the trunk's INVITE time-out (PJSIP's timer B)."""
        return causes.unanswered_end(
            self.cause,
            tech_cause=self.tech_cause,
            rang=self.rang,
            seconds=self.seconds,
            timed_out=self.timed_out,
            timer_b_seconds=timer_b_seconds,
        )


@dataclass(frozen=True)
class CollectOptions:
    max_digits: int
    first_digit_timeout: float = 10.0
    inter_digit_timeout: float = 5.0
    terminator: str | None = "#"
    clear_key: str | None = "*"


class Sessions:
    """The calls in progress on one node, by channel id: those a reconnect
    reconciles with Asterisk (``reconcile``)."""

    def __init__(self) -> None:
        self._by_channel: dict[str, CallSession] = {}

    def _add(self, session: CallSession) -> None:
        self._by_channel[session.channel_id] = session

    def _discard(self, session: CallSession) -> None:
        if self._by_channel.get(session.channel_id) is session:
            del self._by_channel[session.channel_id]

    def __len__(self) -> int:
        return len(self._by_channel)

    def __iter__(self) -> Iterator[CallSession]:
        return iter(list(self._by_channel.values()))

    def __contains__(self, channel_id: object) -> bool:
        return channel_id in self._by_channel


class CallSession:
    def __init__(self, node: ari_node.AriNode, channel_id: str, sessions: Sessions | None = None) -> None:
        self.node = node
        self.channel_id = channel_id
        self._queue = node.dispatcher.subscribe(channel_id)
        self._playback_seq = 0
        self.ended: ari.Event | None = None
        self.answered_at: float | None = None
        # After an entry that ended on its last digit, callers often still
        # press "#": that key closes the entry before, not the next one.
        self._stray_terminator_until = 0.0
        # What the call waits to hear of, for a reconnect to check with
        # Asterisk: the events sent while the websocket was down are lost.
        self.awaiting_answer = False
        self.playbacks: set[str] = set()
        self._sessions: Sessions | None = None
        if sessions is not None:
            self.join(sessions)

    def join(self, sessions: Sessions) -> None:
        """Be one of ``sessions`` until closed."""
        self._sessions = sessions
        sessions._add(self)

    def tell(self, event: ari.Event) -> None:
        """Hand the call an event as if Asterisk had sent it (one made up
        after a reconnect, ``causes.MADE_UP``)."""
        self._queue.put_nowait(event)

    def close(self) -> None:
        self.node.dispatcher.unsubscribe(self.channel_id)
        if self._sessions is not None:
            self._sessions._discard(self)

    async def originate(
        self,
        *,
        endpoint: str,
        caller_id: str,
        ring_timeout: int,
        app_args: str,
        variables: Mapping[str, str] | None = None,
    ) -> None:
        await self.node.require_app()
        await self.node.client.originate(
            endpoint=endpoint,
            app=self.node.app,
            channel_id=self.channel_id,
            app_args=app_args,
            caller_id=caller_id,
            # Asterisk's own timer is a backstop a little after ours.
            timeout=ring_timeout + 5,
            variables=variables,
        )

    async def wait_answer(self, ring_timeout: float) -> Unanswered | None:
        """None once the callee answered (the channel entered Stasis)."""
        self.awaiting_answer = True
        try:
            return await self._wait_answer(ring_timeout)
        finally:
            self.awaiting_answer = False

    async def _wait_answer(self, ring_timeout: float) -> Unanswered | None:
        started = time.monotonic()
        deadline = started + ring_timeout
        rang = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await self.hangup("no_answer")
                destroyed = await self.wait_destroyed(5.0)
                seconds = time.monotonic() - started
                if destroyed is not None and int(destroyed.get("cause", 0)) not in (0, 16, 19, 127):
                    # The call ended for a reason of its own just as our timer ran out.
                    return _unanswered(destroyed, rang, seconds)
                return Unanswered(19, "No answer (ring timeout)", timed_out=True, rang=rang, seconds=seconds)
            try:
                event = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                continue
            kind = event.get("type")
            if kind == "StasisStart":
                self.answered_at = time.monotonic()
                return None
            if kind == "ChannelStateChange" and (event.get("channel") or {}).get("state") == "Ringing":
                rang = True
            if kind == "ChannelDestroyed":
                self.ended = event
                return _unanswered(event, rang, time.monotonic() - started)

    async def follow(self, app: str) -> None:
        """Hear of this channel to its end, not only while it is in Stasis:
        a channel that entered ``app`` from the dialplan (an inbound call) is
        otherwise lost to the app at StasisEnd, and waiting for its
        ChannelDestroyed would run into the timeout on every call."""
        with contextlib.suppress(errors.AriError):  # the call goes on; its end is then written late
            await self.node.client.subscribe(app, f"channel:{self.channel_id}")

    async def answer(self) -> None:
        await self.node.client.answer(self.channel_id)
        self.answered_at = time.monotonic()

    async def detect_machine(self, context: str, timeout: float) -> tuple[str, str]:
        """Run Asterisk's AMD() (ARI has none) on what the callee says, while
        the call stays in Stasis hearing silence: AMD() itself sends no RTP,
        and a call whose media stops gets dropped. A snoop channel that hears
        the callee (spy "in") is sent to ``context``, which runs AMD() and
        comes back into Stasis with the result as arguments. Returns
        (AMDSTATUS, AMDCAUSE); ("NOTSURE", "TIMEOUT") when no result comes in
        time."""
        client = self.node.client
        snoop_id = f"{self.channel_id}-amd"
        snoop_events = self.node.dispatcher.subscribe(snoop_id)
        try:
            await self._keep_media_flowing()
            try:
                await client.request(
                    "POST",
                    f"channels/{self.channel_id}/snoop",
                    params={"spy": "in", "app": self.node.app, "snoopId": snoop_id},
                )
            except errors.AriError as exc:
                if exc.status == 404:  # the call is already gone
                    raise await self._hung_up(None) from exc
                raise
            deadline = time.monotonic() + timeout
            while (remaining := deadline - time.monotonic()) > 0:
                event = await self._next_event_of(snoop_events, remaining)
                if event is None:
                    break
                kind = event.get("type")
                if kind == "ChannelDestroyed":
                    # A snoop ends with its call, whose own end follows (and raises HungUp).
                    settled = time.monotonic() + 1.0
                    while (left := settled - time.monotonic()) > 0 and await self._next_event(left) is not None:
                        pass
                    return "NOTSURE", "SNOOP_ENDED"
                if kind != "StasisStart":
                    continue
                args = [str(a) for a in event.get("args", [])]
                if args[:1] == ["amd"]:
                    return (args[1] if len(args) > 1 and args[1] else "NOTSURE"), args[2] if len(args) > 2 else ""
                # The snoop is in Stasis: off to AMD(), whose dialplan brings it back to this app by name.
                await client.request(
                    "POST", f"channels/{snoop_id}/variable", params={"variable": "IVRAUTH_APP", "value": self.node.app}
                )
                await client.request(
                    "POST",
                    f"channels/{snoop_id}/continue",
                    params={"context": context, "extension": "s", "priority": 1},
                )
            return "NOTSURE", "TIMEOUT"
        finally:
            self.node.dispatcher.unsubscribe(snoop_id)
            with contextlib.suppress(errors.AriError):
                await client.hangup(snoop_id)

    async def reject(self, reason: str = "busy") -> ari.Event | None:
        """Refuse a ringing inbound channel without answering it."""
        await self.hangup(reason)
        return await self.wait_destroyed(10.0)

    async def play(self, media: list[str], *, lang: str) -> None:
        """Play to the end (or raise HungUp)."""
        if not media:
            return
        playback_id = self._next_playback_id()
        await self._start_playback(media, playback_id, lang)
        try:
            while True:
                event = await self._next_event(None)
                if event is None:
                    continue
                if event.get("type") == "PlaybackFinished" and event.get("playback", {}).get("id") == playback_id:
                    return
        finally:
            self.playbacks.discard(playback_id)

    async def collect(self, media: list[str], options: CollectOptions, *, lang: str) -> digit_collector.DigitCollector:
        """Play ``media`` and collect keys; the first key stops the prompt. The
        first-key clock starts when the prompt ends."""
        collector = digit_collector.DigitCollector(
            max_digits=options.max_digits,
            started_at=time.monotonic(),
            first_digit_timeout=options.first_digit_timeout,
            inter_digit_timeout=options.inter_digit_timeout,
            terminator=options.terminator,
            clear_key=options.clear_key,
        )
        playback_id: str | None = None
        if media:
            playback_id = self._next_playback_id()
            await self._start_playback(media, playback_id, lang)
        try:
            await self._collect(collector, playback_id, options)
        finally:
            if playback_id is not None:
                self.playbacks.discard(playback_id)
        return collector

    async def _collect(
        self, collector: digit_collector.DigitCollector, playback_id: str | None, options: CollectOptions
    ) -> None:
        await self._keep_media_flowing()
        playing = playback_id is not None
        while not collector.done:
            wait = max(collector.deadline() - time.monotonic(), 0.0)
            if playing:
                wait = max(wait, options.first_digit_timeout)
            event = await self._next_event(wait)
            now = time.monotonic()
            if event is None:
                if not playing:
                    collector.tick(now)
                continue
            kind = event.get("type")
            if kind == "ChannelDtmfReceived":
                digit = str(event.get("digit", ""))
                if digit not in digit_collector.KEYS:
                    continue
                if digit == options.terminator and not collector.digits and now < self._stray_terminator_until:
                    self._stray_terminator_until = 0.0
                    continue
                if playing and playback_id is not None:
                    playing = False
                    self.playbacks.discard(playback_id)
                    await self.node.client.stop_playback(playback_id)
                collector.feed(digit, now)
            elif kind == "PlaybackFinished" and playing and event.get("playback", {}).get("id") == playback_id:
                # Once only: a made-up one (after a reconnect) may meet the real one.
                playing = False
                if playback_id is not None:
                    self.playbacks.discard(playback_id)
                collector.restart(now)
        if collector.ended is digit_collector.Ended.MAX_DIGITS and options.terminator:
            self._stray_terminator_until = time.monotonic() + options.inter_digit_timeout
        else:
            self._stray_terminator_until = 0.0
        if playing and playback_id is not None:
            # Entry ended before the prompt did (max digits keyed in a burst).
            await self.node.client.stop_playback(playback_id)

    async def hangup(self, reason: str = "normal") -> None:
        with contextlib.suppress(errors.AriError):
            await self.node.client.hangup(self.channel_id, reason)

    async def finish(self) -> ari.Event | None:
        """Hang up from our side and wait for the channel to be gone."""
        if self.ended is None:
            await self.hangup()
            return await self.wait_destroyed(10.0)
        return self.ended

    async def wait_destroyed(self, timeout: float) -> ari.Event | None:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                return None
            if event.get("type") == "ChannelDestroyed":
                self.ended = event
                return event
        return None

    async def _keep_media_flowing(self) -> None:
        """Silence to the phone while we wait for keys: nothing plays while a
        Stasis channel waits, and carriers and SBCs hang up a call whose RTP
        stops. Asterisk runs a channel's commands in turn, so silence asked
        for during a prompt starts the moment the prompt ends or is stopped;
        the next playback ends it (for good). One request per prompt that
        waits, sent at once: no event round trip leaves a gap. A failure costs
        the call nothing but the silence."""
        try:
            await self.node.client.start_silence(self.channel_id)
        except errors.AriError as exc:
            log = {"channel_id": self.channel_id}
            if exc.status == 404:
                logger.debug("no silence: the channel is gone", extra=log)
            else:
                logger.warning("could not start silence: %s", exc, extra=log)

    def _next_playback_id(self) -> str:
        self._playback_seq += 1
        return f"{self.channel_id}-p{self._playback_seq}"

    async def _start_playback(self, media: list[str], playback_id: str, lang: str) -> None:
        try:
            await self.node.client.play(self.channel_id, media, playback_id=playback_id, lang=lang)
        except errors.AriError as exc:
            if exc.status == 404:  # the channel is already gone
                raise await self._hung_up(None) from exc
            raise
        # Waited on from now (not before: a reconnect would find it not yet there, and take it for finished).
        self.playbacks.add(playback_id)

    async def _next_event(self, timeout: float | None) -> ari.Event | None:
        """The next event, or None on timeout; raises HungUp when the channel goes."""
        try:
            event = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        await self._raise_if_gone(event)
        return event

    async def _next_event_of(self, other: asyncio.Queue[ari.Event], timeout: float) -> ari.Event | None:
        """The next event on another channel's queue, or None on timeout. This
        channel's own events meanwhile are dropped, but its going raises, as
        in ``_next_event``."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            mine = asyncio.ensure_future(self._queue.get())
            theirs = asyncio.ensure_future(other.get())
            done, pending = await asyncio.wait((mine, theirs), timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            for waiter in pending:
                waiter.cancel()  # a queue keeps an item whose get() is cancelled
            if mine in done:
                await self._raise_if_gone(mine.result())
            if theirs in done:
                return theirs.result()
        return None

    async def _raise_if_gone(self, event: ari.Event) -> None:
        if event.get(NODE_LOST):
            raise errors.NodeLost(str(event.get("cause_txt", "node lost")))
        if event.get("type") in GONE:
            raise await self._hung_up(event)

    async def _hung_up(self, event: ari.Event | None) -> HungUp:
        destroyed = event if event is not None and event.get("type") == "ChannelDestroyed" else None
        if destroyed is None:
            destroyed = await self.wait_destroyed(5.0)
        self.ended = destroyed or event or {}
        return HungUp(*causes.recorded_hangup(self.ended, answered=self.answered_at is not None))


def _unanswered(event: ari.Event, rang: bool, seconds: float) -> Unanswered:
    tech_cause = event.get("tech_cause")
    return Unanswered(
        int(event.get("cause", 0)),
        str(event.get("cause_txt", "")),
        rang=rang,
        seconds=seconds,
        tech_cause=int(tech_cause) if tech_cause is not None else None,
    )
