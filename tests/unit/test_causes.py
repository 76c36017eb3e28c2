from __future__ import annotations

import pytest

from ivr_auth import causes


@pytest.mark.parametrize(
    ("cause", "outcome"),
    [
        (17, causes.Outcome.BUSY),  # user busy (SIP 486)
        (18, causes.Outcome.NO_ANSWER),  # no user responding (SIP 408)
        (19, causes.Outcome.NO_ANSWER),  # no answer (SIP 480)
        (0, causes.Outcome.NO_ANSWER),  # not set: the originate timed out
        (16, causes.Outcome.NO_ANSWER),  # normal clearing before answer
        (21, causes.Outcome.REJECTED),  # call rejected (SIP 603)
        (1, causes.Outcome.UNREACHABLE),  # unallocated number (SIP 404)
        (34, causes.Outcome.UNREACHABLE),  # no circuit (SIP 503)
        (38, causes.Outcome.UNREACHABLE),  # network out of order (SIP 503)
        (127, causes.Outcome.UNREACHABLE),
        (999, causes.Outcome.ERROR),
        (-1, causes.Outcome.ERROR),
        (111, causes.Outcome.ERROR),  # protocol error: not a property of the callee
    ],
)
def test_unanswered_outcome(cause: int, outcome: causes.Outcome) -> None:
    assert causes.unanswered_outcome(cause) is outcome


def test_cause_sets_do_not_overlap() -> None:
    sets = [causes.BUSY_CAUSES, causes.NO_ANSWER_CAUSES, causes.REJECTED_CAUSES, causes.UNREACHABLE_CAUSES]
    everything = [c for s in sets for c in s]

    assert len(everything) == len(set(everything))
    assert causes.NORMAL_CLEARING not in set(everything)


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (causes.Outcome.BUSY, True),
        (causes.Outcome.NO_ANSWER, True),
        (causes.Outcome.REJECTED, False),
        (causes.Outcome.UNREACHABLE, False),
        (causes.Outcome.ERROR, False),
        (causes.Outcome.ANSWERED, False),
    ],
)
def test_retryable(outcome: causes.Outcome, expected: bool) -> None:
    assert causes.retryable(outcome) is expected


def test_every_outcome_has_a_retry_decision() -> None:
    assert {o for o in causes.Outcome if causes.retryable(o)} == {causes.Outcome.BUSY, causes.Outcome.NO_ANSWER}


@pytest.mark.parametrize(
    ("cause", "rang", "seconds", "timed_out"),
    [
        (18, False, 8.0, True),  # no response at all until timer B: the trunk
        (18, False, 7.6, True),
        (102, False, 8.1, True),
        (18, True, 8.0, False),  # it rang: the callee's 408
        (18, False, 2.0, False),  # an early 480 from the callee's network
        (17, False, 8.0, False),  # busy is the callee's
        (34, False, 8.0, False),  # congestion is trunk_failure's, not a time-out
    ],
)
def test_a_trunk_time_out_is_cause_18_without_ringing_at_timer_b(
    cause: int, rang: bool, seconds: float, timed_out: bool
) -> None:
    assert causes.trunk_timed_out(cause, rang=rang, seconds=seconds, timer_b_seconds=8.0) is timed_out
