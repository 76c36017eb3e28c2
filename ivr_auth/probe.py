"""A test call: dial a number through the trunk, play a prompt, collect the
keys the callee presses, hang up, and report what happened.

It is the smallest whole call through ARI (originate, answer into Stasis,
playback, DTMF events, hangup causes) and is what ``ivr-auth call`` and
``make demo`` run until the verification flows use the same pieces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass

from ivr_auth import causes, config, dtmf, errors, phone, types
from ivr_auth.ari import node as ari_node

logger = logging.getLogger(__name__)

STASIS_ENDED = frozenset({"StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"})


@dataclass(frozen=True)
class ProbeOptions:
    media: tuple[str, ...] = ("sound:vm-enter-num-to-call",)
    language: str = "en"
    max_digits: int = 6
    ring_timeout: int = 30
    first_digit_timeout: float = 10.0
    inter_digit_timeout: float = 5.0


@dataclass(frozen=True)
class ProbeResult:
    number: str
    channel_id: str
    outcome: causes.Outcome
    digits: str = ""
    entry_ended: str | None = None
    cause: int | None = None
    cause_txt: str = ""
    hung_up_by_callee: bool = False
    setup_seconds: float | None = None
    duration_seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "number": phone.mask(self.number),
            "channel_id": self.channel_id,
            "outcome": self.outcome.value,
            "digits": self.digits,
            "entry_ended": self.entry_ended,
            "cause": self.cause,
            "cause_txt": self.cause_txt,
            "hung_up_by_callee": self.hung_up_by_callee,
            "setup_seconds": self.setup_seconds,
            "duration_seconds": round(self.duration_seconds, 3),
        }


async def call(node: ari_node.AriNode, cfg: config.Config, e164: str, options: ProbeOptions) -> ProbeResult:
    channel_id = f"ivrauth-probe-{uuid.uuid4().hex}"
    queue = node.dispatcher.subscribe(channel_id)
    started = time.monotonic()
    answered = False
    try:
        await node.require_app()
        await node.client.originate(
            endpoint=phone.dial_endpoint(e164, cfg.trunk, cfg.default_country),
            app=node.app,
            channel_id=channel_id,
            app_args="probe",
            caller_id=phone.caller_id(cfg.trunk, cfg.default_country),
            timeout=options.ring_timeout,
        )
        logger.info("probe originated", extra={"channel_id": channel_id, "number": phone.mask(e164)})
        destroyed = await _wait_answer(queue, options.ring_timeout + 15)
        if destroyed is not None:
            cause = int(destroyed.get("cause", 0))
            return ProbeResult(
                number=e164,
                channel_id=channel_id,
                outcome=causes.unanswered_outcome(cause),
                cause=cause,
                cause_txt=str(destroyed.get("cause_txt", "")),
                duration_seconds=time.monotonic() - started,
            )
        answered = True
        setup_seconds = time.monotonic() - started
        collector, hangup_event = await _collect(node, channel_id, queue, options)
        hung_up = hangup_event is not None
        if not hung_up:
            await node.client.hangup(channel_id)
            hangup_event = await _wait_destroyed(queue, 10)
        end_cause = int(hangup_event.get("cause", 16)) if hangup_event else None
        return ProbeResult(
            number=e164,
            channel_id=channel_id,
            outcome=causes.Outcome.ANSWERED,
            digits=collector.value,
            entry_ended=collector.ended.value if collector.ended else None,
            cause=end_cause,
            cause_txt=str(hangup_event.get("cause_txt", "")) if hangup_event else "",
            hung_up_by_callee=hung_up,
            setup_seconds=round(setup_seconds, 3),
            duration_seconds=time.monotonic() - started,
        )
    except BaseException:
        # Never leave a channel up in silence because our side failed.
        if answered or channel_id in node.dispatcher:
            with contextlib.suppress(errors.AriError, asyncio.CancelledError):
                await node.client.hangup(channel_id)
        raise
    finally:
        node.dispatcher.unsubscribe(channel_id)


async def _wait_answer(queue: asyncio.Queue[types.AriEvent], timeout: float) -> types.AriEvent | None:
    """None once the channel is in Stasis (answered); the destroy event if it never was."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise errors.CallFailed(f"no answer and no hangup reported within {timeout:.0f}s")
        try:
            event = await asyncio.wait_for(queue.get(), remaining)
        except TimeoutError:
            continue
        kind = event.get("type")
        if kind == "StasisStart":
            return None
        if kind == "ChannelDestroyed":
            return event


async def _collect(
    node: ari_node.AriNode,
    channel_id: str,
    queue: asyncio.Queue[types.AriEvent],
    options: ProbeOptions,
) -> tuple[dtmf.DigitCollector, types.AriEvent | None]:
    """Play the prompt and collect keys; keys barge in and stop the prompt."""
    collector = dtmf.DigitCollector(
        max_digits=options.max_digits,
        started_at=time.monotonic(),
        first_digit_timeout=options.first_digit_timeout,
        inter_digit_timeout=options.inter_digit_timeout,
    )
    playback_id = f"{channel_id}-prompt"
    playing = True
    await node.client.play(channel_id, list(options.media), playback_id=playback_id, lang=options.language)
    while not collector.done:
        wait = collector.deadline() - time.monotonic()
        if playing:
            # While the prompt plays, the first-key clock has not started.
            wait = max(wait, options.first_digit_timeout)
        try:
            event = await asyncio.wait_for(queue.get(), max(wait, 0.0))
        except TimeoutError:
            if not playing:
                collector.tick(time.monotonic())
            continue
        kind = event.get("type")
        now = time.monotonic()
        if kind == "ChannelDtmfReceived":
            if playing:
                playing = False
                await node.client.stop_playback(playback_id)
            collector.feed(str(event.get("digit", "")), now)
        elif kind == "PlaybackFinished":
            playing = False
            collector.restart(now)
        elif kind in STASIS_ENDED:
            collector.hangup()
            destroyed = event if kind == "ChannelDestroyed" else await _wait_destroyed(queue, 5)
            return collector, destroyed or event
    return collector, None


async def _wait_destroyed(queue: asyncio.Queue[types.AriEvent], timeout: float) -> types.AriEvent | None:
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            event = await asyncio.wait_for(queue.get(), remaining)
        except TimeoutError:
            return None
        if event.get("type") == "ChannelDestroyed":
            return event
    return None
