"""What a call's end means: Q.850 hangup causes (as ARI reports them in
``ChannelDestroyed.cause``) mapped to the outcomes ivr-auth records.

SIP responses reach us already mapped by Asterisk (RFC 3398): 486 Busy Here
is 17, 480 and 408 are 18/19, 603 Decline is 21, 404 is 1, 503 is 34 or 38.
"""

from __future__ import annotations

import enum


class Outcome(enum.Enum):
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"
    ERROR = "error"


BUSY_CAUSES = frozenset({17})
NO_ANSWER_CAUSES = frozenset({18, 19, 0})
REJECTED_CAUSES = frozenset({21})
# The number does not exist, is not reachable now, or the network failed.
UNREACHABLE_CAUSES = frozenset({1, 2, 3, 20, 22, 27, 28, 29, 31, 34, 38, 41, 42, 44, 47, 58, 88, 102, 127})
NORMAL_CLEARING = 16


def unanswered_outcome(cause: int) -> Outcome:
    """Why a call that never reached the callee's Stasis app ended."""
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
    """Busy and no answer may succeed a little later; the rest will not."""
    return outcome in (Outcome.BUSY, Outcome.NO_ANSWER)


# The trunk (or the carrier behind it) failed, not the callee: 503 Service
# Unavailable (34), 500 Server Internal Error (38), 41 / 42 (temporary
# failure, switching equipment congestion), 504 Server Time-out (102). Busy
# (17), no answer (18, 19), declined (21) and unallocated number (1) say
# something about the callee and would fail on any trunk.
TRUNK_FAILURE_CAUSES = frozenset({34, 38, 41, 42, 102})


def trunk_failure(cause: int) -> bool:
    """The call failed on its trunk's side; another trunk may do better."""
    return cause in TRUNK_FAILURE_CAUSES


# A trunk that never answers the INVITE at all (not even 100 Trying) ends
# the call when PJSIP's INVITE transaction times out (timer B), reported as
# cause 18 like a callee's 408 or 480. What tells them apart: the call never
# rang, and it ended when timer B ran out, not before.
NO_RESPONSE_CAUSES = frozenset({18, 102})
# How much earlier than timer B a cause-18 end may come and still be its time-out.
TIMER_B_SLACK_SECONDS = 0.5


def trunk_timed_out(cause: int, *, rang: bool, seconds: float, timer_b_seconds: float) -> bool:
    """The call's trunk did not answer the INVITE within timer B."""
    return cause in NO_RESPONSE_CAUSES and not rang and seconds >= timer_b_seconds - TIMER_B_SLACK_SECONDS
