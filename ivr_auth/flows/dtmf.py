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

from ivr_auth import callsession, causes, flows, models, phone, prompts, states
from ivr_auth.flows import FlowContext

logger = logging.getLogger(__name__)

S = states.Status


async def run(ctx: FlowContext, verification: models.Verification) -> None:
    """One call attempt for ``verification`` (claimed, status ``calling``)."""
    v = verification
    cfg = ctx.cfg.verification
    channel_id = flows.channel_id_for(v)
    log = {"verification_id": str(v.id), "channel_id": channel_id, "node": ctx.node.name}
    session = callsession.CallSession(ctx.node, channel_id)
    started = time.monotonic()
    answered = False
    try:
        tenant = await ctx.store.tenant(v.tenant_id)
        await ctx.store.set_channel(v.id, channel_id)
        await ctx.store.start_call_attempt(
            v, controller=ctx.controller, node=ctx.node.name, trunk=ctx.cfg.trunk.name, channel_id=channel_id
        )
        await session.originate(
            endpoint=phone.dial_endpoint(v.phone, ctx.cfg.trunk, ctx.cfg.default_country),
            caller_id=_caller_id(ctx, tenant),
            ring_timeout=cfg.ring_timeout_seconds,
            app_args=f"dtmf,{v.id}",
        )
        logger.info("dialling %s", phone.mask(v.phone), extra=log)
        unanswered = await session.wait_answer(cfg.ring_timeout_seconds)
        if unanswered is not None:
            await _settle_unanswered(ctx, v, session, unanswered, started)
            return
        answered = True
        setup = round(time.monotonic() - started, 3)
        await ctx.store.answer_call_attempt(channel_id)
        if await ctx.store.transition(v.id, [S.CALLING], S.IN_CALL, detail={"setup_seconds": setup}) is None:
            logger.info("request settled before answer; hanging up", extra=log)
            await _end(ctx, session, "settled")
            return
        await _converse(ctx, v, session)
    except callsession.HungUp as gone:
        await ctx.store.transition(
            v.id, [S.IN_CALL], S.HUNG_UP, reason="callee_hung_up", cause=gone.cause, cause_txt=gone.cause_txt
        )
        await ctx.store.end_call_attempt(channel_id, "hung_up", gone.cause, gone.cause_txt)
        logger.info("callee hung up", extra=log)
    except Exception:
        # One call's failure: log it with the channel, hang that call up, settle
        # the request as an error; nothing else is touched.
        logger.exception("call flow failed", extra=log)
        await session.hangup()
        await ctx.store.transition(v.id, [S.CALLING, S.IN_CALL], S.ERROR, reason="internal_error")
        await ctx.store.end_call_attempt(channel_id, "error", None, None)
    finally:
        session.close()
        if answered:
            logger.debug("call done in %.2fs", time.monotonic() - started, extra=log)


async def _converse(ctx: FlowContext, v: models.Verification, session: callsession.CallSession) -> None:
    cfg = ctx.cfg.verification
    lang = prompts.playback_language(v.language)
    options = callsession.CollectOptions(
        max_digits=v.code_length,
        first_digit_timeout=cfg.first_digit_timeout_seconds,
        inter_digit_timeout=cfg.inter_digit_timeout_seconds,
    )
    prompt = prompts.media("enter_code", v.language)
    silent_rounds = 0
    while True:
        entry = await session.collect(prompt, options, lang=lang)
        digits = entry.value
        if not digits:
            silent_rounds += 1
            await ctx.store.log_event(v.id, "no_input", {"round": silent_rounds, "ended": _ended(entry)})
            if silent_rounds > cfg.no_input_retries:
                if await ctx.store.transition(v.id, [S.IN_CALL], S.FAILED, reason="no_input"):
                    await session.play(prompts.media("goodbye", v.language), lang=lang)
                await _end(ctx, session, "no_input")
                return
            prompt = prompts.media("no_input", v.language)
            continue
        if dt.datetime.now(dt.UTC) >= v.expires_at:
            if await ctx.store.transition(v.id, [S.IN_CALL], S.EXPIRED, reason="expired_in_call"):
                await session.play(prompts.media("failed", v.language), lang=lang)
            await _end(ctx, session, "expired")
            return
        if ctx.store.keys.code_matches(v.id, digits, v.code_hash):
            if await ctx.store.transition(
                v.id, [S.IN_CALL], S.VERIFIED, reason="code_matched", detail={"source": "call", "ended": _ended(entry)}
            ):
                await session.play(prompts.media("verified", v.language), lang=lang)
            await _end(ctx, session, "verified")
            return
        after = await ctx.store.wrong_code(v.id, source="call")
        if after.status is not S.IN_CALL:
            await _end(ctx, session, after.status.value)  # settled elsewhere (canceled, checked)
            return
        if after.code_attempts >= after.max_code_attempts:
            if await ctx.store.transition(v.id, [S.IN_CALL], S.FAILED, reason="code_attempts_exhausted"):
                await session.play(prompts.media("failed", v.language), lang=lang)
            await _end(ctx, session, "failed")
            return
        prompt = prompts.media("wrong_code", v.language)


async def _settle_unanswered(
    ctx: FlowContext,
    v: models.Verification,
    session: callsession.CallSession,
    unanswered: callsession.Unanswered,
    started: float,
) -> None:
    # The hangup cause is the truth here: a 603 Decline arrives as cause 21
    # while the Dial event says NOANSWER.
    outcome = causes.unanswered_outcome(unanswered.cause)
    if unanswered.timed_out:
        outcome = causes.Outcome.NO_ANSWER
    cfg = ctx.cfg.verification
    now = dt.datetime.now(dt.UTC)
    to_status, retry_at = states.after_unanswered(
        outcome,
        call_attempts=v.call_attempts,
        max_call_attempts=v.max_call_attempts,
        retry_delay=dt.timedelta(seconds=cfg.retry_delay_seconds),
        expires_at=v.expires_at,
        now=now,
    )
    detail: dict[str, Any] = {
        "outcome": outcome.value,
        "attempt": v.call_attempts,
        "ring_seconds": round(time.monotonic() - started, 3),
    }
    if retry_at is not None:
        detail["retry_at"] = retry_at.isoformat()
    await ctx.store.end_call_attempt(session.channel_id, outcome.value, unanswered.cause, unanswered.cause_txt)
    await ctx.store.transition(
        v.id,
        [S.CALLING],
        to_status,
        reason=outcome.value,
        cause=unanswered.cause,
        cause_txt=unanswered.cause_txt,
        next_attempt_at=retry_at,
        detail=detail,
    )


async def _end(ctx: FlowContext, session: callsession.CallSession, outcome: str) -> None:
    end = await session.finish() or {}
    cause = end.get("cause")
    await ctx.store.end_call_attempt(
        session.channel_id, outcome, int(cause) if cause is not None else None, end.get("cause_txt")
    )


def _ended(entry: Any) -> str | None:
    return entry.ended.value if entry.ended else None


def _caller_id(ctx: FlowContext, tenant: models.Tenant) -> str:
    if tenant.caller_id:
        trunk = ctx.cfg.trunk
        e164 = phone.normalize(tenant.caller_id, ctx.cfg.default_country)
        return phone.format_for_trunk(e164, trunk.number_format, ctx.cfg.default_country)
    return phone.caller_id(ctx.cfg.trunk, ctx.cfg.default_country)
