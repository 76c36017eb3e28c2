"""Call flows: what happens on a call for each verification method."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr_auth import callsession, causes, config, errors, models, phone, prompts, reasons, states
from ivr_auth import metrics as metrics_mod
from ivr_auth import store as store_mod
from ivr_auth.ari import node as ari_node
from ivr_auth.store.verifications import CallEnd

logger = logging.getLogger(__name__)

S = states.Status


def _no_tracking(verification_id: uuid.UUID, channel_id: str | None) -> None:
    return None


def _no_trunk_health(trunk: str) -> float | None:
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
    # The trunk this call leaves through, picked per call by the controller;
    # None: the node's first trunk.
    trunk: config.TrunkConfig | None = None
    # Told that a call failed on its trunk's side (503, time-out): marks the
    # trunk down and returns the seconds until a trunk is up that the request
    # may go to (0.0: another is up now); None: no trunk health is kept here,
    # the trunk's cooldown (dialer.trunk_retry_seconds) is taken.
    trunk_failed: Callable[[str], float | None] = field(default=_no_trunk_health)
    # This process's metrics (the latency histograms); None: not measured.
    metrics: metrics_mod.Metrics | None = None
    # The node's calls in progress, for the controller to reconcile after a
    # reconnect; shared by every call's copy of the context.
    sessions: callsession.Sessions = field(default_factory=callsession.Sessions)

    @property
    def outbound_trunk(self) -> config.TrunkConfig:
        return self.trunk or self.cfg.outbound_trunks[0]


def channel_id_for(verification: models.Verification) -> str:
    """Our channel id for a request's current call (unique per call: a call
    that failed over to another trunk did not count as an attempt)."""
    base = f"ivrauth-{verification.id.hex}-{verification.call_attempts}"
    return f"{base}-{verification.trunk_failovers}" if verification.trunk_failovers else base


# ``channel_id_for``'s form, and the answering-machine snoop on such a call.
_OUR_CHANNEL = re.compile(r"ivrauth-[0-9a-f]{32}-[0-9]+(-[0-9]+)?(-amd)?")


def is_our_channel(channel_id: str) -> bool:
    """Whether a channel is one that ivr-auth placed (an inbound call's is Asterisk's)."""
    return _OUR_CHANNEL.fullmatch(channel_id) is not None


async def dial(
    ctx: FlowContext, v: models.Verification, session: callsession.CallSession, started: float
) -> models.Tenant | None:
    """Place this attempt's call through the call's trunk with the tenant's
    caller ID and wait for the answer. Returns the tenant once answered; an
    unanswered call is settled (back to the queue or terminal, by its cause;
    failed over to another trunk when its own failed) and None returned."""
    trunk = ctx.outbound_trunk
    tenant = await ctx.store.calls.start(
        v, controller=ctx.controller, node=ctx.node.name, trunk=trunk.name, channel_id=session.channel_id
    )
    if tenant is None:
        raise errors.NotFound(f"tenant {v.tenant_id} of request {v.id} is gone")
    pooled = await ctx.store.tenants.next_pool_caller_id(tenant.id) if tenant.caller_id_pool else None
    ring_timeout = ctx.cfg.verification.ring_timeout_seconds
    try:
        await session.originate(
            endpoint=phone.dial_endpoint(v.phone, trunk, ctx.cfg.default_country),
            caller_id=caller_id_for(ctx, tenant, trunk, pooled),
            ring_timeout=ring_timeout,
            app_args=f"{v.method},{v.id}",
            # A channel sent into the dialplan (AMD) comes back into this app by name.
            variables={"IVRAUTH_APP": ctx.node.app},
        )
    except (errors.AppNotRegistered, errors.AriUnavailable) as exc:
        # Asterisk is down or restarting: nothing was dialled. The request
        # waits in the queue for it, and the attempt does not count.
        await ctx.store.verifications.requeue_unplaced(
            v.id, session.channel_id, str(exc), ctx.cfg.dialer.poll_interval_seconds * 2
        )
        logger.warning(
            "call not placed, request back in the queue: %s",
            exc,
            extra={"verification_id": str(v.id), "channel_id": session.channel_id},
        )
        return None
    if ctx.metrics is not None:
        # Due since it was created, or since its retry's time came.
        due = max(v.created_at, v.next_attempt_at)
        ctx.metrics.invited(v.method, (dt.datetime.now(dt.UTC) - due).total_seconds())
    logger.info(
        "dialling %s (%s) via %s",
        phone.mask(v.phone),
        v.method,
        trunk.name,
        extra={
            "verification_id": str(v.id),
            "channel_id": session.channel_id,
            "node": ctx.node.name,
            "trunk": trunk.name,
        },
    )
    unanswered = await session.wait_answer(ring_timeout)
    if unanswered is not None:
        await settle_unanswered(ctx, v, session, unanswered, started)
        return None
    return tenant


async def record_result(
    ctx: FlowContext,
    v: models.Verification,
    answered_at: float,
    from_statuses: list[states.Status],
    to_status: states.Status,
    **changes: Any,
) -> models.Verification | None:
    """``ctx.store.transition`` to the result the call reached (verified,
    failed, expired, delivered), timed from the answer (``time.monotonic()``)
    when it is recorded."""
    done = await ctx.store.verifications.transition(v.id, from_statuses, to_status, **changes)
    if done is not None and ctx.metrics is not None:
        ctx.metrics.result(v.method, time.monotonic() - answered_at)
    return done


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
    # The hangup cause is the truth here (a 603 Decline arrives as cause 21
    # while the Dial event says NOANSWER), with whether it rang and when it ended.
    outcome = unanswered.outcome(ctx.cfg.dialer.trunk_timeout_seconds)
    if outcome is causes.Outcome.TRUNK_FAILED:
        await _trunk_failure(ctx, v, session.channel_id, unanswered)
        return
    to_status, retry_at = next_after_unanswered(ctx, v, outcome)
    detail: dict[str, Any] = {
        "outcome": outcome.value,
        "attempt": v.call_attempts,
        "ring_seconds": round(time.monotonic() - started, 3),
        "rang": unanswered.rang,
    }
    if unanswered.tech_cause is not None:
        detail["sip_status"] = unanswered.tech_cause
    if retry_at is not None:
        detail["retry_at"] = retry_at.isoformat()
    await ctx.store.verifications.transition(
        v.id,
        [S.CALLING],
        to_status,
        reason=reasons.for_unanswered(outcome),
        cause=unanswered.cause,
        cause_txt=unanswered.cause_txt,
        next_attempt_at=retry_at,
        detail=detail,
        ended_call=CallEnd(session.channel_id, outcome.value, unanswered.cause, unanswered.cause_txt),
    )


async def _trunk_failure(
    ctx: FlowContext, v: models.Verification, channel_id: str, unanswered: callsession.Unanswered
) -> None:
    """The call failed on its trunk's side, which says nothing of the callee:
    the trunk is marked down and the call does not count as an attempt. The
    request goes back to the queue, at once when another trunk is up, else
    for when a trunk's cooldown ends, while its trunk failures and time
    allow; then it ends as ``unreachable``, reason ``trunk_unavailable``."""
    trunk = ctx.outbound_trunk.name
    wait = ctx.trunk_failed(trunk)
    if wait is None:
        wait = ctx.cfg.dialer.trunk_retry_seconds
    failures = v.trunk_failovers + 1
    to_status, _ = states.after_trunk_failure(
        trunk_failures=failures,
        max_trunk_failures=states.trunk_failure_limit(len(ctx.cfg.outbound_trunks), v.max_call_attempts),
        retry_in=dt.timedelta(seconds=wait),
        expires_at=v.expires_at,
        now=dt.datetime.now(dt.UTC),
    )
    log = {"verification_id": str(v.id), "channel_id": channel_id, "trunk": trunk}
    if to_status is S.QUEUED:
        await ctx.store.verifications.requeue_failover(
            v.id, channel_id, trunk=trunk, cause=unanswered.cause, cause_txt=unanswered.cause_txt, delay=wait
        )
        logger.warning(
            "trunk %s failed (cause %s); request back in the queue, uncounted, for %s",
            trunk,
            unanswered.cause,
            "another trunk" if wait <= 0 else f"a trunk up in {wait:.0f}s",
            extra=log,
        )
        return
    await ctx.store.verifications.transition(
        v.id,
        [S.CALLING],
        to_status,
        reason=reasons.Reason.TRUNK_UNAVAILABLE,
        cause=unanswered.cause,
        cause_txt=unanswered.cause_txt,
        detail={"trunk": trunk, "trunk_failures": failures},
        uncounted=True,
        ended_call=CallEnd(channel_id, causes.Outcome.TRUNK_FAILED.value, unanswered.cause, unanswered.cause_txt),
    )
    logger.warning(
        "trunk %s failed (cause %s); request unreachable after %d trunk failure(s)",
        trunk,
        unanswered.cause,
        failures,
        extra=log,
    )


async def end_call(ctx: FlowContext, session: callsession.CallSession, outcome: str) -> None:
    end = await session.finish() or {}
    cause, cause_txt = causes.recorded_hangup(end, answered=session.answered_at is not None)
    await ctx.store.calls.end(session.channel_id, outcome, cause, cause_txt if end else None)


@dataclass(frozen=True)
class Endings:
    """How a flow's request is settled when its call ends before the flow
    does: hung up (by ``party``), lost with its node, or failed on our side."""

    flow: str
    party: str
    hung_up_reason: reasons.Reason
    # Where a hangup finds the request; where a lost node or a fault does.
    hung_up_from: tuple[states.Status, ...]
    in_progress: tuple[states.Status, ...]


class Call:
    """The call ``guarded`` watches over: the request it is for (None: none
    yet, an inbound call until it takes one)."""

    def __init__(self, ctx: FlowContext, channel_id: str, request: uuid.UUID | None) -> None:
        self._ctx = ctx
        self.channel_id = channel_id
        self.request = request
        # The request this call took itself, tracked until the call ends.
        self.held: uuid.UUID | None = None
        self.started = time.monotonic()

    def take(self, request: uuid.UUID) -> None:
        """This call now holds ``request``: its lease is renewed and a
        cancel hangs the call up until the call ends (``FlowContext.track``)."""
        self.request = self.held = request
        self._ctx.track(request, self.channel_id)


@contextlib.asynccontextmanager
async def guarded(
    ctx: FlowContext,
    session: callsession.CallSession,
    endings: Endings,
    log: Mapping[str, str],
    request: uuid.UUID | None = None,
) -> AsyncIterator[Call]:
    """Runs the body of one call's flow, and settles its request when the
    call ends another way than the flow's own: the callee (or caller) hung
    up; the call's Asterisk stopped answering, so that nobody knows how the
    call ended there; or anything else went wrong: it is logged with the
    channel, the call hung up and the request settled as an error, and
    nothing else is touched. The session is closed in every case."""
    call = Call(ctx, session.channel_id, request)
    try:
        yield call
    except callsession.HungUp as gone:
        ended = CallEnd(call.channel_id, "hung_up", gone.cause, gone.cause_txt)
        if call.request is not None:
            # The call's end in the same statement, whether or not the request moves.
            await ctx.store.verifications.transition(
                call.request,
                endings.hung_up_from,
                S.HUNG_UP,
                reason=endings.hung_up_reason,
                cause=gone.cause,
                cause_txt=gone.cause_txt,
                ended_call=ended,
            )
        else:
            await ctx.store.calls.end(ended.channel_id, ended.outcome, ended.cause, ended.cause_txt)
        logger.info("%s hung up", endings.party, extra=log)
    except errors.AriUnavailable as exc:
        logger.warning("%s call lost with its node: %s", endings.flow, exc, extra=log)
        if call.request is not None:
            await ctx.store.verifications.transition(
                call.request,
                endings.in_progress,
                S.ERROR,
                reason=reasons.Reason.NODE_LOST,
                detail={"node": ctx.node.name},
            )
        # Its record too, if it had one (an inbound call recorded for the
        # request it verified holds none): it would count talk time for ever.
        await ctx.store.calls.end(call.channel_id, "error", None, "node lost")
    except Exception:
        logger.exception("%s call flow failed", endings.flow, extra=log)
        await session.hangup()
        if call.request is not None:
            await ctx.store.verifications.transition(
                call.request, endings.in_progress, S.ERROR, reason=reasons.Reason.INTERNAL_ERROR
            )
        await ctx.store.calls.end(call.channel_id, "error", None, None)
    finally:
        if call.held is not None:
            ctx.track(call.held, None)
        session.close()
        if session.answered_at is not None:
            logger.debug("call done in %.2fs", time.monotonic() - call.started, extra=log)


def caller_id_for(
    ctx: FlowContext, tenant: models.Tenant, trunk: config.TrunkConfig | None = None, pooled: str | None = None
) -> str:
    """The caller ID a call presents, as the trunk writes numbers: the
    tenant's pool's turn (``pooled``), else the tenant's own, else the trunk's."""
    trunk = trunk or ctx.outbound_trunk
    chosen = pooled or tenant.caller_id
    if chosen:
        e164 = phone.normalize(chosen, ctx.cfg.default_country)
        return phone.format_for_trunk(e164, trunk.number_format, ctx.cfg.default_country)
    return phone.caller_id(trunk, ctx.cfg.default_country)
