"""Every ``reason`` the service writes is in ``reasons.Reason``, and the
OpenAPI document and the API's documentation (docs/api.md) list exactly those."""

from __future__ import annotations

import re
from pathlib import Path

from ivr_auth import causes, reasons, states
from ivr_auth.api import openapi

ROOT = Path(__file__).resolve().parents[2]
STORE = ROOT / "src" / "ivr_auth" / "store"
API_DOC = ROOT / "docs" / "api.md"


def test_every_reason_has_its_meaning_and_statuses() -> None:
    assert set(reasons.MEANINGS) == set(reasons.Reason)
    shown_while_waiting = {states.Status.QUEUED, states.Status.SENT, states.Status.DELIVERED}
    for reason, meaning in reasons.MEANINGS.items():
        assert meaning.statuses, reason
        assert meaning.text, reason
        assert not meaning.text.endswith("."), reason
        # A reason comes with a terminal status, or while the request waits for its next step.
        assert set(meaning.statuses) <= states.TERMINAL | shown_while_waiting, reason


def test_every_unanswered_outcome_has_a_reason() -> None:
    unanswered = set(causes.Outcome) - {causes.Outcome.ANSWERED}
    assert set(reasons.UNANSWERED) == unanswered
    for outcome in unanswered:
        reason = reasons.for_unanswered(outcome)
        if outcome is not causes.Outcome.TRUNK_FAILED:
            # The status the retry policy gives this outcome is one the reason is documented with.
            assert states.UNANSWERED_STATUS[outcome] in reasons.MEANINGS[reason].statuses, outcome


def test_the_openapi_document_lists_every_reason() -> None:
    schema = openapi.document()["components"]["schemas"]["Reason"]
    assert schema["enum"] == [r.value for r in reasons.Reason]
    for reason in reasons.Reason:
        assert f"`{reason.value}`" in schema["description"], reason


def test_the_api_doc_table_lists_every_reason_with_its_statuses() -> None:
    text = API_DOC.read_text(encoding="utf-8")
    table = text[text.index("| reason | status | when |") :]
    table = table[: table.index("\n\n")]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", table, re.MULTILINE)
    assert [name for name, _ in rows] == [r.value for r in reasons.Reason]
    for name, statuses in rows:
        documented = tuple(s.value for s in reasons.MEANINGS[reasons.Reason(name)].statuses)
        assert tuple(re.findall(r"`([a-z_]+)`", statuses)) == documented, name


def test_the_queries_write_only_listed_reasons() -> None:
    written = set()
    for path in STORE.glob("*.sql"):
        written |= set(re.findall(r"reason\s*=\s*'([a-z_]+)'", path.read_text(encoding="utf-8")))
    assert written
    assert written <= {r.value for r in reasons.Reason}
