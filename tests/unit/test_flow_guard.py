"""flows.guarded: how every flow settles its request when its call ends
another way than the flow's own (a hangup, a lost node, a fault of ours),
with a store and a call that only record what is asked of them."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, cast

import pytest

from ivr_auth import callsession, errors, flows, reasons, states
from ivr_auth import store as store_mod
from ivr_auth.ari import node as ari_node
from ivr_auth.flows import FlowContext
from ivr_auth.store.verifications import CallEnd

S = states.Status
REQUEST = uuid.UUID("6f1c1c1e-8d5e-4a43-9c36-0d7a3a1b2c3d")
CHANNEL = "ivrauth-6f1c-1"
LOG = {"verification_id": str(REQUEST), "channel_id": CHANNEL}
ENDINGS = flows.Endings(
    flow="dtmf",
    party="callee",
    hung_up_reason=reasons.Reason.CALLEE_HUNG_UP,
    hung_up_from=(S.IN_CALL,),
    in_progress=(S.CALLING, S.IN_CALL),
)


class Recorder:
    """Stands in for the store's verifications and calls, and for the call's session."""

    def __init__(self) -> None:
        self.done: list[tuple[Any, ...]] = []
        self.verifications = self
        self.calls = self
        self.channel_id = CHANNEL
        self.answered_at: float | None = None
        self.name = "node-1"

    async def transition(
        self, request: uuid.UUID, from_statuses: Any, to_status: states.Status, **changes: Any
    ) -> None:
        self.done.append(("transition", request, tuple(from_statuses), to_status, changes))

    async def end(self, channel_id: str, outcome: str, cause: int | None, cause_txt: str | None) -> None:
        self.done.append(("end", channel_id, outcome, cause, cause_txt))

    async def hangup(self, reason: str = "normal") -> None:
        self.done.append(("hangup",))

    def close(self) -> None:
        self.done.append(("close",))

    def track(self, request: uuid.UUID, channel_id: str | None) -> None:
        self.done.append(("track", request, channel_id))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def context(recorder: Recorder) -> FlowContext:
    return FlowContext(
        cfg=cast(Any, None),
        store=cast(store_mod.Store, recorder),
        node=cast(ari_node.AriNode, recorder),
        controller="controller-a",
        prompts=cast(Any, None),
        track=recorder.track,
    )


async def run(recorder: Recorder, failure: BaseException | None, request: uuid.UUID | None = REQUEST) -> None:
    session = cast(callsession.CallSession, recorder)
    async with flows.guarded(context(recorder), session, ENDINGS, LOG, request):
        if failure is not None:
            raise failure


async def test_a_hangup_settles_the_request_hung_up_with_its_cause(recorder: Recorder) -> None:
    await run(recorder, callsession.HungUp(16, "Normal Clearing"))

    # The call's end is recorded by the same statement that settles the request.
    assert recorder.done == [
        (
            "transition",
            REQUEST,
            (S.IN_CALL,),
            S.HUNG_UP,
            {
                "reason": reasons.Reason.CALLEE_HUNG_UP,
                "cause": 16,
                "cause_txt": "Normal Clearing",
                "ended_call": CallEnd(CHANNEL, "hung_up", 16, "Normal Clearing"),
            },
        ),
        ("close",),
    ]


async def test_a_hangup_without_a_request_ends_only_the_call(recorder: Recorder) -> None:
    await run(recorder, callsession.HungUp(16, "Normal Clearing"), request=None)

    assert recorder.done == [("end", CHANNEL, "hung_up", 16, "Normal Clearing"), ("close",)]


async def test_a_lost_node_settles_the_request_as_an_error(recorder: Recorder) -> None:
    await run(recorder, errors.NodeLost("node node-1 lost"))

    assert recorder.done == [
        (
            "transition",
            REQUEST,
            (S.CALLING, S.IN_CALL),
            S.ERROR,
            {"reason": reasons.Reason.NODE_LOST, "detail": {"node": "node-1"}},
        ),
        ("end", CHANNEL, "error", None, "node lost"),
        ("close",),
    ]


async def test_a_lost_node_without_a_request_ends_only_the_call_record(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    await run(recorder, errors.AriUnavailable("connection refused"), request=None)

    # An inbound call verified by its caller ID holds no request but has a record.
    assert recorder.done == [("end", CHANNEL, "error", None, "node lost"), ("close",)]
    assert "dtmf call lost with its node: connection refused" in caplog.messages


async def test_a_fault_is_logged_with_the_channel_and_the_call_hung_up(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        await run(recorder, RuntimeError("boom"))

    assert recorder.done == [
        ("hangup",),
        ("transition", REQUEST, (S.CALLING, S.IN_CALL), S.ERROR, {"reason": reasons.Reason.INTERNAL_ERROR}),
        ("end", CHANNEL, "error", None, None),
        ("close",),
    ]
    (record,) = [r for r in caplog.records if r.getMessage() == "dtmf call flow failed"]
    assert record.exc_info is not None
    assert record.__dict__["channel_id"] == CHANNEL


async def test_a_fault_without_a_request_hangs_up_and_ends_the_call_record(recorder: Recorder) -> None:
    await run(recorder, RuntimeError("boom"), request=None)

    assert recorder.done == [("hangup",), ("end", CHANNEL, "error", None, None), ("close",)]


async def test_a_flow_that_ends_by_itself_only_closes_the_session(recorder: Recorder) -> None:
    await run(recorder, None)

    assert recorder.done == [("close",)]


async def test_a_request_taken_during_the_call_is_tracked_until_it_ends(recorder: Recorder) -> None:
    session = cast(callsession.CallSession, recorder)
    async with flows.guarded(context(recorder), session, ENDINGS, LOG) as call:
        call.take(REQUEST)
        raise callsession.HungUp(16, "Normal Clearing")

    assert [step[0] for step in recorder.done] == ["track", "transition", "track", "close"]
    assert recorder.done[0] == ("track", REQUEST, CHANNEL)
    assert recorder.done[-2] == ("track", REQUEST, None)


async def test_cancellation_passes_through_and_closes_the_session(recorder: Recorder) -> None:
    with pytest.raises(asyncio.CancelledError):
        await run(recorder, asyncio.CancelledError())

    assert recorder.done == [("close",)]
