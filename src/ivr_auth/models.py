"""Rows as frozen dataclasses, and their public (API) shape."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from ivr_auth import channels as channels_mod
from ivr_auth import states


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as the API writes every time."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value is not None else None


@dataclasses.dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    name: str
    caller_id: str | None
    default_language: str | None
    created_at: dt.datetime
    # The callee presses a key before a code is read out (voice).
    voice_require_key: bool = True
    # Caller IDs (E.164) its calls present in turn; wins over caller_id.
    caller_id_pool: tuple[str, ...] = ()
    # Published numbers (E.164) this tenant's users call for inbound verification.
    inbound_numbers: tuple[str, ...] = ()
    # Reject a matched inbound call unanswered, so the caller pays nothing.
    missed_call: bool = False
    # Limits of its own (None: the config's); see ivr_auth/limits.py.
    allowed_countries: tuple[str, ...] = ()
    allowed_prefixes: tuple[str, ...] = ()
    requests_per_minute: int | None = None
    sends_per_phone: int | None = None
    sends_per_phone_window_seconds: int | None = None
    daily_call_budget: int | None = None
    failure_cooldown_seconds: int | None = None
    retention_days: int | None = None
    # Line types called (phone.LINE_TYPES); None: limits.allowed_line_types.
    allowed_line_types: tuple[str, ...] | None = None
    daily_sms_budget: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Tenant:
        values = {f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row}
        for key in ("inbound_numbers", "allowed_countries", "allowed_prefixes", "caller_id_pool"):
            if key in values:
                values[key] = tuple(values[key] or ())
        if values.get("allowed_line_types") is not None:
            values["allowed_line_types"] = tuple(values["allowed_line_types"])
        return cls(**values)


@dataclasses.dataclass(frozen=True, repr=False)
class Verification:
    id: uuid.UUID
    tenant_id: uuid.UUID
    method: str
    phone: str
    line_type: str
    code_hash: bytes
    code_sealed: bytes | None
    code_length: int
    language: str
    reference: str | None
    callback_url: str | None
    status: states.Status
    reason: str | None
    code_attempts: int
    max_code_attempts: int
    call_attempts: int
    max_call_attempts: int
    idempotency_key: str | None
    request_hash: bytes | None
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime
    next_attempt_at: dt.datetime
    lease_owner: str | None
    lease_expires_at: dt.datetime | None
    node: str | None
    channel_id: str | None
    answered_at: dt.datetime | None
    finished_at: dt.datetime | None
    last_cause: int | None
    last_cause_txt: str | None
    answered_by: str | None = None
    inbound_number: str | None = None
    ask_code: bool = False
    delivered_at: dt.datetime | None = None
    # Calls that failed on their trunk and went to another, uncounted.
    trunk_failovers: int = 0
    # The trunk the last claim gave the request's call (None: never claimed).
    trunk: str | None = None
    # The ordered channels it tries (None: its method alone), the one in use
    # now (its place in the list), and when the next one starts.
    channels: tuple[channels_mod.Step, ...] | None = None
    channel_index: int = 0
    next_channel_at: dt.datetime | None = None
    sent_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Verification:
        # A column added later (with a default here) may be missing from a row.
        values = {f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row}
        values["status"] = states.Status(values["status"])
        if "channels" in values:
            values["channels"] = channels_mod.from_json(values["channels"])
        for key in ("code_hash", "code_sealed", "request_hash"):
            if values[key] is not None:
                values[key] = bytes(values[key])
        return cls(**values)

    def __repr__(self) -> str:
        # Never print hashes, the sealed code or the full number.
        return f"Verification(id={self.id}, method={self.method}, status={self.status.value})"

    @property
    def terminal(self) -> bool:
        return self.status in states.TERMINAL

    def public(self, *, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What the API shows the tenant: no hashes, no code."""
        out: dict[str, Any] = {
            "id": str(self.id),
            "status": self.status.value,
            "method": self.method,
            "phone": self.phone,
            "line_type": self.line_type,
            "language": self.language,
            "reference": self.reference,
            "reason": self.reason,
            "code_length": self.code_length,
            "code_attempts": self.code_attempts,
            "max_code_attempts": self.max_code_attempts,
            "call_attempts": self.call_attempts,
            "max_call_attempts": self.max_call_attempts,
            "last_call": (
                {"hangup_cause": self.last_cause, "hangup_cause_text": self.last_cause_txt}
                if self.last_cause is not None
                else None
            ),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "expires_at": iso(self.expires_at),
            "answered_at": iso(self.answered_at),
            "answered_by": self.answered_by,
            "finished_at": iso(self.finished_at),
        }
        if self.method in ("voice", "sms") or self.channels:
            out["delivered_at"] = iso(self.delivered_at)
        if self.method == "sms" or self.channels:
            out["sent_at"] = iso(self.sent_at)
        if self.channels:
            out["channels"] = [step.public() for step in self.channels]
            out["channel_index"] = self.channel_index
            out["next_channel_at"] = iso(self.next_channel_at) if self.channel_index + 1 < len(self.channels) else None
        if self.method == "inbound":
            out["inbound_number"] = self.inbound_number
            out["ask_code"] = self.ask_code
        if extra:
            out.update(extra)
        return out
