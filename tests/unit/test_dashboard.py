"""The dashboard's pure parts: session cookies, the day's start, the
overview's shaping (masking, timings, tenants, trunk health), what the
detail view hides, and controllers' trunk reports."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any

import pytest

from ivr_auth import config, crypto, errors, presence, trunks
from ivr_auth.dashboard import live, routes, session
from ivr_auth.store import dashboard as board

KEYS = crypto.Keys.from_secret("s" * 40)
NOW = dt.datetime(2026, 11, 24, 1, 0, tzinfo=dt.UTC)


def a_session(hours: float = 12) -> session.Session:
    return session.Session(uuid.uuid4(), NOW, NOW + dt.timedelta(hours=hours))


def test_a_session_cookie_round_trips() -> None:
    original = a_session()
    decoded = session.decode(KEYS, session.encode(KEYS, original), NOW)
    assert decoded == original


def test_a_session_keeps_its_issue_time_to_the_microsecond() -> None:
    # A logout or a new token in the same millisecond must still end it.
    issued = NOW + dt.timedelta(microseconds=1501)
    cookie = session.encode(KEYS, session.Session(uuid.uuid4(), issued, NOW + dt.timedelta(days=1)))
    decoded = session.decode(KEYS, cookie, NOW)
    assert decoded is not None
    assert decoded.issued == issued


def test_an_expired_session_is_refused() -> None:
    cookie = session.encode(KEYS, a_session(hours=1))
    assert session.decode(KEYS, cookie, NOW + dt.timedelta(minutes=59)) is not None
    assert session.decode(KEYS, cookie, NOW + dt.timedelta(hours=1)) is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),  # signature
        lambda c: str(uuid.uuid4()) + c[36:],  # someone else's id
        lambda c: c.replace(".", ".9", 2),  # a later expiry
        lambda c: "",
        lambda c: "garbage",
        lambda c: c.rpartition(".")[0],  # no signature
    ],
)
def test_a_tampered_session_is_refused(tamper: Any) -> None:
    assert session.decode(KEYS, tamper(session.encode(KEYS, a_session())), NOW) is None


def test_a_session_signed_under_another_secret_is_refused() -> None:
    other = crypto.Keys.from_secret("t" * 40)
    assert session.decode(other, session.encode(KEYS, a_session()), NOW) is None


def test_operator_tokens_and_api_keys_are_told_apart() -> None:
    token, prefix = crypto.new_api_key(crypto.OPERATOR_TOKEN_PREFIX)
    key, key_prefix = crypto.new_api_key()
    assert token.startswith("ivrop_")
    assert crypto.api_key_prefix(token, crypto.OPERATOR_TOKEN_PREFIX) == prefix
    assert crypto.api_key_prefix(token) is None
    assert crypto.api_key_prefix(key, crypto.OPERATOR_TOKEN_PREFIX) is None
    assert crypto.api_key_prefix(key) == key_prefix


def test_the_day_starts_at_midnight_in_the_configured_zone() -> None:
    tokyo = zoneinfo.ZoneInfo("Asia/Tokyo")
    # 01:00 UTC is 10:00 in Tokyo: the day began at 15:00 UTC the evening before.
    assert live.day_start(NOW, tokyo) == dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC)
    assert live.day_start(NOW, zoneinfo.ZoneInfo("UTC")) == dt.datetime(2026, 11, 24, tzinfo=dt.UTC)


def test_dashboard_config_is_validated() -> None:
    assert config.from_mapping({}).dashboard.timezone == "Asia/Tokyo"
    for bad, key in (
        ({"timezone": "Mars/Olympus"}, "dashboard.timezone"),
        ({"session_hours": 0}, "dashboard.session_hours"),
        ({"recent": 0}, "dashboard.recent"),
    ):
        with pytest.raises(errors.ConfigError, match=key):
            config.from_mapping({"dashboard": bad})


def row(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tenant": "shop",
        "method": "dtmf",
        "status": "verified",
        "reason": "code_matched",
        "phone": "+819012345678",
        "purged_at": None,
        "created_at": NOW,
        "first_call_at": NOW + dt.timedelta(milliseconds=40),
        "answered_at": NOW + dt.timedelta(seconds=2),
        "finished_at": NOW + dt.timedelta(seconds=6.5),
        "webhook_at": NOW + dt.timedelta(seconds=6.7),
        "call_attempts": 1,
        "last_cause": 16,
        "last_cause_txt": "Normal Clearing",
    }
    return {**base, **fields}


def test_a_request_line_is_masked_and_timed() -> None:
    summary = board.request_summary(row())
    assert summary["phone"] == "+81********78"
    assert summary["timings"] == {
        "to_first_call": 0.04,
        "answer_to_result": 4.5,
        "total": 6.5,
        "result_to_webhook": 0.2,
    }
    assert summary["cause"] == 16


def test_a_request_still_open_has_no_result_timings() -> None:
    summary = board.request_summary(row(status="queued", first_call_at=None, answered_at=None, finished_at=None))
    assert summary["timings"] == {
        "to_first_call": None,
        "answer_to_result": None,
        "total": None,
        "result_to_webhook": None,
    }


def test_a_purged_request_shows_no_number() -> None:
    assert board.request_summary(row(purged_at=NOW, phone="+81XXXXXXXXXX"))["phone"] == "(purged)"


def test_tenants_are_counted_busiest_first_and_the_rest_summed() -> None:
    rows = [
        {"tenant": "a", "status": "verified", "n": 2},
        {"tenant": "b", "status": "verified", "n": 5},
        {"tenant": "b", "status": "failed", "n": 1},
        {"tenant": "c", "status": "queued", "n": 1},
        {"tenant": "d", "status": "failed", "n": 1},
    ]
    counts = board.tenant_counts(rows, top=2)
    assert counts == [
        {"tenant": "b", "total": 6, "by_status": {"failed": 1, "verified": 5}},
        {"tenant": "a", "total": 2, "by_status": {"verified": 2}},
        {"tenant": None, "others": 2, "total": 2, "by_status": {"failed": 1, "queued": 1}},
    ]
    assert len(board.tenant_counts(rows)) == 4


def controller(live_: bool, *trunk_reports: dict[str, Any]) -> dict[str, Any]:
    return {"live": live_, "trunks": list(trunk_reports)}


def test_a_trunk_is_down_when_a_live_controller_has_it_down() -> None:
    health = board.trunk_health(
        ["a", "b", "c"],
        [
            controller(
                True, {"name": "a", "up": True, "calls": 2}, {"name": "b", "up": False, "retry_in_seconds": 12.5}
            ),
            controller(True, {"name": "a", "up": True, "calls": 1}, {"name": "b", "up": True, "calls": 0}),
            # a controller gone silent: its reports no longer count
            controller(False, {"name": "c", "up": False, "retry_in_seconds": 3}),
        ],
        [{"trunk": "a", "calls": 10, "answered": 8, "trunk_failures": 0}, {"trunk": "old", "calls": 1}],
    )
    by_name = {t["name"]: t for t in health}
    assert by_name["a"]["state"] == "up"
    assert by_name["a"]["calls"] == 3
    assert by_name["a"]["recent_answered"] == 8
    assert by_name["b"]["state"] == "down"
    assert by_name["b"]["retry_in_seconds"] == 12.5
    assert by_name["c"]["state"] == "unknown"
    # a trunk no longer configured but with recent calls is still listed
    assert by_name["old"]["recent_calls"] == 1


def test_controllers_report_their_trunks() -> None:
    pool = trunks.Trunks.from_config(config.Config())
    name = pool.names[0]
    pool.acquire(100.0)
    assert presence.trunk_states(pool, 100.0) == [{"name": name, "up": True, "retry_in_seconds": None, "calls": 1}]
    pool.failed(name, 100.0)
    (state,) = presence.trunk_states(pool, 110.0)
    assert state["up"] is False
    assert state["retry_in_seconds"] == pytest.approx(pool.retry_seconds - 10)


def test_the_detail_view_masks_numbers_and_hides_callback_queries() -> None:
    assert routes._masked({"caller": "+819012345678", "n": [1, "090-1234-5678"]}) == {
        "caller": "+81********78",
        "n": [1, routes._masked("090-1234-5678")],
    }
    assert "5678" not in routes._masked("090-1234-5678")
    assert routes._url_without_query("https://user:pw@hooks.example/ivr?token=s3cret#x") == "https://hooks.example/ivr"
