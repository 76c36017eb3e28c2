"""Abuse limits as pure decisions: destinations and counts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest

from ivr_auth import config, errors, limits, models, phone

NOW = dt.datetime(2026, 11, 23, 10, 0, 0, tzinfo=dt.UTC)
TENANT = models.Tenant(id=uuid.uuid4(), name="t", caller_id=None, default_language=None, created_at=NOW)
POLICY = limits.Policy.for_tenant(config.Config(), TENANT)


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


@pytest.mark.parametrize("number", ["+81990123456", "+81570123456", "+81180123456"])
def test_denied_prefixes_are_never_called(number: str) -> None:
    every_line_type = dataclasses.replace(POLICY, allowed_line_types=phone.LINE_TYPES)

    with pytest.raises(limits.DestinationNotAllowed) as info:
        limits.check_destination(every_line_type, number)
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


# --- line types -----------------------------------------------------------------------------


def test_mobile_fixed_and_ip_numbers_are_called_by_default() -> None:
    assert POLICY.allowed_line_types == ("mobile", "fixed", "fixed_or_mobile", "ip")
    for number in ("+819012345678", "+81312345678", "+815012345678", "+14155552671"):
        limits.check_destination(POLICY, number)


@pytest.mark.parametrize(
    ("number", "kind"),
    [
        ("+81120123456", "toll_free"),
        ("+818001234567", "toll_free"),
        ("+81990123456", "premium_rate"),  # also a denied prefix: the line type is named first
        ("+81570123456", "uan"),  # likewise
        ("+812041234567", "pager"),
        ("+81600123456", "personal"),
        ("+33884012345", "shared_cost"),
        ("+49177991234567", "voicemail"),
        ("+8190123456789", "unknown"),  # no valid number ever gets here; refused all the same
    ],
)
def test_other_line_types_are_refused_by_name(number: str, kind: str) -> None:
    with pytest.raises(limits.DestinationNotAllowed) as info:
        limits.check_destination(POLICY, number)

    assert (info.value.status, info.value.code) == (403, "destination_not_allowed")
    assert info.value.reason == "line_type_not_allowed"
    assert str(info.value) == (
        f"phone: {number} is a {kind} number; this service calls mobile, fixed, fixed_or_mobile and ip numbers"
    )


def test_the_line_type_is_checked_before_the_denied_prefixes() -> None:
    # +81120 denied as well: the answer names the line type, not the prefix.
    policy = dataclasses.replace(POLICY, denied_prefixes=("+81120",))

    with pytest.raises(limits.DestinationNotAllowed) as info:
        limits.check_destination(policy, "+81120123456")
    assert info.value.reason == "line_type_not_allowed"

    # A tenant allowed toll-free numbers still never calls a denied range.
    allowed = dataclasses.replace(policy, allowed_line_types=(*POLICY.allowed_line_types, "toll_free"))
    with pytest.raises(limits.DestinationNotAllowed) as info:
        limits.check_destination(allowed, "+81120123456")
    assert info.value.reason == "denied_prefix"


def test_a_tenant_may_be_allowed_other_line_types() -> None:
    tenant = dataclasses.replace(TENANT, allowed_line_types=("mobile", "toll_free"))

    policy = limits.Policy.for_tenant(config.Config(), tenant)

    assert policy.allowed_line_types == ("mobile", "toll_free")
    limits.check_destination(policy, "+81120123456")
    limits.check_destination(policy, "+819012345678")
    with pytest.raises(
        limits.DestinationNotAllowed, match=r"is a fixed number; this service calls mobile and toll_free"
    ):
        limits.check_destination(policy, "+81312345678")


def test_the_configs_line_types_apply_to_tenants_without_their_own() -> None:
    cfg = config.from_mapping({"limits": {"allowed_line_types": ["mobile"]}})

    policy = limits.Policy.for_tenant(cfg, TENANT)

    assert policy.allowed_line_types == ("mobile",)
    with pytest.raises(limits.DestinationNotAllowed, match="this service calls mobile numbers"):
        limits.check_destination(policy, "+81312345678")


def test_the_configs_own_policy_has_no_tenant_settings() -> None:
    cfg = config.from_mapping({"limits": {"allowed_line_types": ["mobile", "toll_free"], "sends_per_phone": 2}})

    policy = limits.Policy.for_config(cfg)

    assert policy == dataclasses.replace(
        limits.Policy.for_tenant(cfg, TENANT), allowed_countries=(), allowed_prefixes=()
    )
    assert (policy.allowed_line_types, policy.sends_per_phone) == (("mobile", "toll_free"), 2)


def test_line_type_refusals_belong_to_the_project_root() -> None:
    with pytest.raises(errors.IvrAuthError):
        limits.check_destination(POLICY, "+81120123456")


# --- counts ---------------------------------------------------------------------------------


# (The counting and the decision are the store's: tests/integration/test_limits.py.)


def test_each_limit_the_store_reports_is_worded_with_the_policy_and_its_wait() -> None:
    policy = dataclasses.replace(POLICY, daily_call_budget=10, failure_cooldown_seconds=60)
    worded = {reason: limits.refused(policy, reason, 15.0, 5) for reason in limits.COUNTED}

    assert worded["requests_per_minute"].args[0] == "more than 60 requests in a minute; slow down"
    assert (
        worded["sends_per_phone"].args[0] == "this number was called or sent a code 5 times in the last 600 s (limit 5)"
    )
    assert worded["failure_cooldown"].args[0] == "a request to this number failed just now; try again later"
    assert worded["daily_call_budget"].args[0] == "today's call budget of 10 is used up (resets at 00:00 UTC)"
    for reason, error in worded.items():
        assert (error.reason, error.status, error.code, error.retry_after_header) == (reason, 429, "rate_limited", "15")


def test_a_wait_below_zero_or_missing_still_says_when() -> None:
    assert limits.refused(POLICY, "requests_per_minute", -0.3, 60).retry_after_header == "1"
    assert limits.refused(POLICY, "requests_per_minute", None, 60).retry_after_header == "1"


def test_an_unknown_limit_is_a_bug_not_a_refusal() -> None:
    with pytest.raises(ValueError, match="unknown limit 'calls_per_hour'"):
        limits.refused(POLICY, "calls_per_hour", 1.0, 1)


def test_retry_after_is_at_least_a_second() -> None:
    refused = limits.RateLimited("x", "x", 0.2)

    assert refused.retry_after_header == "1"
    assert limits.RateLimited("x", "x").retry_after_header is None
