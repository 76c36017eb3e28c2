"""Voice OTP: call the registered phone and read the code aloud; the person
types it into the web page and the backend checks it (``POST .../check``).

Nothing secret is spoken before a person is shown to be there: the callee
presses a key first (per tenant, on by default), and where configured
Asterisk's answering-machine detection runs on the answered leg; a machine
never hears the code. The code is read digit by digit, twice; the callee
can ask to hear it again a bounded number of times. The request becomes
``delivered`` once the code was read out completely; hanging up before
that ends it as ``hung_up``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from ivr_auth import callsession, causes, flows, models, reasons, states
from ivr_auth.flows import FlowContext

logger = logging.getLogger(__name__)

S = states.Status
AMD_CONTEXT = "ivr-auth-amd"
# AMDSTATUS -> answered_by
ANSWERED_BY = {"HUMAN": "human", "MACHINE": "machine"}


ENDINGS = flows.Endings(
    flow="voice",
    party="callee",
    hung_up_reason=reasons.Reason.HUNG_UP_BEFORE_END,
    # calling: during answering-machine detection. After ``delivered`` a
    # hangup finds nothing to change: the code was heard.
    hung_up_from=(S.CALLING, S.IN_CALL),
    in_progress=(S.CALLING, S.IN_CALL),
)


async def run(ctx: FlowContext, verification: models.Verification) -> None:
    """One call attempt for ``verification`` (claimed, status ``calling``)."""
    v = verification
    cfg = ctx.cfg.verification
    channel_id = flows.channel_id_for(v)
    log = {"verification_id": str(v.id), "channel_id": channel_id, "node": ctx.node.name}
    session = callsession.CallSession(ctx.node, channel_id, ctx.sessions)
    started = time.monotonic()
    async with flows.guarded(ctx, session, ENDINGS, log, v.id):
        tenant = await flows.dial(ctx, v, session, started)
        if tenant is None:
            return
        answered_at = time.monotonic()
        answered_by = "unknown"
        detail: dict[str, object] = {"setup_seconds": round(answered_at - started, 3)}
        if cfg.amd:
            # Answered now; the request is in the call once a person is heard.
            await ctx.store.calls.answer(session.channel_id)
            status, amd_cause = await session.detect_machine(AMD_CONTEXT, cfg.amd_timeout_seconds)
            answered_by = ANSWERED_BY.get(status, "unknown")
            detail["amd"] = {"status": status, "cause": amd_cause}
            if answered_by == "machine":
                await _machine(ctx, v, session, started, detail)
                return
        in_call = await ctx.store.verifications.transition(
            v.id,
            [S.CALLING],
            S.IN_CALL,
            detail=detail,
            answered_by=answered_by,
            answered_call=None if cfg.amd else session.channel_id,
        )
        if in_call is None:
            logger.info("request settled before answer; hanging up", extra=log)
            await flows.end_call(ctx, session, "settled")
            return
        await _converse(ctx, v, tenant, session, answered_at)


async def _converse(
    ctx: FlowContext,
    v: models.Verification,
    tenant: models.Tenant,
    session: callsession.CallSession,
    answered_at: float,
) -> None:
    cfg = ctx.cfg.verification
    lang = v.language
    one_key = callsession.CollectOptions(
        max_digits=1,
        first_digit_timeout=cfg.voice_key_timeout_seconds,
        inter_digit_timeout=cfg.voice_key_timeout_seconds,
        terminator=None,
        clear_key=None,
    )
    if tenant.voice_require_key:
        ask = [*ctx.prompts.media("greeting", v.language), *ctx.prompts.media("press_to_hear", v.language)]
        for _ in range(cfg.no_input_retries + 1):
            if (await session.collect(ask, one_key, lang=lang)).value:
                await ctx.store.verifications.set_answered_by(v.id, "human")
                break
        else:
            # Nobody pressed a key: perhaps a voicemail that AMD did not catch.
            # The code was not spoken, so nothing can be checked against it.
            if await flows.record_result(
                ctx, v, answered_at, [S.IN_CALL], S.FAILED, reason=reasons.Reason.NO_KEY_PRESSED
            ):
                await session.play(ctx.prompts.media("goodbye", v.language), lang=lang)
            await flows.end_call(ctx, session, "no_input")
            return
    current = await ctx.store.verifications.get_by_id(v.id)
    code = ctx.store.keys.open_code(v.id, current.code_sealed) if current and current.code_sealed else None
    if current is None or current.status is not S.IN_CALL or code is None:
        await flows.end_call(ctx, session, "settled")  # canceled or checked meanwhile
        return
    readout = ctx.prompts.read_code(code, v.language)
    await session.play(readout, lang=lang)
    if dt.datetime.now(dt.UTC) >= v.expires_at:
        if await flows.record_result(
            ctx, v, answered_at, [S.IN_CALL], S.EXPIRED, reason=reasons.Reason.EXPIRED_IN_CALL
        ):
            await session.play(ctx.prompts.media("goodbye", v.language), lang=lang)
        await flows.end_call(ctx, session, "expired")
        return
    delivered = await flows.record_result(
        ctx, v, answered_at, [S.IN_CALL], S.DELIVERED, reason=reasons.Reason.CODE_READ_OUT, detail={"readings": 2}
    )
    if delivered is None:
        await flows.end_call(ctx, session, "settled")
        return
    repeats = 0
    while repeats < cfg.voice_repeats:
        entry = await session.collect(ctx.prompts.media("press_1_to_repeat", v.language), one_key, lang=lang)
        if entry.value != "1":
            break
        repeats += 1
        await ctx.store.verifications.log_event(v.id, "code_repeated", {"repeat": repeats})
        await session.play(readout, lang=lang)
    await session.play(ctx.prompts.media("goodbye", v.language), lang=lang)
    await flows.end_call(ctx, session, "delivered")


async def _machine(
    ctx: FlowContext,
    v: models.Verification,
    session: callsession.CallSession,
    started: float,
    detail: dict[str, object],
) -> None:
    """An answering machine took the call: hang up without a word, and treat
    it like no answer (a person may pick up on the next attempt)."""
    await session.hangup("normal")
    await session.wait_destroyed(5.0)
    to_status, retry_at = flows.next_after_unanswered(ctx, v, causes.Outcome.NO_ANSWER)
    detail = {**detail, "attempt": v.call_attempts, "seconds": round(time.monotonic() - started, 3)}
    if retry_at is not None:
        detail["retry_at"] = retry_at.isoformat()
    await ctx.store.calls.end(session.channel_id, "machine", None, None)
    await ctx.store.verifications.transition(
        v.id,
        [S.CALLING],
        to_status,
        reason=reasons.Reason.ANSWERED_BY_MACHINE,
        next_attempt_at=retry_at,
        detail=detail,
        answered_by="machine",
    )
    logger.info("answering machine; code not read", extra={"verification_id": str(v.id)})
