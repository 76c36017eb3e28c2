"""make drill's pure parts: the INVITE dialogs read from SIPp's trace, the
most calls in any one second, the dialled-twice rule, lost and stuck, the
time to recover, a drill's verdict from its records, and the table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ivr_auth_devkit.drill import measure, report, verdict

Attempt = measure.Attempt


def block(stamp: str, head: str, body: str) -> str:
    return f"----------------------------------------------- 2026-12-06 {stamp}\n{head}\n\n{body}\n\n"


def invite(number: str, call_id: str, compact: bool = False) -> str:
    header = "i" if compact else "Call-ID"
    return f"INVITE sip:{number}@127.0.0.1:5088 SIP/2.0\nVia: SIP/2.0/UDP x\n{header}: {call_id}\nCSeq: 1 INVITE"


def test_each_dialog_counts_once_at_its_first_invite() -> None:
    trace = "".join(
        [
            block("10:00:00.100000", "UDP message received [533] bytes :", invite("+819051000001", "a@x")),
            block("10:00:00.101000", "UDP message sent (300 bytes):", "SIP/2.0 100 Trying\nCall-ID: a@x"),
            # A retransmission, then a re-INVITE in the same dialog: no new call.
            block("10:00:00.600000", "UDP message received [533] bytes :", invite("+819051000001", "a@x")),
            block("10:00:03.000000", "UDP message received [533] bytes :", invite("+819051000001", "a@x", True)),
            block("10:00:00.300000", "UDP message received [533] bytes :", invite("+819051000002", "b@x", True)),
            block("10:00:04.000000", "UDP message received [40] bytes :", "ACK sip:x@127.0.0.1 SIP/2.0\nCall-ID: c@x"),
            # Sent by SIPp itself: not one the trunk received.
            block("10:00:05.000000", "UDP message sent (500 bytes):", invite("+819051000003", "d@x")),
        ]
    )
    found = measure.received_invites(trace)
    assert [(i.number, i.call_id) for i in found] == [("+819051000001", "a@x"), ("+819051000002", "b@x")]
    assert round(found[1].at - found[0].at, 3) == 0.2


@pytest.mark.parametrize(
    ("times", "most"),
    [
        ([], 0),
        ([5.0], 1),
        # Half-open: a call exactly a second after another is in the next window.
        ([0.0, 0.5, 1.0], 2),
        ([0.0, 0.1, 0.2, 0.95, 1.05, 1.1], 4),
        # Evenly paced at 10/s for 3 s: 10 in every second.
        ([n / 10 for n in range(30)], 10),
        # Two pacers at 8/s each, unaware of each other (times exact in binary).
        (sorted([n / 8 for n in range(24)] + [n / 8 + 1 / 16 for n in range(24)]), 16),
    ],
)
def test_most_calls_in_any_one_second(times: list[float], most: int) -> None:
    assert measure.max_in_window(times) == most
    assert measure.max_in_window(list(reversed(times))) == most


def test_mean_rate_from_first_to_last() -> None:
    assert measure.mean_rate([]) is None
    assert measure.mean_rate([3.0, 3.0]) is None
    assert measure.mean_rate([n / 10 for n in range(31)]) == pytest.approx(10.0)


@pytest.mark.parametrize(("observed", "exceeded"), [(10, False), (11, False), (12, True), (10.9, False), (None, False)])
def test_the_cap_holds_with_ten_percent(observed: float | None, exceeded: bool) -> None:
    assert measure.cap_exceeded(observed, 10) is exceeded


def test_one_call_is_not_dialled_twice() -> None:
    assert measure.dialled_twice([Attempt(1, "c1", 10.0, 15.0, 11.0, "answered")], 1, 3) == []


def test_retries_after_busy_no_answer_and_a_trunk_failure_are_justified() -> None:
    calls = [
        Attempt(1, "c1", 0.0, 1.0, None, "busy"),
        Attempt(1, "c1b", 3.0, 4.0, None, "trunk_failed"),
        Attempt(2, "c2", 5.0, 35.0, None, "no_answer"),
        Attempt(3, "c3", 40.0, 45.0, 41.0, "answered"),
    ]
    assert measure.dialled_twice(calls, 4, 3) == []


def test_a_retry_after_its_dead_controllers_unanswered_call_was_reaped_is_justified() -> None:
    calls = [Attempt(1, "c1", 0.0, None, None, None, reaped=8.5), Attempt(2, "c2", 9.0, 14.0, 10.0, "answered")]
    assert measure.dialled_twice(calls, 2, 3) == []


def test_two_calls_at_once_are_dialled_twice() -> None:
    # A reaped call was still up until the reaper hung it up.
    calls = [Attempt(1, "c1", 0.0, None, None, None, reaped=8.5), Attempt(2, "c2", 5.0, 14.0, 6.0, "answered")]
    assert measure.dialled_twice(calls, 2, 3) == ["call 2 began while call 1 was still up"]
    # A call never recorded as ended is up until the end of the drill.
    open_call = [Attempt(1, "c1", 0.0), Attempt(2, "c2", 50.0, 54.0, 51.0, "answered")]
    assert measure.dialled_twice(open_call, 2, 3) == ["call 2 began while call 1 was still up"]


def test_a_call_after_an_answered_one_is_dialled_twice() -> None:
    answered = [Attempt(1, "c1", 0.0, 5.0, 1.0, "answered"), Attempt(2, "c2", 6.0, 9.0, 7.0, "answered")]
    assert measure.dialled_twice(answered, 2, 3) == ["call 2 after call 1 ended answered"]
    # Answered, then its controller died: the reaper must not send it out again.
    reaped = [Attempt(1, "c1", 0.0, None, 1.0, None, reaped=8.0), Attempt(2, "c2", 9.0, 12.0, 10.0, "answered")]
    assert measure.dialled_twice(reaped, 2, 3) == ["call 2 after call 1 ended unrecorded"]


def test_more_counted_calls_than_allowed_and_more_dialogs_than_calls() -> None:
    calls = [Attempt(n, f"c{n}", n * 10.0, n * 10.0 + 5, None, "no_answer") for n in (1, 2, 3)]
    assert measure.dialled_twice(calls, 3, 2) == ["3 calls counted, max_call_attempts 2"]
    one = [Attempt(1, "c1", 0.0, 5.0, 1.0, "answered")]
    assert measure.dialled_twice(one, 2, 3) == ["2 INVITE dialogs at the trunk for 1 call(s) on record"]


@pytest.mark.parametrize(
    ("ending", "lost", "stuck"),
    [
        (measure.Ending("verified", touched=False), False, False),
        (measure.Ending("error", touched=False), True, False),
        (measure.Ending("error", touched=True), False, False),
        (measure.Ending("hung_up", touched=True), False, False),
        (measure.Ending("expired", touched=True), True, False),
        (measure.Ending("expired", touched=False), True, False),
        (measure.Ending(None, touched=False), True, False),
        (measure.Ending("queued", touched=False), False, True),
        (measure.Ending("in_call", touched=True), False, True),
        (measure.Ending("calling", touched=False), False, True),
    ],
)
def test_lost_and_stuck(ending: measure.Ending, lost: bool, stuck: bool) -> None:
    assert (measure.is_lost(ending), measure.is_stuck(ending)) == (lost, stuck)


def test_time_to_recover_waits_for_service_and_for_what_the_fault_hit() -> None:
    fault = 100.0
    requests = [
        measure.Settled(98.0, "verified", touched=False, last_call=95.0),
        # A call begun before the fault does not show that service is back.
        measure.Settled(103.0, "verified", touched=False, last_call=99.0),
        measure.Settled(106.0, "verified", touched=False, last_call=101.0),
        measure.Settled(109.5, "error", touched=True, last_call=97.0),
    ]
    assert measure.time_to_recover(fault, requests) == pytest.approx(9.5)
    assert measure.time_to_recover(fault, requests[:3]) == pytest.approx(6.0)
    # Nothing verified on a call begun after the fault, or a hit request never settled: never.
    assert measure.time_to_recover(fault, requests[:2]) is None
    unsettled = [*requests[:3], measure.Settled(None, "in_call", touched=True, last_call=97.0)]
    assert measure.time_to_recover(fault, unsettled) is None


def result(**changes: Any) -> report.Result:
    fields: dict[str, Any] = {
        "drill": "kill-controller",
        "asterisk": "22.10.1",
        "requests": 44,
        "cps_max": 4,
        "cps_mean": 3.1,
        "cap": 10.0,
        "recover_seconds": 9.2,
    }
    fields.update(changes)
    return report.Result(**fields)


def test_a_drill_passes_only_with_nothing_lost_stuck_dialled_twice_or_over_the_cap() -> None:
    assert result().failures() == []
    assert result(lost=1, stuck=2, dialled_twice=3).failures() == [
        "1 lost",
        "2 stuck",
        "3 dialled twice without reason",
    ]
    assert result(cps_max=12).failures() == ["12 calls in one second at the trunk, cap 10 (+10% at most)"]
    assert result(cps_max=11, cps_mean=11.5).failures() == ["mean 11.5 calls/s at the trunk, cap 10"]
    assert result(recover_seconds=None).failures() == ["never recovered"]
    assert result(recover_seconds=None, recovers=False).failures() == []
    assert result(requests=0).failures() == ["no request was accepted"]
    assert result(error="RuntimeError: x").failures() == ["did not run to its end: RuntimeError: x"]


def test_the_table_is_aligned_and_says_each_verdict() -> None:
    text = report.table(
        [result(), result(drill="trunk-cps", requests=60, refused=3, cps_max=20, cps_mean=19.5, recovers=False)]
    )
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["asterisk", "drill", "requests"]
    assert len({len(line) for line in lines[:2]}) == 1
    assert "9.2 s" in lines[2]
    assert lines[2].endswith("pass")
    for cell in ("60 (+3 refused)", "20/19.5 (10)", "n/a"):
        assert cell in lines[3]
    assert lines[3].endswith("FAIL")
    # Columns line up: every verdict starts where its header does.
    assert {line.rindex(" ") for line in lines[2:]} == {lines[0].rindex(" ")}


def test_the_report_files(tmp_path: Path) -> None:
    paths = report.write([result(), result(lost=1)], {"date": "2026-12-06"}, tmp_path)
    data = json.loads(paths[0].read_text())
    assert data["passed"] is False
    assert [d["failures"] for d in data["drills"]] == [[], ["1 lost"]]
    md = paths[1].read_text()
    assert "| 22.10.1 | kill-controller | 44 |" in md
    assert "**1 lost**" in md


def test_an_open_request_is_overdue_past_its_expiry_or_the_longest_call() -> None:
    def overdue(status: str, now: float) -> bool:
        return measure.overdue(status, now, expires_at=130.0, since=100.0, longest_call=47.0, grace=13.0)

    assert not overdue("queued", 143.0)
    assert overdue("queued", 143.5)
    # In a call: from when its last call began, whatever its expiry.
    assert not overdue("in_call", 160.0)
    assert overdue("in_call", 160.5)
    assert overdue("calling", 161.0)


def row(status: str, phone: str = "+819051000001", reason: str | None = None, **times: float) -> verdict.Row:
    return verdict.Row(phone, status, reason, 3, times.get("created", 90.0), times.get("finished"))


def test_a_kill_is_judged_by_the_killed_controllers_calls() -> None:
    drill = verdict.Drill("kill-controller", 1, fault=verdict.Fault(100.0, 100.0, controller="c2"))
    drill.requests = [
        verdict.Req("dtmf", "+819051000001", "1234", id="a"),  # on c2 when it died: error is the truth
        verdict.Req("dtmf", "+819051000002", "1234", id="b"),  # on c1 at that moment: must verify
        verdict.Req("dtmf", "+819051000003", "1234", id="c"),  # ringing on c2, reaped, redialled by c1
        verdict.Req("dtmf", "+819051000004", "1234", id="d"),  # accepted, then never heard of
        verdict.Req("inbound", "09012000000", id="e"),  # its caller found nobody after the kill
        verdict.Req("dtmf", "+819051000005", "1234", refused="HTTP 503"),
    ]
    drill.invites = [
        measure.Invite("+819051000001", "1", 95.0),
        measure.Invite("+819051000002", "2", 95.5),
        measure.Invite("+819051000003", "3", 99.0),
        measure.Invite("+819051000003", "4", 109.0),
    ]
    rows = {
        "a": row("error", "+819051000001", "controller_lost", finished=108.5),
        "b": row("error", "+819051000002", "internal_error", finished=101.0),
        "c": row("verified", "+819051000003", finished=113.0),
        "e": row("expired", "09012000000", "expired", created=104.0, finished=134.0),
    }
    attempts = {
        "a": [(Attempt(1, "a1", 95.0, None, 96.0, None, reaped=108.5), "c2")],
        "b": [(Attempt(1, "b1", 95.5, 101.0, 96.0, "answered"), "c1")],
        "c": [
            (Attempt(1, "c1", 99.0, None, None, None, reaped=108.4), "c2"),
            (Attempt(2, "c2", 109.0, 113.0, 110.0, "answered"), "c1"),
        ],
    }
    result = verdict.judge(drill, rows, attempts, asterisk="22.10.1", cap=10, recovers=True)

    assert (result.requests, result.refused, result.invites) == (5, 1, 4)
    # b ended error untouched, d is gone, e expired.
    assert (result.lost, result.stuck, result.dialled_twice) == (3, 0, 0)
    assert result.outcomes == {
        "error/controller_lost (hit)": 1,
        "error/internal_error": 1,
        "verified (hit)": 1,
        "absent": 1,
        "expired/expired": 1,
    }
    assert "calls up when the fault began on c2: dtmf 2" in result.notes
    # Service back with c's redial (113.0), the hit a settled at 108.5.
    assert result.recover_seconds == pytest.approx(13.0)
    assert result.cps_max == 2
