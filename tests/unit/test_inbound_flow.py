"""The pure parts of inbound verification: reading a StasisStart, and the API
shape of a request per method."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from ivr_auth import ari, models, states
from ivr_auth.flows import inbound as inbound_flow

STASIS_START: ari.Event = {
    "type": "StasisStart",
    "application": "ivr-auth-inbound",
    "args": ["05012345678"],
    "channel": {
        "id": "1700000000.42",
        "name": "PJSIP/trunk-00000001",
        "state": "Ring",
        "caller": {"name": "", "number": "09012345678"},
        "connected": {"name": "", "number": ""},
        "dialplan": {"context": "ivr-auth-inbound", "exten": "_X.", "priority": 2},
    },
}


def event(**changes: Any) -> ari.Event:
    channel = {**STASIS_START["channel"], **changes.pop("channel", {})}
    return {**STASIS_START, "channel": channel, **changes}


# --- call_details() ------------------------------------------------------------------


def test_call_details_reads_the_did_from_the_stasis_argument() -> None:
    assert inbound_flow.call_details(STASIS_START) == ("1700000000.42", "05012345678", "09012345678")


@pytest.mark.parametrize("args", [[], [""], ["", "more"]])
def test_did_falls_back_to_the_dialplan_extension(args: list[str]) -> None:
    start = event(args=args, channel={"dialplan": {"context": "ivr-auth-inbound", "exten": "0501234000"}})

    assert inbound_flow.call_details(start)[1] == "0501234000"


def test_did_falls_back_when_there_are_no_args_at_all() -> None:
    start = event(channel={"dialplan": {"exten": "815012340000"}})
    del start["args"]

    assert inbound_flow.call_details(start)[1] == "815012340000"


def test_later_args_are_ignored() -> None:
    assert inbound_flow.call_details(event(args=["0501234000", "extra"]))[1] == "0501234000"


def test_withheld_caller_number_is_passed_through() -> None:
    start = event(channel={"caller": {"name": "", "number": "anonymous"}})

    assert inbound_flow.call_details(start)[2] == "anonymous"


@pytest.mark.parametrize(
    "start",
    [
        {},
        {"type": "StasisStart"},
        {"channel": None},
        {"channel": {}},
        {"channel": {"caller": None, "dialplan": None}},
        {"channel": {"caller": {}, "dialplan": {}}},
        {"args": [], "channel": {"id": ""}},
    ],
)
def test_missing_keys_give_empty_strings(start: ari.Event) -> None:
    assert inbound_flow.call_details(start) == ("", "", "")


def test_missing_caller_keeps_the_rest() -> None:
    start = event()
    del start["channel"]["caller"]

    assert inbound_flow.call_details(start) == ("1700000000.42", "05012345678", "")


# --- Verification.public() by method --------------------------------------------------


NOW = dt.datetime(2024, 1, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))


def row(**changes: Any) -> dict[str, Any]:
    """A verifications row as the store reads it (bytea columns as memoryview)."""
    values: dict[str, Any] = {
        "id": uuid.UUID("6f1c1c1e-8d5e-4a43-9c36-0d7a3a1b2c3d"),
        "tenant_id": uuid.UUID("0b7e9a52-3c1d-4f4e-8a6b-2d9f1e0c7a55"),
        "method": "inbound",
        "phone": "+819012345678",
        "line_type": "mobile",
        "code_hash": memoryview(b"hash"),
        "code_sealed": memoryview(b"sealed"),
        "code_length": 6,
        "language": "ja",
        "reference": "order-1",
        "callback_url": None,
        "status": "verified",
        "reason": None,
        "code_attempts": 1,
        "max_code_attempts": 3,
        "call_attempts": 1,
        "max_call_attempts": 3,
        "idempotency_key": None,
        "request_hash": None,
        "created_at": NOW,
        "updated_at": NOW,
        "expires_at": NOW + dt.timedelta(minutes=5),
        "next_attempt_at": NOW,
        "lease_owner": None,
        "lease_expires_at": None,
        "node": "node-1",
        "channel_id": "1700000000.42",
        "answered_at": NOW + dt.timedelta(seconds=3),
        "finished_at": NOW + dt.timedelta(seconds=20),
        "last_cause": 16,
        "last_cause_txt": "Normal Clearing",
        "answered_by": "human",
        "inbound_number": "+815012345678",
        "ask_code": True,
        "delivered_at": NOW + dt.timedelta(seconds=10),
    }
    values.update(changes)
    return values


def test_from_row_reads_status_and_bytes() -> None:
    verification = models.Verification.from_row(row())

    assert verification.status is states.Status.VERIFIED
    assert verification.code_hash == b"hash"
    assert isinstance(verification.code_sealed, bytes)
    assert verification.request_hash is None
    assert verification.ask_code is True


@pytest.mark.parametrize("method", ["dtmf", "voice", "inbound"])
def test_public_shows_answered_by_for_every_method(method: str) -> None:
    public = models.Verification.from_row(row(method=method)).public()

    assert public["answered_by"] == "human"
    assert public["method"] == method
    assert public["answered_at"] == "2024-01-01T00:00:03Z"
    assert public["last_call"] == {"hangup_cause": 16, "hangup_cause_text": "Normal Clearing"}


def test_public_voice_shows_delivered_at_only() -> None:
    public = models.Verification.from_row(row(method="voice")).public()

    assert public["delivered_at"] == "2024-01-01T00:00:10Z"
    assert "inbound_number" not in public
    assert "ask_code" not in public


def test_public_voice_not_yet_delivered() -> None:
    public = models.Verification.from_row(row(method="voice", delivered_at=None, answered_by=None)).public()

    assert public["delivered_at"] is None
    assert public["answered_by"] is None


def test_public_inbound_shows_its_number_and_ask_code_only() -> None:
    public = models.Verification.from_row(row(method="inbound")).public()

    assert public["inbound_number"] == "+815012345678"
    assert public["ask_code"] is True
    assert "delivered_at" not in public


def test_public_dtmf_shows_neither() -> None:
    public = models.Verification.from_row(row(method="dtmf")).public()

    assert not {"delivered_at", "inbound_number", "ask_code"} & set(public)


@pytest.mark.parametrize("method", ["dtmf", "voice", "inbound"])
def test_public_never_shows_hashes_or_the_code(method: str) -> None:
    public = models.Verification.from_row(row(method=method)).public()

    assert not {"code_hash", "code_sealed", "request_hash", "idempotency_key", "lease_owner"} & set(public)
    assert not any(isinstance(value, bytes | memoryview) for value in public.values())


def test_public_extra_is_merged_last() -> None:
    public = models.Verification.from_row(row()).public(extra={"ask_code": False, "check_url": "/x"})

    assert public["ask_code"] is False
    assert public["check_url"] == "/x"


def test_call_details_tolerates_nulls() -> None:
    event: ari.Event = {
        "type": "StasisStart",
        "args": None,
        "channel": {"id": None, "caller": {"number": None}, "dialplan": {"exten": None}},
    }

    assert inbound_flow.call_details(event) == ("", "", "")
