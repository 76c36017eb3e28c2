"""Inbound caller-ID verification in Stasis: the person calls our published
number from the registered phone. The match itself is ``ivr_auth.inbound_match``
(shared with FastAGI); this flow answers (or, in missed-call mode, rejects
unanswered), says the result, and for requests that want it collects the
code as the DTMF flow does.

Calls arrive in state ``Ring``: nothing is played before ``answer``, or
Asterisk would send 183 early media.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from ivr_auth import ari, callsession, flows, inbound_match, models, phone, reasons, states
from ivr_auth.flows import FlowContext
from ivr_auth.flows import dtmf as dtmf_flow

logger = logging.getLogger(__name__)

S = states.Status
# Cause 21, call rejected (PJSIP sends 403 Forbidden): the call was never
# answered, so nothing is billed; missed-call verification relies on that.
REJECT_REASON = "rejected"


def call_details(event: ari.Event) -> tuple[str, str, str]:
    """(channel id, DID, caller number) from a StasisStart. The dialplan
    passes the dialled number as the first argument; the caller number is
    Asterisk's CALLERID(num), from P-Asserted-Identity on a trusted trunk."""
    channel = event.get("channel") or {}
    args = [str(a) for a in event.get("args") or [] if a is not None]
    dialplan = channel.get("dialplan") or {}
    did = args[0] if args and args[0] else str(dialplan.get("exten") or "")
    caller = str((channel.get("caller") or {}).get("number") or "")
    return str(channel.get("id") or ""), did, caller


def arrival_trunk(event: ari.Event, trunks: list[str]) -> str:
    """Which of ``trunks`` an inbound call came from: the PJSIP endpoint in
    its channel name (``PJSIP/backup-0000000a``), the one whose identify
    matched the INVITE (a trunk's ``identify``: address, address and port,
    or header); the first when none is."""
    name = str((event.get("channel") or {}).get("name") or "")
    endpoint = name.removeprefix("PJSIP/").rpartition("-")[0] if name.startswith("PJSIP/") else ""
    return endpoint if endpoint in trunks else trunks[0]


ENDINGS = flows.Endings(
    flow="inbound",
    party="caller",
    hung_up_reason=reasons.Reason.CALLER_HUNG_UP,
    hung_up_from=(S.IN_CALL,),
    in_progress=(S.IN_CALL,),
)


async def run(ctx: FlowContext, session: callsession.CallSession, event: ari.Event) -> None:
    channel_id, did, caller = call_details(event)
    trunk = arrival_trunk(event, [t.name for t in ctx.cfg.outbound_trunks])
    log = {"channel_id": channel_id, "node": ctx.node.name}
    session.join(ctx.sessions)
    # No request of its own until it takes one that wants the code keyed.
    async with flows.guarded(ctx, session, ENDINGS, log) as call:
        await session.follow(str(event.get("application") or ctx.cfg.inbound.app))
        match = await inbound_match.match_call(
            ctx.store, ctx.cfg, did=did, caller=caller, source="ari", channel_id=channel_id
        )
        lang = match.language
        if match.result is inbound_match.Result.VERIFIED and match.verification is not None:
            await _record_call(ctx, match.verification, channel_id, trunk)
            if match.reject_unanswered:
                end = await session.reject(REJECT_REASON)
                await _end_record(ctx, channel_id, "rejected_verified", end)
                return
            await session.answer()
            await ctx.store.calls.answer(channel_id)
            await session.play(
                [*ctx.prompts.media("greeting", match.language), *ctx.prompts.media("verified", match.language)],
                lang=lang,
            )
            await flows.end_call(ctx, session, "verified")
            return
        if match.result is inbound_match.Result.CODE_REQUIRED and match.verification is not None:
            taken = await ctx.store.verifications.take_inbound(
                match.verification.id,
                owner=ctx.controller,
                node=ctx.node.name,
                channel_id=channel_id,
                lease_seconds=ctx.cfg.dialer.lease_seconds,
                detail={"source": "ari", "did": match.did, "caller_id_matched": True},
            )
            if taken is not None:
                call.take(taken.id)
                await _record_call(ctx, match.verification, channel_id, trunk)
                await session.answer()
                await ctx.store.calls.answer(channel_id)
                await dtmf_flow.converse(ctx, taken, session, time.monotonic())
                return
        await session.answer()
        if match.result is inbound_match.Result.ANONYMOUS:
            refusal = ctx.prompts.media("caller_id_withheld", match.language)
        else:
            refusal = ctx.prompts.media("not_registered", match.language)
        await session.play(refusal, lang=lang)
        await session.finish()


async def _record_call(ctx: FlowContext, verification: models.Verification, channel_id: str, trunk: str) -> None:
    attempt = dataclasses.replace(verification, call_attempts=verification.call_attempts + 1)
    await ctx.store.calls.start(
        attempt, controller=ctx.controller, node=ctx.node.name, trunk=trunk, channel_id=channel_id
    )
    logger.info(
        "inbound call from %s for request %s",
        phone.mask(verification.phone),
        verification.id,
        extra={"verification_id": str(verification.id), "channel_id": channel_id},
    )


async def _end_record(ctx: FlowContext, channel_id: str, outcome: str, end: ari.Event | None) -> None:
    cause = (end or {}).get("cause")
    await ctx.store.calls.end(
        channel_id, outcome, int(cause) if cause is not None else None, (end or {}).get("cause_txt")
    )
