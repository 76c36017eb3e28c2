"""What a call's end means: Q.850 hangup causes (as ARI reports them in
``ChannelDestroyed.cause``), and on Asterisk 22 the SIP response behind
them (``tech_cause``), mapped to the outcomes ivr-auth records.

SIP responses reach us already mapped by Asterisk (chan_pjsip's
hangup_sip2cause, after RFC 3398): 486 Busy Here is 17, 408 is 18, 480 is
19, 603 Decline is 21, 404 is 1, 500 is 38, 501 is 29, 502 is 27, 503 is 34,
504 is 102, 505 is 127, any other 5xx 34. A Q.850 ``Reason`` header on the
response (RFC 3326) takes the place of that mapping.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class Outcome(enum.Enum):
    ANSWERED = "answered"
    BUSY = "busy"
    # It rang (or our ring timer ran out) and nobody answered.
    NO_ANSWER = "no_answer"
    # It never rang: switched off, out of coverage, not responding (480, 408).
    CALLEE_UNAVAILABLE = "callee_unavailable"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"
    # The trunk (or the carrier behind it) failed, not the callee.
    TRUNK_FAILED = "trunk_failed"
    ERROR = "error"


BUSY_CAUSES = frozenset({17})
# 0: not set, Asterisk's originate timed out (our own ring timer runs first).
NO_ANSWER_CAUSES = frozenset({0, 18, 19, 20})
REJECTED_CAUSES = frozenset({21})
# The number does not exist, or the network cannot reach it.
UNREACHABLE_CAUSES = frozenset({1, 2, 3, 22, 27, 28, 29, 31, 34, 38, 41, 42, 44, 47, 58, 88, 102, 127})
NORMAL_CLEARING = 16
# Of the no-answer causes, those that say the callee's phone was not to be
# had: 18 no user responding (SIP 408), 19 no answer (SIP 480), 20
# subscriber absent (a mobile switched off or out of coverage; RFC 3398 sends
# it as 480). After ringing they mean nobody answered; without, that the
# phone never rang. 20 is the callee's state now, not a wrong number: it is
# retried like 480, not ended as unreachable.
CALLEE_UNAVAILABLE_CAUSES = frozenset({18, 19, 20})


def unanswered_outcome(cause: int) -> Outcome:
    """What the hangup cause alone says of a call that never reached the
    callee's Stasis app (``unanswered_end`` knows more)."""
    if cause in BUSY_CAUSES:
        return Outcome.BUSY
    if cause in NO_ANSWER_CAUSES:
        return Outcome.NO_ANSWER
    if cause in REJECTED_CAUSES:
        return Outcome.REJECTED
    if cause in UNREACHABLE_CAUSES:
        return Outcome.UNREACHABLE
    if cause == NORMAL_CLEARING:
        # Cleared before answer without a reason: the far end hung up while ringing.
        return Outcome.NO_ANSWER
    return Outcome.ERROR


def retryable(outcome: Outcome) -> bool:
    """Busy, no answer and a phone out of reach now may succeed a little
    later; the rest will not. (A trunk's failure is retried by its own rule,
    ``states.after_trunk_failure``.)"""
    return outcome in (Outcome.BUSY, Outcome.NO_ANSWER, Outcome.CALLEE_UNAVAILABLE)


# The trunk (or the carrier behind it) failed, not the callee: 503 Service
# Unavailable (34), 500 Server Internal Error (38), 41 / 42 (temporary
# failure, switching equipment congestion), 504 Server Time-out (102), 502
# Bad Gateway (27). Busy (17), no answer (18, 19), declined (21) and
# unallocated number (1) say something about the callee and would fail on
# any trunk.
#
# 27 (destination out of order) alone is ambiguous: PJSIP gives it to a 502
# and to nothing else, but a carrier may also pass on the PSTN's own cause 27
# (the callee's line or exchange is out of order) in a Reason header, on any
# final response. Where Asterisk reports the SIP status (tech_cause, 22 on)
# the status decides. Without it (16, 20) 27 counts as the trunk's failure:
# a carrier's broken gateway then fails over like its 503 does, rather than
# ending every request on that trunk as unreachable at once; a callee's
# dead line costs its request a call on each trunk (up to
# ``states.trunk_failure_limit``) and still ends it unreachable
# (trunk_unavailable), later.
TRUNK_FAILURE_CAUSES = frozenset({27, 34, 38, 41, 42, 102})

# SIP final responses (ARI's ``tech_cause``, Asterisk 22 on), read before the
# cause where listed. The cause cannot tell a trunk refusing our credentials
# (401, 407) from a callee declining (603): Asterisk maps all three to 21.
# 408 and 480 are refined like causes 18 and 19 (``unanswered_end``). A 5xx
# is the server's failure to handle a good request (RFC 3261 21.5), so the
# trunk's: listed are those Asterisk gives a cause of their own (the rest
# arrive as 34, a trunk failure already).
SIP_OUTCOMES: dict[int, Outcome] = {
    401: Outcome.TRUNK_FAILED,
    403: Outcome.REJECTED,
    404: Outcome.UNREACHABLE,
    407: Outcome.TRUNK_FAILED,
    408: Outcome.NO_ANSWER,
    410: Outcome.UNREACHABLE,
    480: Outcome.NO_ANSWER,
    484: Outcome.UNREACHABLE,
    486: Outcome.BUSY,
    500: Outcome.TRUNK_FAILED,
    501: Outcome.TRUNK_FAILED,
    502: Outcome.TRUNK_FAILED,
    503: Outcome.TRUNK_FAILED,
    504: Outcome.TRUNK_FAILED,
    505: Outcome.TRUNK_FAILED,
    600: Outcome.BUSY,
    603: Outcome.REJECTED,
    604: Outcome.UNREACHABLE,
}
CALLEE_UNAVAILABLE_RESPONSES = frozenset({408, 480})


def _known_response(tech_cause: int | None) -> int | None:
    return tech_cause if tech_cause is not None and tech_cause in SIP_OUTCOMES else None


def trunk_failure(cause: int, tech_cause: int | None = None) -> bool:
    """The call failed on its trunk's side; another trunk may do better."""
    response = _known_response(tech_cause)
    if response is not None:
        return SIP_OUTCOMES[response] is Outcome.TRUNK_FAILED
    return cause in TRUNK_FAILURE_CAUSES


# A trunk that never answers the INVITE at all (not even 100 Trying) ends
# the call when PJSIP's INVITE transaction times out (timer B), reported as
# cause 18 (and, on Asterisk 22, tech_cause 408) like a callee's 408 or 480.
# What tells them apart: the call never rang, and it ended when timer B ran
# out, not before.
NO_RESPONSE_CAUSES = frozenset({18, 102})
# How much earlier than timer B a cause-18 end may come and still be its time-out.
TIMER_B_SLACK_SECONDS = 0.5


def trunk_timed_out(
    cause: int, *, rang: bool, seconds: float, timer_b_seconds: float, tech_cause: int | None = None
) -> bool:
    """The call's trunk did not answer the INVITE within timer B."""
    no_response = tech_cause == 408 if tech_cause is not None else cause in NO_RESPONSE_CAUSES
    return no_response and not rang and seconds >= timer_b_seconds - TIMER_B_SLACK_SECONDS


def unanswered_end(
    cause: int,
    *,
    tech_cause: int | None = None,
    rang: bool,
    seconds: float,
    timed_out: bool,
    timer_b_seconds: float,
) -> Outcome:
    """What a call that never reached the callee's Stasis app says, from all
    that is known of its end: the SIP response where Asterisk gives it
    (``tech_cause``), else the Q.850 cause; whether it rang (180); how long
    after the originate it ended; whether our own ring timer ended it."""
    if timed_out:
        # The callee had the whole ring time. Without a 180 too: many
        # carriers send their ringback as early media (183), never a 180.
        return Outcome.NO_ANSWER
    if trunk_failure(cause, tech_cause) or trunk_timed_out(
        cause, rang=rang, seconds=seconds, timer_b_seconds=timer_b_seconds, tech_cause=tech_cause
    ):
        return Outcome.TRUNK_FAILED
    response = _known_response(tech_cause)
    if response is not None:
        outcome = SIP_OUTCOMES[response]
        unavailable = response in CALLEE_UNAVAILABLE_RESPONSES
    else:
        outcome = unanswered_outcome(cause)
        unavailable = cause in CALLEE_UNAVAILABLE_CAUSES
    if outcome is Outcome.NO_ANSWER and unavailable and not rang:
        return Outcome.CALLEE_UNAVAILABLE
    return outcome


# Set on an event the controller makes up itself (a channel gone while the
# events websocket was down, a node lost): its cause 0 is ours and means
# that nobody knows how the call ended.
MADE_UP = "ivr_auth_made_up"


def recorded_hangup(event: Mapping[str, Any], *, answered: bool) -> tuple[int | None, str]:
    """The cause (and its text) to record for a channel's end, from its
    ChannelDestroyed or ChannelHangupRequest. Asterisk 22 reports the far
    end's BYE on an answered call as cause 0 "Unknown": that is normal
    clearing. Before answer, cause 0 is Asterisk's originate timeout, and on
    an event of our own it means unknown: both stay as they are."""
    raw = event.get("cause")
    cause_txt = str(event.get("cause_txt", ""))
    if raw is None:
        return None, cause_txt
    cause = int(raw)
    if cause == 0 and answered and not event.get(MADE_UP):
        return NORMAL_CLEARING, "Normal Clearing"
    return cause, cause_txt
