"""The SMS sender's own logic, with a fake carrier and a fake outbox (pure
logic: the real SMPP and Postgres paths are tests/integration's and
tests/e2e's): which carrier takes a message, how much is claimed, what is
recorded for each carrier's answer, the retry schedule, receipts that come
before their submit is recorded, shutdown, and that no log line carries the
code or the text."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator

import pytest

from ivr_auth import config, errors, metrics, tasks
from ivr_auth.sms import sender, smpp, text
from ivr_auth.store import sms as sms_store
from tests.support import sms_carrier

CODE = "482913"
NOW = dt.datetime.now(dt.UTC)


def carriers_config(*names_priorities: tuple[str, int], window: int = 10) -> config.Config:
    return config.from_mapping(
        {
            "sms": {
                "carriers": [
                    {"name": name, "priority": priority, "window": window, "port": 2775 + i}
                    for i, (name, priority) in enumerate(names_priorities)
                ]
            }
        }
    )


def outgoing(
    *, attempt: int = 1, language: str = "en", minutes: float = 5.0, tenant: str = "Acme"
) -> sms_store.Outgoing:
    return sms_store.Outgoing(
        id=uuid.uuid4(),
        verification_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        tenant_name=tenant,
        phone="+819012345678",
        language=language,
        code=CODE,
        attempt=attempt,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes),
    )


@dataclasses.dataclass
class FakeOutbox:
    due: list[sms_store.Outgoing] = dataclasses.field(default_factory=list)
    claims: list[tuple[str, int, float]] = dataclasses.field(default_factory=list)
    calls: list[tuple[str, uuid.UUID | str, dict[str, object]]] = dataclasses.field(default_factory=list)
    retry_answer: bool = True
    # How many times receipt() answers False before True (None: always False).
    receipt_misses: int | None = 0

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[sms_store.Outgoing]:
        self.claims.append((owner, limit, lease_seconds))
        taken, self.due = self.due[:limit], self.due[limit:]
        return taken

    async def submitted(
        self, sms_id: uuid.UUID, *, carrier: str, message_ids: list[str], encoding: str, parts: int
    ) -> None:
        self.calls.append(
            (
                "submitted",
                sms_id,
                {"carrier": carrier, "message_ids": message_ids, "encoding": encoding, "parts": parts},
            )
        )

    async def refused(self, sms_id: uuid.UUID, *, carrier: str, command_status: int, error: str) -> None:
        self.calls.append(("refused", sms_id, {"carrier": carrier, "command_status": command_status, "error": error}))

    async def retry_later(self, sms_id: uuid.UUID, *, delay: float, error: str) -> bool:
        self.calls.append(("retry_later", sms_id, {"delay": delay, "error": error}))
        return self.retry_answer

    async def receipt(self, carrier: str, message_id: str, *, stat: str, err: str | None) -> bool:
        self.calls.append(("receipt", message_id, {"carrier": carrier, "stat": stat, "err": err}))
        if self.receipt_misses is None:
            return False
        if self.receipt_misses > 0:
            self.receipt_misses -= 1
            return False
        return True


def make_sender(cfg: config.Config, outbox: FakeOutbox) -> tuple[sender.Sender, sms_carrier.Carriers, metrics.Metrics]:
    fakes = sms_carrier.Carriers()
    registry = metrics.Metrics(None)
    return sender.Sender(cfg, outbox, owner="test-sender", metrics=registry, make_carrier=fakes), fakes, registry


def sample(registry: metrics.Metrics, name: str, **labels: str) -> float:
    value = registry.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def settle(s: sender.Sender) -> None:
    """Until every send task has ended."""
    while s._sending:
        await asyncio.wait(list(s._sending.values()))


# --- routing and claiming ---------------------------------------------------------------


def test_carriers_are_taken_by_priority_the_next_only_while_the_first_is_unbound() -> None:
    s, fakes, _ = make_sender(carriers_config(("backup", 5), ("main", 0), ("spare", 5)), FakeOutbox())
    assert [c.name for c in s.carriers] == ["main", "backup", "spare"]  # ties keep the file's order
    assert s.route() is fakes["main"]
    fakes["main"].bound = False
    assert s.route() is fakes["backup"]
    fakes["backup"].bound = False
    assert s.route() is fakes["spare"]
    fakes["main"].bound = True
    assert s.route() is fakes["main"]
    for fake in fakes.values():
        fake.bound = False
    assert s.route() is None


async def test_claims_no_more_than_the_window_of_the_carrier_in_use_has_free() -> None:
    cfg = config.from_mapping(
        {"sms": {"carriers": [{"name": "main", "window": 3}, {"name": "backup", "window": 5, "priority": 1}]}}
    )
    outbox = FakeOutbox(due=[outgoing() for _ in range(12)])
    s, fakes, _ = make_sender(cfg, outbox)
    for fake in fakes.values():
        fake.hold = True
    s._claiming = True

    assert await s.claim_once() is True  # took all the room: there may be more
    assert outbox.claims == [("test-sender", 3, cfg.sms.lease_seconds)]
    assert await s.claim_once() is False  # the window is full: nothing claimed
    assert len(outbox.claims) == 1
    fakes["main"].bound = False
    # The backup's window of 5, with the 3 held.
    assert await s.claim_once() is True
    assert outbox.claims[-1][1] == 2
    fakes["backup"].bound = False
    assert s.room() == 0
    assert await s.claim_once() is False
    assert len(outbox.claims) == 2
    for fake in fakes.values():
        fake.release.set()
    await settle(s)
    assert s.room() == 0  # none bound
    fakes["main"].bound = True
    assert s.room() == 3


def test_a_carrier_binding_wakes_the_claims() -> None:
    s, fakes, _ = make_sender(carriers_config(("main", 0), ("backup", 1)), FakeOutbox())
    fakes["backup"].on_bound(False)
    assert not s._wake.is_set()
    fakes["backup"].on_bound(True)
    assert s._wake.is_set()


async def test_the_listen_connection_wakes_the_claims_and_comes_back_after_a_loss() -> None:
    opened: list[int] = []
    notes: asyncio.Queue[str] = asyncio.Queue()

    @contextlib.asynccontextmanager
    async def listen() -> AsyncIterator[AsyncIterator[object]]:
        opened.append(len(opened))
        if len(opened) == 1:
            raise errors.StoreUnavailable("connection refused")

        async def notifications() -> AsyncIterator[object]:
            while True:
                yield await notes.get()

        yield notifications()

    s = sender.Sender(carriers_config(("main", 0)), FakeOutbox(), owner="t", listen=listen)
    loop = asyncio.create_task(s._listen_loop())
    try:
        async with asyncio.timeout(10):
            while not s.listening:
                await asyncio.sleep(0.01)
            assert len(opened) == 2  # lost once, then back
            s._wake.clear()
            await notes.put("")
            while not s._wake.is_set():
                await asyncio.sleep(0)
    finally:
        await tasks.cancel(loop)
    assert not s.listening


async def test_a_stopped_sender_claims_nothing() -> None:
    outbox = FakeOutbox(due=[outgoing()])
    s, _, _ = make_sender(carriers_config(("main", 0)), outbox)
    assert await s.claim_once() is False
    assert outbox.claims == []


# --- one message ------------------------------------------------------------------------


async def test_a_message_accepted_is_recorded_submitted_with_its_parts() -> None:
    sms = outgoing(language="ja", minutes=4.2, tenant="Acme")
    outbox = FakeOutbox(due=[sms])
    s, fakes, registry = make_sender(carriers_config(("main", 0)), outbox)
    s._claiming = True
    await s.claim_once()
    await settle(s)

    [(destination, message, validity)] = fakes["main"].submits
    assert len(fakes["main"].accepted) == len(message.parts)
    assert destination == sms.phone
    assert validity == sms.expires_at
    assert text.decode(message) == text.render("ja", "Acme", CODE, 5)
    [(kind, sms_id, fields)] = outbox.calls
    assert (kind, sms_id) == ("submitted", sms.id)
    assert fields == {
        "carrier": "main",
        "message_ids": fakes["main"].accepted,
        "encoding": message.encoding,
        "parts": len(message.parts),
    }
    assert sample(registry, "ivr_auth_sms_submits_total", carrier="main", result="ok") == 1
    assert sample(registry, "ivr_auth_sms_parts_total", carrier="main", encoding=message.encoding) == len(message.parts)
    assert s._held == {}


async def test_long_japanese_goes_in_parts_with_the_carriers_next_reference() -> None:
    cfg = config.from_mapping({"sms": {"service_name_ja": "あ" * 30, "carriers": [{"name": "main"}]}})
    outbox = FakeOutbox(due=[outgoing(language="ja"), outgoing(language="ja")])
    s, fakes, registry = make_sender(cfg, outbox)
    s._claiming = True
    await s.claim_once()
    await settle(s)

    references = []
    for _, message, _ in fakes["main"].submits:
        assert message.encoding == "ucs2"
        heads = [text.decode_part(p.short_message, p.esm_class, p.data_coding).concatenation for p in message.parts]
        assert [head[1:] if head else None for head in heads] == [(2, 1), (2, 2)]
        references.append({head[0] for head in heads if head})
    [first], [second] = references  # one reference per message, in turn
    assert second == (first + 1) % 256
    assert [fields["parts"] for _, _, fields in outbox.calls] == [2, 2]
    assert sample(registry, "ivr_auth_sms_parts_total", carrier="main", encoding="ucs2") == 4


async def test_a_refused_submit_is_recorded_refused_and_not_retried() -> None:
    sms = outgoing()
    outbox = FakeOutbox(due=[sms])
    s, fakes, registry = make_sender(carriers_config(("main", 0)), outbox)
    fakes["main"].answer = smpp.SubmitRefused("invalid destination address", command_status=0x0B)
    s._claiming = True
    await s.claim_once()
    await settle(s)

    [(kind, sms_id, fields)] = outbox.calls
    assert (kind, sms_id) == ("refused", sms.id)
    assert fields["carrier"] == "main"
    assert fields["command_status"] == 0x0B
    assert sample(registry, "ivr_auth_sms_submits_total", carrier="main", result="refused") == 1
    assert sample(registry, "ivr_auth_sms_submits_total", carrier="main", result="retry") == 0


@pytest.mark.parametrize("attempt", [1, 3, 12])
async def test_a_failed_submit_is_due_again_after_the_backoff_of_its_attempt(attempt: int) -> None:
    sms = outgoing(attempt=attempt)
    outbox = FakeOutbox(due=[sms])
    s, fakes, registry = make_sender(carriers_config(("main", 0)), outbox)
    fakes["main"].answer = smpp.SubmitFailed("throttled (ESME_RTHROTTLED)")
    s._claiming = True
    await s.claim_once()
    await settle(s)

    [(kind, sms_id, fields)] = outbox.calls
    assert (kind, sms_id) == ("retry_later", sms.id)
    ceiling = min(sender.RETRY_MAX_SECONDS, sender.RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    assert ceiling / 2 <= float(str(fields["delay"])) <= ceiling
    assert "throttled" in str(fields["error"])
    assert sample(registry, "ivr_auth_sms_submits_total", carrier="main", result="retry") == 1


async def test_with_no_carrier_bound_a_claimed_message_goes_back_to_wait() -> None:
    sms = outgoing()
    outbox = FakeOutbox()
    s, fakes, registry = make_sender(carriers_config(("main", 0)), outbox)
    fakes["main"].bound = False
    # Claimed while it was bound; it unbound before the submit.
    result = await s.submit(sms)
    await s.record(sms, result)

    assert fakes["main"].submits == []
    [(kind, _, fields)] = outbox.calls
    assert kind == "retry_later"
    assert fields["error"] == "no carrier bound"
    assert sample(registry, "ivr_auth_sms_submits_total", carrier="none", result="retry") == 1


async def test_a_retry_for_a_request_that_ended_meanwhile_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    sms = outgoing()
    outbox = FakeOutbox(retry_answer=False)
    s, fakes, _ = make_sender(carriers_config(("main", 0)), outbox)
    fakes["main"].answer = smpp.SubmitFailed("connection lost")
    with caplog.at_level(logging.INFO, logger="ivr_auth.sms.sender"):
        await s.record(sms, await s.submit(sms))
    assert "ended meanwhile" in caplog.text


async def test_one_message_failing_touches_no_other(caplog: pytest.LogCaptureFixture) -> None:
    broken, fine = outgoing(), outgoing()
    outbox = FakeOutbox(due=[broken, fine])
    s, fakes, _ = make_sender(carriers_config(("main", 0)), outbox)
    real_submit = fakes["main"].submit

    async def submit(destination: str, message: text.Message, *, validity: dt.datetime | None) -> list[str]:
        if validity == broken.expires_at:
            raise RuntimeError("a bug")
        return await real_submit(destination, message, validity=validity)

    fakes["main"].submit = submit  # type: ignore[method-assign]
    s._claiming = True
    await s.claim_once()
    await settle(s)

    assert [(kind, sms_id) for kind, sms_id, _ in outbox.calls] == [("submitted", fine.id)]
    assert "send task failed" in caplog.text
    assert s._held == {}  # the broken one is left to its lease, not held for ever


def test_each_carrier_numbers_its_long_messages_in_turn() -> None:
    s, _, _ = make_sender(carriers_config(("main", 0), ("backup", 1)), FakeOutbox())
    first = s.reference("main")
    assert [s.reference("main") for _ in range(300)] == [(first + n) % 256 for n in range(1, 301)]
    backup = s.reference("backup")
    assert s.reference("backup") == (backup + 1) % 256
    # Each process starts somewhere else, not all at 0.
    starts = {make_sender(carriers_config(("main", 0)), FakeOutbox())[0].reference("main") for _ in range(20)}
    assert len(starts) > 1


# --- pure functions ------------------------------------------------------------------


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 2.0), (2, 4.0), (5, 32.0), (7, 120.0), (40, 120.0)])
def test_retry_delay_doubles_up_to_the_cap_with_equal_jitter(attempt: int, ceiling: float) -> None:
    assert sender.retry_delay(attempt, rand=lambda: 1.0) == ceiling
    assert sender.retry_delay(attempt, rand=lambda: 0.0) == ceiling / 2


@pytest.mark.parametrize(("seconds", "minutes"), [(600, 10), (599, 10), (541, 10), (540, 9), (61, 2), (1, 1), (-5, 1)])
def test_minutes_left_rounds_up_and_is_never_0(seconds: int, minutes: int) -> None:
    assert sender.minutes_left(NOW + dt.timedelta(seconds=seconds), NOW) == minutes


def test_the_service_name_is_the_sms_ones_else_the_prompts_else_the_tenants() -> None:
    cfg = config.from_mapping(
        {"sms": {"service_name_ja": "認証SMS"}, "prompts": {"service_name_ja": "認証", "service_name_en": "Verify"}}
    )
    assert sender.service_name(cfg, "ja", "Acme") == "認証SMS"
    assert sender.service_name(cfg, "en", "Acme") == "Verify"
    assert sender.service_name(config.from_mapping({}), "en", "Acme") == "Acme"


def test_receipt_stats_outside_smpp_are_counted_as_other() -> None:
    assert sender.receipt_stat("DELIVRD") == "DELIVRD"
    assert sender.receipt_stat("delivrd") == "DELIVRD"
    assert sender.receipt_stat("DELIVERED") == "other"
    assert sender.receipt_stat("+819012345678") == "other"


# --- receipts ------------------------------------------------------------------------


def receipt(stat: str = "DELIVRD") -> smpp.Receipt:
    return smpp.Receipt(carrier="main", message_id="m-1", stat=stat, err="000")


async def test_a_receipt_recorded_at_once_leaves_nothing_behind() -> None:
    outbox = FakeOutbox()
    s, _, registry = make_sender(carriers_config(("main", 0)), outbox)
    await s.on_receipt(receipt())
    assert not s._receipts
    assert len(outbox.calls) == 1
    assert sample(registry, "ivr_auth_sms_receipts_total", carrier="main", stat="DELIVRD") == 1


async def test_a_receipt_not_matched_at_once_is_tried_again_in_the_background(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sender, "RECEIPT_RETRY_SECONDS", (0.0, 0.0))
    outbox = FakeOutbox(receipt_misses=2)
    s, _, registry = make_sender(carriers_config(("main", 0)), outbox)
    await s.on_receipt(receipt("EXPIRED"))  # returns before it is recorded: the SMSC gets its answer
    assert sample(registry, "ivr_auth_sms_receipts_total", carrier="main", stat="EXPIRED") == 0
    [task] = s._receipts
    assert await task is True
    assert len(outbox.calls) == 3
    assert sample(registry, "ivr_auth_sms_receipts_total", carrier="main", stat="EXPIRED") == 1


async def test_a_receipt_that_came_before_its_submit_was_recorded_is_tried_again() -> None:
    outbox = FakeOutbox(receipt_misses=2)
    s, _, registry = make_sender(carriers_config(("main", 0)), outbox)
    assert await s.take_receipt(receipt(), delays=(0.0, 0.0, 0.0)) is True
    assert [kind for kind, _, _ in outbox.calls] == ["receipt"] * 3
    assert sample(registry, "ivr_auth_sms_receipts_total", carrier="main", stat="DELIVRD") == 1
    assert sample(registry, "ivr_auth_sms_receipts_total", carrier="main", stat="unmatched") == 0


async def test_a_receipt_matching_nothing_is_counted_unmatched_after_its_tries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = FakeOutbox(receipt_misses=None)
    s, _, registry = make_sender(carriers_config(("main", 0)), outbox)
    assert await s.take_receipt(receipt("UNDELIV"), delays=(0.0, 0.0)) is False
    assert len(outbox.calls) == 3
    assert sample(registry, "ivr_auth_sms_receipts_total", carrier="main", stat="unmatched") == 1
    assert sample(registry, "ivr_auth_sms_receipts_total", carrier="main", stat="UNDELIV") == 0
    assert "matches no SMS" in caplog.text


def test_the_receipt_retries_span_about_half_a_minute() -> None:
    assert 25 <= sum(sender.RECEIPT_RETRY_SECONDS) <= 35


# --- shutdown ------------------------------------------------------------------------


async def started_with_one_submit_waiting(outbox: FakeOutbox) -> tuple[sender.Sender, sms_carrier.FakeCarrier]:
    s, fakes, _ = make_sender(carriers_config(("main", 0)), outbox)
    fakes["main"].hold = True
    await s.start()
    assert fakes["main"].started
    s.wake()
    while not fakes["main"].submits:
        await asyncio.sleep(0)
    return s, fakes["main"]


async def test_stop_lets_a_submit_awaiting_its_answer_finish() -> None:
    sms = outgoing()
    outbox = FakeOutbox(due=[sms])
    s, carrier = await started_with_one_submit_waiting(outbox)
    stopping = asyncio.create_task(s.stop(grace=60))
    await asyncio.sleep(0)
    assert not stopping.done()
    assert not carrier.stopped  # not unbound under a submit
    carrier.release.set()
    await stopping

    assert [(kind, sms_id) for kind, sms_id, _ in outbox.calls] == [("submitted", sms.id)]
    assert carrier.stopped
    # Nothing claimed after the stop began.
    assert len(outbox.claims) == 1


async def test_stop_hands_back_a_message_cut_off_at_the_end_of_the_grace() -> None:
    sms = outgoing()
    outbox = FakeOutbox(due=[sms])
    s, carrier = await started_with_one_submit_waiting(outbox)
    await s.stop(grace=0)

    [(kind, sms_id, fields)] = outbox.calls
    assert (kind, sms_id) == ("retry_later", sms.id)
    assert fields["delay"] == 0.0
    assert carrier.stopped


async def test_kill_leaves_what_it_claimed_to_the_leases() -> None:
    outbox = FakeOutbox(due=[outgoing()])
    s, carrier = await started_with_one_submit_waiting(outbox)
    await s.kill()
    assert outbox.calls == []
    assert carrier.stopped


async def test_no_log_line_carries_the_code_or_the_text(caplog: pytest.LogCaptureFixture) -> None:
    answers: list[list[str] | Exception | None] = [
        None,
        smpp.SubmitRefused("submit failed", command_status=0x45),
        smpp.SubmitFailed("connection lost"),
    ]
    outbox = FakeOutbox(receipt_misses=None)
    s, fakes, _ = make_sender(carriers_config(("main", 0)), outbox)
    with caplog.at_level(logging.DEBUG):
        for answer in answers:
            outbox.due.append(outgoing())
            fakes["main"].answer = answer
            s._claiming = True
            await s.claim_once()
            await settle(s)
        await s.take_receipt(receipt(), delays=(0.0,))
    assert [kind for kind, _, _ in outbox.calls] == ["submitted", "refused", "retry_later", "receipt", "receipt"]
    message = text.render("en", "Acme", CODE, 5)
    for record in caplog.records:
        seen = f"{record.getMessage()} {record.__dict__}"
        assert CODE not in seen
        assert message not in seen
