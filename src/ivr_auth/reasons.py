"""Why a request is in its status: the ``reason`` a client reads next to
``status``, in the API's answers and in webhooks. Every value the service
writes is here, with the statuses it comes with; the OpenAPI document and
docs/api.md list the same (tests hold them to it)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ivr_auth import causes, states

S = states.Status


class Reason(enum.StrEnum):
    CODE_MATCHED = "code_matched"
    CALLER_ID_MATCHED = "caller_id_matched"
    CODE_READ_OUT = "code_read_out"
    CODE_ATTEMPTS_EXHAUSTED = "code_attempts_exhausted"
    NO_INPUT = "no_input"
    NO_KEY_PRESSED = "no_key_pressed"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CALLEE_UNAVAILABLE = "callee_unavailable"
    ANSWERED_BY_MACHINE = "answered_by_machine"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"
    TRUNK_UNAVAILABLE = "trunk_unavailable"
    UNEXPECTED_CAUSE = "unexpected_cause"
    CALLEE_HUNG_UP = "callee_hung_up"
    HUNG_UP_BEFORE_END = "hung_up_before_end"
    CALLER_HUNG_UP = "caller_hung_up"
    EXPIRED = "expired"
    EXPIRED_IN_CALL = "expired_in_call"
    CANCELED = "canceled"
    NODE_LOST = "node_lost"
    CONTROLLER_LOST = "controller_lost"
    INTERNAL_ERROR = "internal_error"
    UNSUPPORTED_METHOD = "unsupported_method"
    SMS_SENT = "sms_sent"
    SMS_DELIVERED = "sms_delivered"
    SMS_REJECTED = "sms_rejected"
    SMS_UNDELIVERABLE = "sms_undeliverable"
    SMS_EXPIRED = "sms_expired"


@dataclass(frozen=True)
class Meaning:
    # The statuses a request shows with this reason (``queued``: waiting for
    # its next call after this one).
    statuses: tuple[states.Status, ...]
    text: str


MEANINGS: dict[Reason, Meaning] = {
    Reason.CODE_MATCHED: Meaning(
        (S.VERIFIED,), "the right code was keyed on the call, or checked with `POST .../check`"
    ),
    Reason.CALLER_ID_MATCHED: Meaning((S.VERIFIED,), "`inbound`: the registered phone called the published number"),
    Reason.CODE_READ_OUT: Meaning((S.DELIVERED,), "`voice`: the code was read out to the end; check it next"),
    Reason.CODE_ATTEMPTS_EXHAUSTED: Meaning(
        (S.FAILED,), "`max_code_attempts` wrong codes, keyed on the call or checked through the API"
    ),
    Reason.NO_INPUT: Meaning((S.FAILED,), "nothing was keyed, after `no_input_retries` prompts again"),
    Reason.NO_KEY_PRESSED: Meaning(
        (S.FAILED,), "`voice`: nobody pressed a key to hear the code (perhaps a voicemail); the code was not read"
    ),
    Reason.BUSY: Meaning((S.BUSY, S.QUEUED), "the line was busy (SIP 486, 600)"),
    Reason.NO_ANSWER: Meaning((S.NO_ANSWER, S.QUEUED), "it rang and nobody answered"),
    Reason.CALLEE_UNAVAILABLE: Meaning(
        (S.NO_ANSWER, S.QUEUED),
        "it never rang: the phone is switched off, out of coverage or not responding (SIP 480, 408)",
    ),
    Reason.ANSWERED_BY_MACHINE: Meaning(
        (S.NO_ANSWER, S.QUEUED), "`voice` with `amd`: an answering machine took the call; it heard nothing"
    ),
    Reason.REJECTED: Meaning((S.REJECTED,), "the callee declined the call (SIP 603, 403)"),
    Reason.UNREACHABLE: Meaning(
        (S.UNREACHABLE,), "the number is not in service or cannot be reached (SIP 404, 410, 484, 604)"
    ),
    Reason.TRUNK_UNAVAILABLE: Meaning(
        (S.UNREACHABLE,),
        "the operator's trunk failed on every try (503, 500, 504, no answer at all); "
        "these tries are not counted as calls to the callee",
    ),
    Reason.UNEXPECTED_CAUSE: Meaning(
        (S.ERROR,), "the call ended before it was answered, for a reason the network gave no known cause for"
    ),
    Reason.CALLEE_HUNG_UP: Meaning((S.HUNG_UP,), "`dtmf`: the callee hung up before the result"),
    Reason.HUNG_UP_BEFORE_END: Meaning(
        (S.HUNG_UP,), "`voice`: the callee hung up before the code was read out to the end; it cannot be checked"
    ),
    Reason.CALLER_HUNG_UP: Meaning((S.HUNG_UP,), "`inbound` with `ask_code`: the caller hung up before the result"),
    Reason.EXPIRED: Meaning((S.EXPIRED,), "`ttl_seconds` ran out before a result"),
    Reason.EXPIRED_IN_CALL: Meaning((S.EXPIRED,), "`ttl_seconds` ran out during the call"),
    Reason.CANCELED: Meaning((S.CANCELED,), "canceled with `POST .../cancel`"),
    Reason.NODE_LOST: Meaning(
        (S.ERROR,), "the Asterisk carrying the call stopped answering during the call; nobody knows how it ended"
    ),
    Reason.CONTROLLER_LOST: Meaning(
        (S.ERROR,), "the controller running the call stopped during the conversation; another one settled it"
    ),
    Reason.INTERNAL_ERROR: Meaning((S.ERROR,), "a fault on our side; the call was hung up and the fault logged"),
    Reason.UNSUPPORTED_METHOD: Meaning((S.ERROR,), "the controller that took the request cannot run its method"),
    Reason.SMS_SENT: Meaning((S.SENT,), "`sms`: the carrier took the message; check the code next"),
    Reason.SMS_DELIVERED: Meaning(
        (S.DELIVERED,), "`sms`: the carrier reports every part of the message delivered to the phone"
    ),
    Reason.SMS_REJECTED: Meaning(
        (S.REJECTED,), "`sms`: the carrier refused the message (its `submit_sm` answer was an error)"
    ),
    Reason.SMS_UNDELIVERABLE: Meaning(
        (S.UNREACHABLE,), "`sms`: the carrier could not deliver the message (receipt UNDELIV, REJECTD, ...)"
    ),
    Reason.SMS_EXPIRED: Meaning(
        (S.UNREACHABLE,), "`sms`: the message expired undelivered at the carrier (receipt EXPIRED)"
    ),
}


# What an unanswered call's outcome says, as a reason.
UNANSWERED: dict[causes.Outcome, Reason] = {
    causes.Outcome.BUSY: Reason.BUSY,
    causes.Outcome.NO_ANSWER: Reason.NO_ANSWER,
    causes.Outcome.CALLEE_UNAVAILABLE: Reason.CALLEE_UNAVAILABLE,
    causes.Outcome.REJECTED: Reason.REJECTED,
    causes.Outcome.UNREACHABLE: Reason.UNREACHABLE,
    causes.Outcome.TRUNK_FAILED: Reason.TRUNK_UNAVAILABLE,
    causes.Outcome.ERROR: Reason.UNEXPECTED_CAUSE,
}


def for_unanswered(outcome: causes.Outcome) -> Reason:
    return UNANSWERED[outcome]
