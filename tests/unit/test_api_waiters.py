"""api/waiters.py without I/O: a fake row that the test changes, and
notifications sent by hand."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid

import pytest

from ivr_auth import models, states
from ivr_auth.api import waiters

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


@dataclasses.dataclass
class Row:
    """A request whose status the test sets; counts its reads."""

    status: states.Status = states.Status.QUEUED
    reads: int = 0

    async def read(self) -> models.Verification:
        self.reads += 1
        return _verification(self.status)


def _verification(status: states.Status) -> models.Verification:
    return models.Verification(
        id=uuid.UUID(int=1),
        tenant_id=uuid.UUID(int=2),
        method="dtmf",
        phone="+819012345678",
        line_type="mobile",
        code_hash=b"",
        code_sealed=None,
        code_length=6,
        language="ja",
        reference=None,
        callback_url=None,
        status=status,
        reason=None,
        code_attempts=0,
        max_code_attempts=3,
        call_attempts=0,
        max_call_attempts=3,
        idempotency_key=None,
        request_hash=None,
        created_at=NOW,
        updated_at=NOW,
        expires_at=NOW,
        next_attempt_at=NOW,
        lease_owner=None,
        lease_expires_at=None,
        node=None,
        channel_id=None,
        answered_at=None,
        finished_at=None,
        last_cause=None,
        last_cause_txt=None,
    )


async def _registered(waiting: waiters.Waiters, count: int) -> None:
    async with asyncio.timeout(5):
        while len(waiting) != count:
            await asyncio.sleep(0)


def _listening(max_waiters: int = 10, *, fallback_seconds: float = waiters.FALLBACK_SECONDS) -> waiters.Waiters:
    waiting = waiters.Waiters(max_waiters, fallback_seconds=fallback_seconds)
    waiting.set_listening(True)
    return waiting


async def test_a_notification_of_a_change_answers() -> None:
    waiting, row, vid = _listening(), Row(), uuid.UUID(int=1)
    task = asyncio.create_task(waiting.wait_for_change(vid, row.read, 30))
    await _registered(waiting, 1)

    row.status = states.Status.CALLING
    waiting.notify(str(vid))

    assert (await task).status is states.Status.CALLING
    assert len(waiting) == 0


async def test_a_notification_without_a_change_keeps_waiting() -> None:
    waiting, row, vid = _listening(), Row(), uuid.UUID(int=1)
    task = asyncio.create_task(waiting.wait_for_change(vid, row.read, 30))
    await _registered(waiting, 1)

    waiting.notify(str(vid))
    waiting.notify(str(uuid.UUID(int=99)))  # another request's
    await asyncio.sleep(0.05)

    assert not task.done()
    assert row.reads == 2  # the first read, and the one its notification asked for
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(waiting) == 0


async def test_until_end_reads_only_when_an_end_is_announced() -> None:
    waiting, row, vid = _listening(), Row(), uuid.UUID(int=1)
    task = asyncio.create_task(waiting.wait_for_change(vid, row.read, 30, until_end=True))
    await _registered(waiting, 1)

    for status in (states.Status.CALLING, states.Status.IN_CALL):
        row.status = status
        waiting.notify(f"{vid} {status.value}")  # on the way: no read
    await asyncio.sleep(0.05)
    assert not task.done()
    assert row.reads == 1
    row.status = states.Status.VERIFIED
    waiting.notify(f"{vid} verified")

    assert (await task).status is states.Status.VERIFIED
    assert row.reads == 2


async def test_until_end_still_reads_on_a_bare_notification() -> None:
    waiting, row, vid = _listening(), Row(), uuid.UUID(int=1)
    task = asyncio.create_task(waiting.wait_for_change(vid, row.read, 30, until_end=True))
    await _registered(waiting, 1)

    row.status = states.Status.CALLING
    waiting.notify(str(vid))  # no status given: read, and wait on (not ended)
    await asyncio.sleep(0.05)
    assert (not task.done(), row.reads) == (True, 2)
    row.status = states.Status.NO_ANSWER
    waiting.notify(str(vid))

    assert (await task).status is states.Status.NO_ANSWER


async def test_the_wait_runs_out_with_a_fresh_read() -> None:
    waiting, row = _listening(), Row()

    answer = await waiting.wait_for_change(uuid.UUID(int=1), row.read, 0.05)

    assert answer.status is states.Status.QUEUED
    assert row.reads == 2


async def test_an_ended_request_answers_at_once() -> None:
    waiting, row = _listening(), Row(states.Status.VERIFIED)

    answer = await waiting.wait_for_change(uuid.UUID(int=1), row.read, 30)

    assert answer.status is states.Status.VERIFIED
    assert row.reads == 1


async def test_without_notifications_the_row_is_read_on_a_timer() -> None:
    waiting, row, vid = waiters.Waiters(10, fallback_seconds=0.01), Row(), uuid.UUID(int=1)
    task = asyncio.create_task(waiting.wait_for_change(vid, row.read, 30))
    await _registered(waiting, 1)

    row.status = states.Status.CANCELED  # announced to nobody

    assert (await task).status is states.Status.CANCELED


async def test_listening_again_makes_every_waiter_read() -> None:
    waiting, row, vid = waiters.Waiters(10, fallback_seconds=30), Row(), uuid.UUID(int=1)
    task = asyncio.create_task(waiting.wait_for_change(vid, row.read, 60))
    await _registered(waiting, 1)

    row.status = states.Status.CALLING  # while nobody could announce it
    waiting.set_listening(True)

    assert (await task).status is states.Status.CALLING


async def test_closing_answers_every_wait_with_a_fresh_read() -> None:
    waiting, row = _listening(), Row()
    tasks = [asyncio.create_task(waiting.wait_for_change(uuid.UUID(int=n), row.read, 60)) for n in range(3)]
    await _registered(waiting, 3)

    waiting.close()

    assert [a.status for a in await asyncio.gather(*tasks)] == [states.Status.QUEUED] * 3
    assert row.reads == 6


async def test_waits_over_the_bound_are_refused() -> None:
    waiting, row = _listening(max_waiters=1), Row()
    task = asyncio.create_task(waiting.wait_for_change(uuid.UUID(int=1), row.read, 60))
    await _registered(waiting, 1)

    with pytest.raises(waiters.TooManyWaiters, match=r"http\.max_waiters"):
        await waiting.wait_for_change(uuid.UUID(int=2), row.read, 60)

    waiting.close()
    await task
    assert len(waiting) == 0


async def test_a_failed_first_read_leaves_no_waiter() -> None:
    waiting = _listening()

    async def missing() -> models.Verification:
        raise LookupError("no such request")

    with pytest.raises(LookupError):
        await waiting.wait_for_change(uuid.UUID(int=1), missing, 60)
    assert len(waiting) == 0


async def test_a_notification_that_is_no_id_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    waiters.Waiters(1).notify("not-a-uuid")

    assert "no id" in caplog.text
