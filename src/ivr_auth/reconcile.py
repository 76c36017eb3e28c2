"""After the events websocket comes back: Asterisk does not keep the events
it sent while the socket was down, so what each call in progress waits to
hear of is asked of Asterisk instead, and the calls are told what they
missed as made-up events (``causes.MADE_UP``):

- a channel gone meanwhile: a ChannelDestroyed (the controller's own path);
- a call that waits for its answer and whose channel is ``Up``: its
  StasisStart (``Ringing``: the ChannelStateChange that says it rang);
- a prompt that ``GET /playbacks/{id}`` no longer finds: its PlaybackFinished.

Keys pressed meanwhile cannot be had back: the entry runs into its own
timers. And channels of ours that no call follows any more are hung up: those
of calls settled while their node was lost (a partition, not a crash: the
node comes back with them), and any other of ours left in our Stasis app.
Their requests were settled already; nothing here touches the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr_auth import ari, callsession, causes, errors, flows
from ivr_auth.ari import node as ari_node

logger = logging.getLogger(__name__)

# ARI requests in flight at once for one reconnect (thousands of calls may wait).
CONCURRENCY = 16
GONE_WHY = "channel gone while the events websocket was down"

Channel = Mapping[str, Any]
TellGone = Callable[[list[str], str], Awaitable[None]]


def missed(
    channel_id: str,
    channel: Channel,
    *,
    awaiting_answer: bool,
    finished: Iterable[str],
    app: str,
) -> list[ari.Event]:
    """The events a call whose channel is still there (``channel``, as
    ``GET /channels`` has it) missed: its answer or ringing while it waited
    for the answer, and the end of each of its prompts in ``finished``."""
    found: list[ari.Event] = []
    state = channel.get("state")
    if awaiting_answer and state == "Up":
        found.append({"type": "StasisStart", "application": app, "args": [], "channel": dict(channel)})
    elif awaiting_answer and state == "Ringing":
        found.append({"type": "ChannelStateChange", "channel": dict(channel)})
    for playback_id in sorted(finished):
        found.append(
            {
                "type": "PlaybackFinished",
                "playback": {"id": playback_id, "target_uri": f"channel:{channel_id}", "state": "done"},
            }
        )
    for event in found:
        event[causes.MADE_UP] = True
    return found


def orphans(in_app: Iterable[str], tracked: Collection[str], settled: Iterable[str]) -> set[str]:
    """The channels to hang up: those of calls settled while their node was
    lost (``settled``), whether or not a call still follows them (one that
    does is ending), and those of ours in our app (``in_app``) that no call
    follows."""
    untracked = {c for c in in_app if flows.is_our_channel(c) and c not in tracked}
    return untracked | set(settled)


@dataclass
class Outcome:
    """What one reconnect did, for the log and the metrics."""

    gone: int = 0
    # Made-up events by type.
    told: Counter[str] = field(default_factory=Counter)
    hung_up: list[str] = field(default_factory=list)


class Reconciler:
    """One node's reconnects: the calls in progress (``sessions``), and the
    channels of the calls settled while the node was lost, until hung up."""

    def __init__(
        self, node: ari_node.AriNode, sessions: callsession.Sessions, *, concurrency: int = CONCURRENCY
    ) -> None:
        self.node = node
        self.sessions = sessions
        self._limit = asyncio.Semaphore(concurrency)
        self._settled: set[str] = set()

    def node_lost(self, channel_ids: Iterable[str]) -> None:
        """These channels' calls were settled with their node: hang them up
        if it comes back."""
        self._settled.update(channel_ids)

    async def after_reconnect(self, tell_gone: TellGone) -> Outcome:
        """Bring every call up to date, before the new websocket's events
        are read; then hang up the orphans. Raises ``errors.AriError`` when
        the channels cannot be listed (nothing is told then)."""
        outcome = Outcome()
        waiting = self.node.dispatcher.channels()
        live: dict[str, Channel] = {}
        if waiting:
            live = {str(c["id"]): c for c in await self.node.client.channels()}
            gone = [c for c in waiting if c not in live]
            await tell_gone(gone, GONE_WHY)
            outcome.gone = len(gone)
        checks = [self._check(s, live[s.channel_id], outcome) for s in self.sessions if s.channel_id in live]
        await asyncio.gather(*checks)
        outcome.hung_up = await self._hang_up_orphans()
        return outcome

    async def _check(self, session: callsession.CallSession, channel: Channel, outcome: Outcome) -> None:
        if not session.awaiting_answer and not session.playbacks:
            return
        finished = [p for p in sorted(session.playbacks) if await self._finished(p, session.channel_id)]
        events = missed(
            session.channel_id,
            channel,
            awaiting_answer=session.awaiting_answer,
            finished=finished,
            app=self.node.app,
        )
        for event in events:
            # Only what the call still waits for: it went on meanwhile (its timers run).
            if event["type"] == "PlaybackFinished" and event["playback"]["id"] not in session.playbacks:
                continue
            if event["type"] != "PlaybackFinished" and not session.awaiting_answer:
                continue
            session.tell(event)
            outcome.told[event["type"]] += 1
            logger.info(
                "told a call the %s it missed while the events websocket was down",
                event["type"],
                extra={"channel_id": session.channel_id, "node": self.node.name},
            )

    async def _finished(self, playback_id: str, channel_id: str) -> bool:
        """Whether Asterisk no longer has the playback (False when it cannot
        say: the call then waits for the event as before)."""
        async with self._limit:
            try:
                await self.node.client.request("GET", f"playbacks/{playback_id}")
            except errors.AriError as exc:
                if exc.status == 404:
                    return True
                logger.warning(
                    "could not look up playback %s after reconnect: %s",
                    playback_id,
                    exc,
                    extra={"channel_id": channel_id, "node": self.node.name},
                )
            return False

    async def _hang_up_orphans(self) -> list[str]:
        try:
            application = await self.node.client.application(self.node.app)
        except errors.AriError as exc:
            logger.warning("could not list the channels in app %s after reconnect: %s", self.node.app, exc)
            application = None
        in_app = [str(c) for c in (application or {}).get("channel_ids") or []]
        settled, self._settled = self._settled, set()
        found = orphans(in_app, set(self.node.dispatcher.channels()), settled)
        results = await asyncio.gather(*(self._hang_up(c) for c in sorted(found)))
        return [c for c, hung_up in zip(sorted(found), results, strict=True) if hung_up]

    async def _hang_up(self, channel_id: str) -> bool:
        """True when it was there and is hung up now; a channel that could
        not be reached waits for the next reconnect."""
        async with self._limit:
            try:
                there = await self.node.client.hangup(channel_id)
            except errors.AriError as exc:
                logger.warning("could not hang up orphaned channel %s: %s", channel_id, exc)
                self._settled.add(channel_id)
                return False
        if there:
            logger.warning(
                "hung up orphaned channel %s (no call follows it; its request, if any, was settled already)",
                channel_id,
                extra={"channel_id": channel_id, "node": self.node.name},
            )
        return there
