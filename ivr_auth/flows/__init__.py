"""Call flows: what happens on a call for each verification method."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ivr_auth import callsession, causes, config, errors, models, phone, prompts, states
from ivr_auth import store as store_mod
from ivr_auth.ari import node as ari_node

logger = logging.getLogger(__name__)

S = states.Status


def _no_tracking(verification_id: uuid.UUID, channel_id: str | None) -> None:
    return None


@dataclass(frozen=True)
class FlowContext:
    cfg: config.Config
    store: store_mod.Store
    node: ari_node.AriNode
    controller: str
    prompts: prompts.Library
    # A flow that takes a request into a call itself (inbound) registers it
    # here (channel None: the call is over), so that its lease is renewed
    # and a cancel hangs the call up, as for outbound calls.
    track: Callable[[uuid.UUID, str | None], None] = field(default=_no_tracking)


def channel_id_for(verification: models.Verification) -> str:
    """Our channel id for a request's current call attempt (unique per attempt)."""
    return f"ivrauth-{verification.id.hex}-{verification.call_attempts}"


async def dial(
    ctx: FlowContext, v: models.Verification, session: callsession.CallSession, started: float
) -> models.Tenant | None:
    """Place this attempt's call with the tenant's caller ID and wait for the
    answer. Returns the tenant once answered; an unanswered call is settled
    (back to the queue or terminal, by its cause) and None returned."""
    tenant = await ctx.store.tenant(v.tenant_id)
    await ctx.store.set_channel(v.id, session.channel_id)
    await ctx.store.start_call_attempt(
        v, controller=ctx.controller, node=ctx.node.name, trunk=ctx.cfg.trunk.name, channel_id=session.channel_id
    )
    ring_timeout = ctx.cfg.verification.ring_timeout_seconds
    try:
        await session.originate(
            endpoint=phone.dial_endpoint(v.phone, ctx.cfg.trunk, ctx.cfg.default_country),
            caller_id=caller_id_for(ctx, tenant),
            ring_timeout=ring_timeout,
            app_args=f"{v.method},{v.id}",
            # A channel sent into the dialplan (AMD) comes back into this app by name.
            variables={"IVRAUTH_APP": ctx.node.app},
        )
    except (errors.AppNotRegistered, errors.AriUnavailable) as exc:
        # Asterisk is down or restarting: nothing was dialled. The request
        # waits in the queue for it, and the attempt does not count.
        await ctx.store.requeue_unplaced(v.id, session.channel_id, str(exc), ctx.cfg.dialer.poll_interval_seconds * 2)
        logger.warning(
            "call not placed, request back in the queue: %s",
            exc,
            extra={"verification_id": str(v.id), "channel_id": session.channel_id},
        )
        return None
    logger.info(
        "dialling %s (%s)",
        phone.mask(v.phone),
        v.method,
        extra={"verification_id": str(v.id), "channel_id": session.channel_id, "node": ctx.node.name},
    )
    unanswered = await session.wait_answer(ring_timeout)
    if unanswered is not None:
        await settle_unanswered(ctx, v, session, unanswered, started)
        return None
    await ctx.store.answer_call_attempt(session.channel_id)
    return tenant


def next_after_unanswered(
    ctx: FlowContext, v: models.Verification, outcome: causes.Outcome
) -> tuple[states.Status, dt.datetime | None]:
    """Where a call that reached no person leaves its request: back in the
    queue for another try, or at the outcome's terminal status."""
    return states.after_unanswered(
        outcome,
        call_attempts=v.call_attempts,
        max_call_attempts=v.max_call_attempts,
        retry_delay=dt.timedelta(seconds=ctx.cfg.verification.retry_delay_seconds),
        expires_at=v.expires_at,
        now=dt.datetime.now(dt.UTC),
    )


async def settle_unanswered(
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
    to_status, retry_at = next_after_unanswered(ctx, v, outcome)
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


async def end_call(ctx: FlowContext, session: callsession.CallSession, outcome: str) -> None:
    end = await session.finish() or {}
    cause = end.get("cause")
    await ctx.store.end_call_attempt(
        session.channel_id, outcome, int(cause) if cause is not None else None, end.get("cause_txt")
    )


def caller_id_for(ctx: FlowContext, tenant: models.Tenant) -> str:
    if tenant.caller_id:
        trunk = ctx.cfg.trunk
        e164 = phone.normalize(tenant.caller_id, ctx.cfg.default_country)
        return phone.format_for_trunk(e164, trunk.number_format, ctx.cfg.default_country)
    return phone.caller_id(ctx.cfg.trunk, ctx.cfg.default_country)
