from __future__ import annotations

import datetime as dt

import pytest

from ivr_auth import causes, states

S = states.Status
NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
DELAY = dt.timedelta(seconds=30)
NON_TERMINAL = frozenset(S) - states.TERMINAL


def retry(
    outcome: causes.Outcome,
    *,
    call_attempts: int = 1,
    max_call_attempts: int = 3,
    expires_at: dt.datetime = NOW + dt.timedelta(minutes=5),
) -> tuple[states.Status, dt.datetime | None]:
    return states.after_unanswered(
        outcome,
        call_attempts=call_attempts,
        max_call_attempts=max_call_attempts,
        retry_delay=DELAY,
        expires_at=expires_at,
        now=NOW,
    )


# --- statuses and transitions ------------------------------------------------------


def test_terminal_statuses_are_the_contracts() -> None:
    # DESIGN.md, "Statuses": queued, calling, in_call (and delivered for voice), then one terminal.
    assert {s.value for s in states.TERMINAL} == {
        "verified",
        "failed",
        "no_answer",
        "busy",
        "rejected",
        "unreachable",
        "hung_up",
        "expired",
        "canceled",
        "error",
    }
    assert {S.QUEUED, S.CALLING, S.IN_CALL, S.SENT, S.DELIVERED} == NON_TERMINAL


@pytest.mark.parametrize("terminal", sorted(states.TERMINAL))
def test_terminal_status_has_no_way_out(terminal: states.Status) -> None:
    assert terminal not in states.ALLOWED
    assert not any(states.can_move(terminal, dst) for dst in S)


@pytest.mark.parametrize("status", sorted(NON_TERMINAL))
def test_every_open_status_has_a_way_to_an_end(status: states.Status) -> None:
    reachable = {status}
    frontier = [status]
    while frontier:
        for dst in states.ALLOWED.get(frontier.pop(), frozenset()):
            if dst not in reachable:
                reachable.add(dst)
                frontier.append(dst)

    assert states.ALLOWED[status]
    assert reachable & states.TERMINAL
    # Whatever happens, a request can always be canceled or expire on the way.
    assert states.can_move(status, S.CANCELED)
    assert states.can_move(status, S.EXPIRED)


@pytest.mark.parametrize("status", list(S))
def test_no_status_moves_to_itself(status: states.Status) -> None:
    assert not states.can_move(status, status)


@pytest.mark.parametrize(
    ("src", "dst", "allowed"),
    [
        (S.QUEUED, S.CALLING, True),
        (S.CALLING, S.QUEUED, True),  # unanswered, retried later
        (S.CALLING, S.IN_CALL, True),
        (S.IN_CALL, S.DELIVERED, True),
        (S.DELIVERED, S.VERIFIED, True),
        (S.QUEUED, S.VERIFIED, True),  # POST .../check before the call
        (S.QUEUED, S.IN_CALL, True),  # an inbound call that keys the code
        (S.QUEUED, S.BUSY, False),
        (S.IN_CALL, S.QUEUED, True),  # not a retry: on to the next channel of the request's list
        (S.SENT, S.QUEUED, True),  # the SMS unanswered: on to the next channel
        (S.QUEUED, S.SENT, True),
        (S.SENT, S.DELIVERED, True),
        (S.SENT, S.IN_CALL, False),
        (S.IN_CALL, S.BUSY, False),
        (S.DELIVERED, S.CALLING, False),
        (S.DELIVERED, S.HUNG_UP, False),
        (S.VERIFIED, S.FAILED, False),
        (S.CANCELED, S.QUEUED, False),
        (S.EXPIRED, S.CALLING, False),
    ],
)
def test_can_move(src: states.Status, dst: states.Status, allowed: bool) -> None:
    assert states.can_move(src, dst) is allowed


@pytest.mark.parametrize(
    ("dst", "sources"),
    [
        (S.QUEUED, ["calling", "delivered", "in_call", "sent"]),
        (S.CALLING, ["queued"]),
        (S.IN_CALL, ["calling", "queued"]),
        (S.DELIVERED, ["in_call", "sent"]),
        (S.HUNG_UP, ["in_call"]),
        (S.BUSY, ["calling"]),
        (S.NO_ANSWER, ["calling"]),
        (S.CANCELED, ["calling", "delivered", "in_call", "queued", "sent"]),
        (S.VERIFIED, ["calling", "delivered", "in_call", "queued", "sent"]),
    ],
)
def test_sources_of(dst: states.Status, sources: list[str]) -> None:
    assert states.sources_of(dst) == sources


@pytest.mark.parametrize("dst", list(S))
def test_sources_of_agrees_with_can_move(dst: states.Status) -> None:
    found = states.sources_of(dst)

    assert found == sorted(found)
    assert set(found) == {src.value for src in S if states.can_move(src, dst)}


def test_checkable_and_cancelable_statuses_can_reach_their_ends() -> None:
    # check_code moves from the current status to verified or failed, cancel to canceled.
    for status in states.CHECKABLE:
        assert states.can_move(status, S.VERIFIED)
        assert states.can_move(status, S.FAILED)
    for status in states.CANCELABLE:
        assert states.can_move(status, S.CANCELED)
    assert not states.CHECKABLE & states.TERMINAL
    assert not states.CANCELABLE & states.TERMINAL
    assert states.IN_PROGRESS <= NON_TERMINAL


def test_every_unanswered_outcome_ends_in_a_terminal_status_reachable_from_calling() -> None:
    assert set(states.UNANSWERED_STATUS) == set(causes.Outcome) - {causes.Outcome.ANSWERED}
    for status in states.UNANSWERED_STATUS.values():
        assert status in states.TERMINAL
        assert states.can_move(S.CALLING, status)


# --- after_unanswered -----------------------------------------------------------------


@pytest.mark.parametrize("outcome", [causes.Outcome.BUSY, causes.Outcome.NO_ANSWER])
@pytest.mark.parametrize(("call_attempts", "max_call_attempts"), [(1, 2), (1, 3), (2, 3)])
def test_busy_and_no_answer_are_retried_while_attempts_and_time_remain(
    outcome: causes.Outcome, call_attempts: int, max_call_attempts: int
) -> None:
    assert retry(outcome, call_attempts=call_attempts, max_call_attempts=max_call_attempts) == (
        S.QUEUED,
        NOW + DELAY,
    )


@pytest.mark.parametrize(("outcome", "final"), [(causes.Outcome.BUSY, S.BUSY), (causes.Outcome.NO_ANSWER, S.NO_ANSWER)])
@pytest.mark.parametrize(("call_attempts", "max_call_attempts"), [(1, 1), (3, 3), (4, 3)])
def test_the_last_attempt_is_terminal(
    outcome: causes.Outcome, final: states.Status, call_attempts: int, max_call_attempts: int
) -> None:
    assert retry(outcome, call_attempts=call_attempts, max_call_attempts=max_call_attempts) == (final, None)


@pytest.mark.parametrize(
    "expires_at",
    [
        NOW + DELAY,  # the retry would start the moment the request expires
        NOW + DELAY - dt.timedelta(microseconds=1),
        NOW,
        NOW - dt.timedelta(minutes=1),
    ],
)
def test_never_retried_at_or_past_expiry(expires_at: dt.datetime) -> None:
    assert retry(causes.Outcome.BUSY, expires_at=expires_at) == (S.BUSY, None)


def test_retried_when_the_retry_starts_just_before_expiry() -> None:
    expires_at = NOW + DELAY + dt.timedelta(microseconds=1)

    status, retry_at = retry(causes.Outcome.NO_ANSWER, expires_at=expires_at)

    assert status is S.QUEUED
    assert retry_at is not None
    assert retry_at < expires_at


@pytest.mark.parametrize(
    ("outcome", "final"),
    [
        (causes.Outcome.REJECTED, S.REJECTED),
        (causes.Outcome.UNREACHABLE, S.UNREACHABLE),
        (causes.Outcome.ERROR, S.ERROR),
    ],
)
def test_rejected_unreachable_and_error_are_never_retried(outcome: causes.Outcome, final: states.Status) -> None:
    plenty = NOW + dt.timedelta(hours=1)

    assert retry(outcome, call_attempts=1, max_call_attempts=10, expires_at=plenty) == (final, None)


def test_a_phone_out_of_reach_is_retried_and_ends_as_no_answer() -> None:
    assert retry(causes.Outcome.CALLEE_UNAVAILABLE) == (S.QUEUED, NOW + DELAY)
    assert retry(causes.Outcome.CALLEE_UNAVAILABLE, call_attempts=3, max_call_attempts=3) == (S.NO_ANSWER, None)


# --- after_trunk_failure ---------------------------------------------------------------


def after_trunk(
    trunk_failures: int,
    *,
    max_trunk_failures: int = 3,
    retry_in: dt.timedelta = dt.timedelta(seconds=30),
    expires_at: dt.datetime = NOW + dt.timedelta(minutes=5),
) -> tuple[states.Status, dt.datetime | None]:
    return states.after_trunk_failure(
        trunk_failures=trunk_failures,
        max_trunk_failures=max_trunk_failures,
        retry_in=retry_in,
        expires_at=expires_at,
        now=NOW,
    )


def test_another_trunk_up_takes_the_request_at_once() -> None:
    assert after_trunk(1, retry_in=dt.timedelta(0)) == (S.QUEUED, NOW)


@pytest.mark.parametrize("trunk_failures", [1, 2])
def test_with_no_trunk_up_the_request_waits_for_the_cooldown(trunk_failures: int) -> None:
    assert after_trunk(trunk_failures) == (S.QUEUED, NOW + dt.timedelta(seconds=30))


@pytest.mark.parametrize(("trunk_failures", "max_trunk_failures"), [(3, 3), (4, 3), (1, 1)])
def test_the_last_trunk_failure_allowed_makes_it_unreachable(trunk_failures: int, max_trunk_failures: int) -> None:
    assert after_trunk(trunk_failures, max_trunk_failures=max_trunk_failures, retry_in=dt.timedelta(0)) == (
        S.UNREACHABLE,
        None,
    )


@pytest.mark.parametrize(
    "expires_at",
    [NOW + dt.timedelta(seconds=30), NOW + dt.timedelta(seconds=29), NOW, NOW - dt.timedelta(minutes=1)],
)
def test_a_trunk_back_only_at_or_after_expiry_makes_it_unreachable_now(expires_at: dt.datetime) -> None:
    assert after_trunk(1, expires_at=expires_at) == (S.UNREACHABLE, None)


@pytest.mark.parametrize(("trunks", "max_call_attempts", "limit"), [(1, 3, 3), (2, 3, 6), (1, 1, 1), (3, 2, 6)])
def test_the_trunk_failure_limit_is_the_attempts_per_trunk(trunks: int, max_call_attempts: int, limit: int) -> None:
    assert states.trunk_failure_limit(trunks, max_call_attempts) == limit


def test_a_trunk_failure_ends_reachable_from_calling() -> None:
    assert states.UNANSWERED_STATUS[causes.Outcome.TRUNK_FAILED] is S.UNREACHABLE
    assert states.UNANSWERED_STATUS[causes.Outcome.CALLEE_UNAVAILABLE] is S.NO_ANSWER
    assert states.can_move(S.CALLING, S.UNREACHABLE)
    assert states.can_move(S.CALLING, S.QUEUED)
