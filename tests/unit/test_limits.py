"""Abuse limits as pure decisions: destinations and counts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest

from ivr_auth import config, limits, models

NOW = dt.datetime(2026, 11, 23, 10, 0, 0, tzinfo=dt.UTC)
TENANT = models.Tenant(id=uuid.uuid4(), name="t", caller_id=None, default_language=None, created_at=NOW)
POLICY = limits.Policy.for_tenant(config.Config(), TENANT)
QUIET = limits.Counts(
    now=NOW,
    last_minute=0,
    oldest_last_minute=None,
    to_phone=0,
    oldest_to_phone=None,
    last_failure=None,
    calls_today=0,
)


def test_policy_defaults_come_from_the_config() -> None:
    assert POLICY.requests_per_minute == 60
    assert POLICY.sends_per_phone == 5
    assert POLICY.sends_per_phone_window_seconds == 600
    assert POLICY.daily_call_budget == 0
    assert POLICY.failure_cooldown_seconds == 0
    assert POLICY.allowed_countries == ()
    assert "+81990" in POLICY.denied_prefixes


def test_a_tenants_own_limits_win() -> None:
    tenant = dataclasses.replace(TENANT, sends_per_phone=2, daily_call_budget=100, allowed_countries=("JP",))

    policy = limits.Policy.for_tenant(config.Config(), tenant)

    assert policy.sends_per_phone == 2
    assert policy.daily_call_budget == 100
    assert policy.allowed_countries == ("JP",)
    assert policy.requests_per_minute == 60


# --- destinations ---------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["+819901234567", "+815701234567", "+81180123456"])
def test_denied_prefixes_are_never_called(number: str) -> None:
    with pytest.raises(limits.DestinationNotAllowed) as info:
        limits.check_destination(POLICY, number)
    assert info.value.status == 403
    assert info.value.code == "destination_not_allowed"
    assert info.value.reason == "denied_prefix"


def test_allowed_countries() -> None:
    policy = dataclasses.replace(POLICY, allowed_countries=("JP",))

    limits.check_destination(policy, "+819012345678")
    with pytest.raises(limits.DestinationNotAllowed, match="country GB is not allowed"):
        limits.check_destination(policy, "+442079460000")


def test_allowed_prefixes() -> None:
    policy = dataclasses.replace(POLICY, allowed_prefixes=("+8190", "+8180"))

    limits.check_destination(policy, "+819012345678")
    limits.check_destination(policy, "+818012345678")
    with pytest.raises(limits.DestinationNotAllowed) as info:
        limits.check_destination(policy, "+81312345678")
    assert info.value.reason == "prefix_not_allowed"


def test_any_destination_by_default() -> None:
    limits.check_destination(POLICY, "+442079460000")
    limits.check_destination(POLICY, "+819012345678")


# --- counts ---------------------------------------------------------------------------------


def test_quiet_tenant_passes() -> None:
    limits.check_counts(POLICY, QUIET, "dtmf")


def test_requests_per_minute_trips_at_the_limit_and_says_when_to_retry() -> None:
    counts = dataclasses.replace(QUIET, last_minute=60, oldest_last_minute=NOW - dt.timedelta(seconds=45))

    with pytest.raises(limits.RateLimited) as info:
        limits.check_counts(POLICY, counts, "inbound")
    assert info.value.reason == "requests_per_minute"
    assert info.value.retry_after == pytest.approx(15)
    assert info.value.retry_after_header == "15"
    assert info.value.status == 429

    limits.check_counts(POLICY, dataclasses.replace(counts, last_minute=59), "dtmf")


def test_sends_per_phone() -> None:
    counts = dataclasses.replace(QUIET, to_phone=5, oldest_to_phone=NOW - dt.timedelta(seconds=100))

    with pytest.raises(limits.RateLimited) as info:
        limits.check_counts(POLICY, counts, "voice")
    assert info.value.reason == "sends_per_phone"
    assert info.value.retry_after == pytest.approx(500)
    # Inbound requests call nobody: the number is not "sent" anything.
    limits.check_counts(POLICY, counts, "inbound")


def test_failure_cooldown_only_when_turned_on() -> None:
    counts = dataclasses.replace(QUIET, last_failure=NOW - dt.timedelta(seconds=10))
    limits.check_counts(POLICY, counts, "dtmf")

    cooling = dataclasses.replace(POLICY, failure_cooldown_seconds=60)
    with pytest.raises(limits.RateLimited) as info:
        limits.check_counts(cooling, counts, "dtmf")
    assert info.value.reason == "failure_cooldown"
    assert info.value.retry_after == pytest.approx(50)

    limits.check_counts(cooling, dataclasses.replace(counts, last_failure=NOW - dt.timedelta(seconds=61)), "dtmf")


def test_daily_call_budget_resets_at_utc_midnight() -> None:
    budget = dataclasses.replace(POLICY, daily_call_budget=10)

    limits.check_counts(budget, dataclasses.replace(QUIET, calls_today=9), "dtmf")
    with pytest.raises(limits.RateLimited) as info:
        limits.check_counts(budget, dataclasses.replace(QUIET, calls_today=10), "dtmf")
    assert info.value.reason == "daily_call_budget"
    assert info.value.retry_after == pytest.approx(14 * 3600)


def test_retry_after_is_at_least_a_second() -> None:
    refused = limits.RateLimited("x", "x", 0.2)

    assert refused.retry_after_header == "1"
    assert limits.RateLimited("x", "x").retry_after_header is None
