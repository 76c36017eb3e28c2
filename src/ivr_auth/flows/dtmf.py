"""Outbound verification by DTMF: call the registered phone, ask for the
code shown on the web page, compare, say the result, hang up.

Every state change is a guarded transition: if the request was canceled,
checked through the API or settled elsewhere meanwhile, the transition finds
nothing to change and the call simply ends.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from ivr_auth import callsession, flows, models, reasons, states
from ivr_auth.flows import FlowContext

logger = logging.getLogger(__name__)

S = states.Status


ENDINGS = flows.Endings(
    flow="dtmf",
    party="callee",
    hung_up_reason=reasons.Reason.CALLEE_HUNG_UP,
    hung_up_from=(S.IN_CALL,),
    in_progress=(S.CALLING, S.IN_CALL),
)


async def run(ctx: FlowContext, verification: models.Verification) -> None:
    """One call attempt for ``verification`` (claimed, status ``calling``)."""
    v = verification
    channel_id = flows.channel_id_for(v)
    log = {"verification_id": str(v.id), "channel_id": channel_id, "node": ctx.node.name}
    session = callsession.CallSession(ctx.node, channel_id, ctx.sessions)
    started = time.monotonic()
    async with flows.guarded(ctx, session, ENDINGS, log, v.id):
        if await flows.dial(ctx, v, session, started) is None:
            return
        answered_at = time.monotonic()
        setup = round(answered_at - started, 3)
        in_call = await ctx.store.verifications.transition(
            v.id, [S.CALLING], S.IN_CALL, detail={"setup_seconds": setup}, answered_call=session.channel_id
        )
        if in_call is None:
            logger.info("request settled before answer; hanging up", extra=log)
            await flows.end_call(ctx, session, "settled")
            return
        await converse(ctx, v, session, answered_at)


async def converse(
    ctx: FlowContext, v: models.Verification, session: callsession.CallSession, answered_at: float
) -> None:
    """Ask for the code and compare, until verified, failed or out of tries
    (the request is ``in_call``; the call was answered at ``answered_at``,
    ``time.monotonic()``). Also used by inbound calls that key the code."""
    cfg = ctx.cfg.verification
    lang = v.language
    options = callsession.CollectOptions(
        max_digits=v.code_length,
        first_digit_timeout=cfg.first_digit_timeout_seconds,
        inter_digit_timeout=cfg.inter_digit_timeout_seconds,
    )
    prompt = ctx.prompts.enter_code(v.language, v.code_length)
    silent_rounds = 0
    while True:
        entry = await session.collect(prompt, options, lang=lang)
        digits = entry.value
        if not digits:
            silent_rounds += 1
            await ctx.store.verifications.log_event(v.id, "no_input", {"round": silent_rounds, "ended": _ended(entry)})
            if silent_rounds > cfg.no_input_retries:
                if await flows.record_result(
                    ctx, v, answered_at, [S.IN_CALL], S.FAILED, reason=reasons.Reason.NO_INPUT
                ):
                    await session.play(ctx.prompts.media("goodbye", v.language), lang=lang)
                await flows.end_call(ctx, session, "no_input")
                return
            prompt = [
                *ctx.prompts.media("no_input", v.language),
                *ctx.prompts.media(f"enter_code_{v.code_length}", v.language),
            ]
            continue
        if dt.datetime.now(dt.UTC) >= v.expires_at:
            if await flows.record_result(
                ctx, v, answered_at, [S.IN_CALL], S.EXPIRED, reason=reasons.Reason.EXPIRED_IN_CALL
            ):
                await session.play(ctx.prompts.media("failed", v.language), lang=lang)
            await flows.end_call(ctx, session, "expired")
            return
        if ctx.store.keys.code_matches(v.id, digits, v.code_hash):
            if await flows.record_result(
                ctx,
                v,
                answered_at,
                [S.IN_CALL],
                S.VERIFIED,
                reason=reasons.Reason.CODE_MATCHED,
                detail={"source": "call", "ended": _ended(entry)},
                answered_by="human",
            ):
                await session.play(ctx.prompts.media("verified", v.language), lang=lang)
            await flows.end_call(ctx, session, "verified")
            return
        after = await ctx.store.verifications.wrong_code(v.id, source="call")
        if after.status is not S.IN_CALL:
            await flows.end_call(ctx, session, after.status.value)  # settled elsewhere (canceled, checked)
            return
        if after.code_attempts >= after.max_code_attempts:
            if await flows.record_result(
                ctx, v, answered_at, [S.IN_CALL], S.FAILED, reason=reasons.Reason.CODE_ATTEMPTS_EXHAUSTED
            ):
                await session.play(ctx.prompts.media("failed", v.language), lang=lang)
            await flows.end_call(ctx, session, "failed")
            return
        prompt = [
            *ctx.prompts.media("wrong_code", v.language),
            *ctx.prompts.media(f"enter_code_{v.code_length}", v.language),
        ]


def _ended(entry: Any) -> str | None:
    return entry.ended.value if entry.ended else None
