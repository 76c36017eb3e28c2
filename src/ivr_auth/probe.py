"""A test call: dial a number through the trunk, play a prompt, collect the
keys the callee presses, hang up, and report what happened.

It is the smallest whole call through ARI (originate, answer into Stasis,
playback, DTMF events, hangup causes) and is what ``ivr-auth call`` and
``make demo`` run until the verification flows use the same pieces.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass

from ivr_auth import callsession, causes, config, phone
from ivr_auth.ari import node as ari_node

logger = logging.getLogger(__name__)


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
    session = callsession.CallSession(node, f"ivrauth-probe-{uuid.uuid4().hex}")
    trunk = cfg.outbound_trunks[0]  # a probe tests the path calls take first
    started = time.monotonic()
    try:
        await session.originate(
            endpoint=phone.dial_endpoint(e164, trunk, cfg.default_country),
            caller_id=phone.caller_id(trunk, cfg.default_country),
            ring_timeout=options.ring_timeout,
            app_args="probe",
        )
        logger.info("probe originated", extra={"channel_id": session.channel_id, "number": phone.mask(e164)})
        unanswered = await session.wait_answer(options.ring_timeout)
        if unanswered is not None:
            return ProbeResult(
                number=e164,
                channel_id=session.channel_id,
                outcome=unanswered.outcome(cfg.dialer.trunk_timeout_seconds),
                cause=unanswered.cause,
                cause_txt=unanswered.cause_txt,
                duration_seconds=time.monotonic() - started,
            )
        setup_seconds = time.monotonic() - started
        collect = callsession.CollectOptions(
            max_digits=options.max_digits,
            first_digit_timeout=options.first_digit_timeout,
            inter_digit_timeout=options.inter_digit_timeout,
        )
        hung_up = False
        try:
            collector = await session.collect(list(options.media), collect, lang=options.language)
        except callsession.HungUp:
            hung_up = True
            collector = None
        end = await session.finish() or {}
        # A callee's BYE may come as cause 0 (Asterisk 22, and 16 at times): normal clearing.
        cause, cause_txt = causes.recorded_hangup(end, answered=True)
        return ProbeResult(
            number=e164,
            channel_id=session.channel_id,
            outcome=causes.Outcome.ANSWERED,
            digits=collector.value if collector else "",
            entry_ended=collector.ended.value if collector and collector.ended else "hangup",
            cause=cause,
            cause_txt=cause_txt,
            hung_up_by_callee=hung_up,
            setup_seconds=round(setup_seconds, 3),
            duration_seconds=time.monotonic() - started,
        )
    except BaseException:
        # Never leave a channel up in silence because our side failed.
        with contextlib.suppress(Exception):
            await session.hangup()
        raise
    finally:
        session.close()
