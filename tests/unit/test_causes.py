from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from ivr_auth import callsession, causes, controller
from ivr_auth.ari import events
from ivr_auth.ari import node as ari_node


@pytest.mark.parametrize(
    ("cause", "outcome"),
    [
        (17, causes.Outcome.BUSY),  # user busy (SIP 486)
        (18, causes.Outcome.NO_ANSWER),  # no user responding (SIP 408)
        (19, causes.Outcome.NO_ANSWER),  # no answer (SIP 480)
        (20, causes.Outcome.NO_ANSWER),  # subscriber absent: switched off, out of coverage
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
    assert causes.CALLEE_UNAVAILABLE_CAUSES <= causes.NO_ANSWER_CAUSES


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (causes.Outcome.BUSY, True),
        (causes.Outcome.NO_ANSWER, True),
        (causes.Outcome.CALLEE_UNAVAILABLE, True),
        (causes.Outcome.REJECTED, False),
        (causes.Outcome.UNREACHABLE, False),
        (causes.Outcome.TRUNK_FAILED, False),  # retried by its own rule
        (causes.Outcome.ERROR, False),
        (causes.Outcome.ANSWERED, False),
    ],
)
def test_retryable(outcome: causes.Outcome, expected: bool) -> None:
    assert causes.retryable(outcome) is expected


def test_every_outcome_has_a_retry_decision() -> None:
    assert {o for o in causes.Outcome if causes.retryable(o)} == {
        causes.Outcome.BUSY,
        causes.Outcome.NO_ANSWER,
        causes.Outcome.CALLEE_UNAVAILABLE,
    }


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


@pytest.mark.parametrize(
    ("cause", "tech_cause", "rang", "seconds", "timed_out"),
    [
        (18, 408, False, 8.0, True),  # Asterisk 22: timer B's own 408
        (18, 408, False, 7.6, True),
        (18, 408, True, 8.0, False),  # it rang: the callee's network gave up
        (18, 408, False, 2.0, False),  # a 408 from the callee's network
        (18, 480, False, 8.0, False),  # a response came: not a silent trunk
        (18, 487, False, 8.0, False),
    ],
)
def test_with_a_sip_status_a_trunk_time_out_is_a_408(
    cause: int, tech_cause: int, rang: bool, seconds: float, timed_out: bool
) -> None:
    assert (
        causes.trunk_timed_out(cause, rang=rang, seconds=seconds, timer_b_seconds=8.0, tech_cause=tech_cause)
        is timed_out
    )


@pytest.mark.parametrize(
    ("cause", "tech_cause", "failed"),
    [
        (34, None, True),
        (34, 503, True),
        (38, 500, True),
        (102, 504, True),
        (21, 401, True),  # the trunk refused our credentials
        (21, 407, True),
        (21, 603, False),  # the callee declined
        (21, 403, False),
        (34, 599, True),  # a status not in the table: its cause decides
        (27, 502, True),  # Bad Gateway: the carrier's gateway failed
        (29, 501, True),  # Not Implemented: a 5xx is the server's failure
        (127, 505, True),
        (27, None, True),  # Asterisk 16 / 20: 27 is a 502 unless a Reason header said so
        (27, 404, False),  # a Reason header's 27 on a 404: the status decides
        (27, 480, False),
        (19, 480, False),
    ],
)
def test_trunk_failure_reads_the_sip_status_first(cause: int, tech_cause: int | None, failed: bool) -> None:
    assert causes.trunk_failure(cause, tech_cause) is failed


Out = causes.Outcome
TIMER_B = 8.0


def end(
    cause: int,
    *,
    tech_cause: int | None = None,
    rang: bool = False,
    seconds: float = 1.0,
    timed_out: bool = False,
) -> causes.Outcome:
    return causes.unanswered_end(
        cause, tech_cause=tech_cause, rang=rang, seconds=seconds, timed_out=timed_out, timer_b_seconds=TIMER_B
    )


@pytest.mark.parametrize(
    ("cause", "rang", "seconds", "outcome"),
    [
        # Asterisk 16: the cause, whether it rang, and when it ended.
        (19, False, 0.3, Out.CALLEE_UNAVAILABLE),  # 480 at once: switched off, out of coverage
        (18, False, 2.0, Out.CALLEE_UNAVAILABLE),  # 408 from the callee's network
        (20, False, 0.5, Out.CALLEE_UNAVAILABLE),  # subscriber absent
        (19, True, 25.0, Out.NO_ANSWER),  # the network gave up after ringing
        (18, True, 8.0, Out.NO_ANSWER),
        (20, True, 12.0, Out.NO_ANSWER),
        (18, False, 8.0, Out.TRUNK_FAILED),  # nothing at all until timer B
        (18, False, 7.6, Out.TRUNK_FAILED),
        (19, False, 8.0, Out.CALLEE_UNAVAILABLE),  # timer B's end is 18, never 19
        (34, False, 0.1, Out.TRUNK_FAILED),  # 503
        (38, False, 0.1, Out.TRUNK_FAILED),  # 500
        (102, False, 0.1, Out.TRUNK_FAILED),  # 504
        (27, False, 0.1, Out.TRUNK_FAILED),  # 502 (or a Reason header's 27: see TRUNK_FAILURE_CAUSES)
        (34, True, 3.0, Out.TRUNK_FAILED),
        (16, False, 3.0, Out.NO_ANSWER),  # cleared before answer, no reason given
        (16, True, 3.0, Out.NO_ANSWER),
        (0, False, 3.0, Out.NO_ANSWER),  # a ringing call whose node was lost
        (17, False, 0.2, Out.BUSY),
        (17, True, 5.0, Out.BUSY),
        (21, False, 0.2, Out.REJECTED),
        (21, True, 5.0, Out.REJECTED),
        (1, False, 0.2, Out.UNREACHABLE),
        (3, False, 0.2, Out.UNREACHABLE),
        (127, False, 0.2, Out.UNREACHABLE),
        (111, False, 0.2, Out.ERROR),
    ],
)
def test_an_unanswered_end_from_its_cause(cause: int, rang: bool, seconds: float, outcome: causes.Outcome) -> None:
    assert end(cause, rang=rang, seconds=seconds) is outcome


@pytest.mark.parametrize("rang", [False, True])
@pytest.mark.parametrize("seconds", [4.0, TIMER_B, 30.0])
def test_our_ring_timer_is_no_answer_rung_or_not(rang: bool, seconds: float) -> None:
    # Many carriers send their ringback as early media (183) and never a 180.
    assert end(19, rang=rang, seconds=seconds, timed_out=True) is Out.NO_ANSWER
    assert end(18, tech_cause=487, rang=rang, seconds=seconds, timed_out=True) is Out.NO_ANSWER


@pytest.mark.parametrize(
    ("cause", "tech_cause", "rang", "seconds", "outcome"),
    [
        # Asterisk 22: the SIP status where it is known, then as above.
        (19, 480, False, 0.3, Out.CALLEE_UNAVAILABLE),
        (19, 480, True, 20.0, Out.NO_ANSWER),
        (18, 480, False, TIMER_B, Out.CALLEE_UNAVAILABLE),  # a 480 came: not a silent trunk
        (18, 408, False, 2.0, Out.CALLEE_UNAVAILABLE),
        (18, 408, True, 10.0, Out.NO_ANSWER),
        (18, 408, False, TIMER_B, Out.TRUNK_FAILED),
        (17, 486, False, 0.2, Out.BUSY),
        (17, 600, False, 0.2, Out.BUSY),
        (21, 603, True, 4.0, Out.REJECTED),
        (21, 403, False, 0.2, Out.REJECTED),
        (21, 401, False, 0.2, Out.TRUNK_FAILED),  # our credentials, not the callee
        (21, 407, False, 0.2, Out.TRUNK_FAILED),
        (1, 404, False, 0.2, Out.UNREACHABLE),
        (1, 604, False, 0.2, Out.UNREACHABLE),
        (22, 410, False, 0.2, Out.UNREACHABLE),
        (28, 484, False, 0.2, Out.UNREACHABLE),
        (34, 503, False, 0.2, Out.TRUNK_FAILED),
        (38, 500, False, 0.2, Out.TRUNK_FAILED),
        (102, 504, False, 0.2, Out.TRUNK_FAILED),
        (27, 502, False, 0.2, Out.TRUNK_FAILED),
        (27, 502, True, 3.0, Out.TRUNK_FAILED),
        (29, 501, False, 0.2, Out.TRUNK_FAILED),
        (19, 486, False, 0.2, Out.BUSY),  # the status wins where the two disagree
        (27, 404, False, 0.2, Out.UNREACHABLE),  # a carrier's Reason: Q.850;cause=27 on a 404
        (27, 480, False, 0.2, Out.CALLEE_UNAVAILABLE),
        # Not in the table: the cause decides.
        (34, 599, False, 0.2, Out.TRUNK_FAILED),
        (127, 487, False, 0.2, Out.UNREACHABLE),
        (19, 499, False, 0.2, Out.CALLEE_UNAVAILABLE),
    ],
)
def test_an_unanswered_end_from_its_sip_status(
    cause: int, tech_cause: int, rang: bool, seconds: float, outcome: causes.Outcome
) -> None:
    assert end(cause, tech_cause=tech_cause, rang=rang, seconds=seconds) is outcome


def test_every_sip_status_read_is_a_final_failure_response() -> None:
    assert all(400 <= status < 700 for status in causes.SIP_OUTCOMES)
    # A 5xx is the server's (the trunk's) failure, never the callee's.
    assert all(outcome is Out.TRUNK_FAILED for status, outcome in causes.SIP_OUTCOMES.items() if status // 100 == 5)
    read_as_no_answer = {status for status, outcome in causes.SIP_OUTCOMES.items() if outcome is Out.NO_ANSWER}
    assert causes.CALLEE_UNAVAILABLE_RESPONSES.issubset(read_as_no_answer)
    assert Out.ANSWERED not in causes.SIP_OUTCOMES.values()


# --- hangup causes as recorded -----------------------------------------------------------

CHANNEL = {"id": "ivrauth-5f0c-1", "name": "PJSIP/carrier-00000007", "state": "Up"}
# A callee's BYE on an answered call, as Asterisk 22 reports it (no tech_cause:
# a normal end), and as Asterisk 16 does.
BYE_22_DESTROYED = {
    "type": "ChannelDestroyed",
    "timestamp": "2026-12-01T10:00:07.412+0000",
    "cause": 0,
    "cause_txt": "Unknown",
    "channel": CHANNEL,
    "asterisk_id": "52:54:00:12:34:56",
    "application": "ivr-auth",
}
BYE_22_HANGUP_REQUEST = {
    "type": "ChannelHangupRequest",
    "timestamp": "2026-12-01T10:00:07.409+0000",
    "cause": 0,
    "channel": CHANNEL,
    "asterisk_id": "52:54:00:12:34:56",
    "application": "ivr-auth",
}
BYE_16_DESTROYED = {**BYE_22_DESTROYED, "cause": 16, "cause_txt": "Normal Clearing"}


@pytest.mark.parametrize("event", [BYE_22_DESTROYED, BYE_22_HANGUP_REQUEST, BYE_16_DESTROYED])
def test_a_callees_bye_is_recorded_as_normal_clearing(event: dict[str, object]) -> None:
    assert causes.recorded_hangup(event, answered=True) == (16, "Normal Clearing")


def test_cause_0_before_answer_is_left_alone() -> None:
    # Asterisk's originate timeout: our own ring timer has it covered.
    assert causes.recorded_hangup(BYE_22_DESTROYED, answered=False) == (0, "Unknown")


@pytest.mark.parametrize(
    "event",
    [
        {**BYE_22_DESTROYED, "cause": 17, "cause_txt": "User busy"},
        {**BYE_22_DESTROYED, "cause": 34, "cause_txt": "Circuit/channel congestion", "tech_cause": 503},
        {**BYE_22_DESTROYED, "cause": 127, "cause_txt": "Interworking, unspecified"},
    ],
)
def test_other_causes_are_recorded_as_they_are(event: dict[str, object]) -> None:
    assert causes.recorded_hangup(event, answered=True) == (event["cause"], event["cause_txt"])


def test_no_cause_at_all_is_none() -> None:
    assert causes.recorded_hangup({}, answered=True) == (None, "")
    assert causes.recorded_hangup({"type": "StasisEnd", "channel": CHANNEL}, answered=True) == (None, "")


# --- the same events as a call sees them -----------------------------------------------


class Node:
    """As much of an ARI node as a call's events need."""

    def __init__(self) -> None:
        self.dispatcher = events.Dispatcher()


def session_on(node: Node, *, answered: bool) -> callsession.CallSession:
    session = callsession.CallSession(cast(ari_node.AriNode, node), CHANNEL["id"])
    session.answered_at = 1.0 if answered else None
    return session


async def test_a_call_hung_up_by_the_callee_on_asterisk_22_ends_in_normal_clearing() -> None:
    node = Node()
    session = session_on(node, answered=True)
    await node.dispatcher(BYE_22_DESTROYED)

    # As any wait on the call does when the hangup request comes.
    gone = await session._hung_up(BYE_22_HANGUP_REQUEST)

    assert (gone.cause, gone.cause_txt) == (16, "Normal Clearing")


async def test_a_channel_the_controller_finds_gone_keeps_its_unknown_cause() -> None:
    node = Node()
    session = session_on(node, answered=True)
    holder = SimpleNamespace(node=node)
    await controller.Controller._tell_gone(
        cast(controller.Controller, holder), [CHANNEL["id"]], "channel gone while the events websocket was down"
    )

    gone = await session._hung_up(None)

    assert (gone.cause, gone.cause_txt) == (0, "channel gone while the events websocket was down")


async def test_a_lost_nodes_made_up_end_is_marked_as_ours() -> None:
    node = Node()
    queue = node.dispatcher.subscribe(CHANNEL["id"])
    holder = SimpleNamespace(node=node)
    await controller.Controller._tell_gone(
        cast(controller.Controller, holder), [CHANNEL["id"]], "node a lost", node_lost=True
    )

    event = queue.get_nowait()

    assert event[causes.MADE_UP]
    assert event[callsession.NODE_LOST]
    assert causes.recorded_hangup(event, answered=True) == (0, "node a lost")


RINGING = {"type": "ChannelStateChange", "channel": {**CHANNEL, "state": "Ringing"}}
UNAVAILABLE_22 = {**BYE_22_DESTROYED, "cause": 19, "cause_txt": "User alerting, no answer", "tech_cause": 480}
UNAVAILABLE_16 = {**BYE_22_DESTROYED, "cause": 19, "cause_txt": "User alerting, no answer"}


@pytest.mark.parametrize(
    ("recorded", "rang", "tech_cause"),
    [
        ([UNAVAILABLE_22], False, 480),
        ([RINGING, UNAVAILABLE_22], True, 480),
        ([UNAVAILABLE_16], False, None),
        ([RINGING, UNAVAILABLE_16], True, None),
    ],
)
async def test_an_unanswered_call_keeps_its_sip_status_and_whether_it_rang(
    recorded: list[dict[str, object]], rang: bool, tech_cause: int | None
) -> None:
    node = Node()
    session = session_on(node, answered=False)
    for event in recorded:
        await node.dispatcher(event)

    unanswered = await session.wait_answer(30)

    assert unanswered is not None
    assert (unanswered.cause, unanswered.rang, unanswered.tech_cause) == (19, rang, tech_cause)
    expected = Out.NO_ANSWER if rang else Out.CALLEE_UNAVAILABLE
    assert (
        causes.unanswered_end(
            unanswered.cause,
            tech_cause=unanswered.tech_cause,
            rang=unanswered.rang,
            seconds=unanswered.seconds,
            timed_out=unanswered.timed_out,
            timer_b_seconds=TIMER_B,
        )
        is expected
    )
