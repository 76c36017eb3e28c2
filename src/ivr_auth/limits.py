"""Abuse protection for new requests: where a tenant may call, and how
often. Where a tenant may call is decided here; how often is counted and
decided by the store in the statement that inserts the request (against
per-tenant counters, locked for that one statement, so that concurrent
requests cannot slip past a limit together), and worded here.

Wrong codes are limited per request (``max_code_attempts``), not per
number: otherwise anyone could lock the real owner out by failing on
purpose. The optional cool-down after a failed request
(``failure_cooldown_seconds``) trades exactly that for a brake on guessing,
which is why it is off unless an operator turns it on.
"""

from __future__ import annotations

import dataclasses
import math

from ivr_auth import config, errors, models, phone


class Refused(errors.IvrAuthError):
    """The request was refused by a limit."""

    status = 429
    code = "rate_limited"

    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str | None:
        return None if self.retry_after is None else str(max(1, math.ceil(self.retry_after)))


class RateLimited(Refused):
    """Too many requests: try again later."""


class DestinationNotAllowed(Refused):
    """This destination is not called for this tenant."""

    status = 403
    code = "destination_not_allowed"


@dataclasses.dataclass(frozen=True)
class Policy:
    requests_per_minute: int
    sends_per_phone: int
    sends_per_phone_window_seconds: int
    daily_call_budget: int
    failure_cooldown_seconds: int
    retention_days: int
    allowed_countries: tuple[str, ...]
    allowed_prefixes: tuple[str, ...]
    denied_prefixes: tuple[str, ...]
    allowed_line_types: tuple[str, ...]
    daily_sms_budget: int = 0

    @classmethod
    def for_config(cls, cfg: config.Config) -> Policy:
        """The config's limits alone, for calls no tenant asked for (``ivr-auth call``)."""
        lim = cfg.limits
        return cls(
            requests_per_minute=lim.requests_per_minute,
            sends_per_phone=lim.sends_per_phone,
            sends_per_phone_window_seconds=lim.sends_per_phone_window_seconds,
            daily_call_budget=lim.daily_call_budget,
            failure_cooldown_seconds=lim.failure_cooldown_seconds,
            retention_days=lim.retention_days,
            allowed_countries=(),
            allowed_prefixes=(),
            denied_prefixes=lim.denied_prefixes,
            allowed_line_types=lim.allowed_line_types,
            daily_sms_budget=lim.daily_sms_budget,
        )

    @classmethod
    def for_tenant(cls, cfg: config.Config, tenant: models.Tenant) -> Policy:
        lim = cfg.limits

        def pick(own: int | None, default: int) -> int:
            return default if own is None else own

        return cls(
            requests_per_minute=pick(tenant.requests_per_minute, lim.requests_per_minute),
            sends_per_phone=pick(tenant.sends_per_phone, lim.sends_per_phone),
            sends_per_phone_window_seconds=pick(
                tenant.sends_per_phone_window_seconds, lim.sends_per_phone_window_seconds
            ),
            daily_call_budget=pick(tenant.daily_call_budget, lim.daily_call_budget),
            failure_cooldown_seconds=pick(tenant.failure_cooldown_seconds, lim.failure_cooldown_seconds),
            retention_days=pick(tenant.retention_days, lim.retention_days),
            allowed_countries=tenant.allowed_countries,
            allowed_prefixes=tenant.allowed_prefixes,
            denied_prefixes=lim.denied_prefixes,
            allowed_line_types=(
                lim.allowed_line_types if tenant.allowed_line_types is None else tenant.allowed_line_types
            ),
            daily_sms_budget=pick(tenant.daily_sms_budget, lim.daily_sms_budget),
        )


def check_destination(policy: Policy, e164: str) -> None:
    """Refuse line types not called, denied ranges always, and what the
    tenant does not allow. The line type comes first, so that a premium-rate
    number in a denied range is refused as what it is."""
    kind = phone.line_type(e164)
    if kind not in policy.allowed_line_types:
        raise DestinationNotAllowed(
            "line_type_not_allowed",
            f"phone: {e164} is a {kind} number; this service calls {_listed(policy.allowed_line_types)} numbers",
        )
    for prefix in policy.denied_prefixes:
        if e164.startswith(prefix):
            raise DestinationNotAllowed("denied_prefix", f"phone: numbers starting {prefix} are never called")
    if policy.allowed_countries:
        region = phone.region(e164)
        if region not in policy.allowed_countries:
            allowed = ", ".join(policy.allowed_countries)
            raise DestinationNotAllowed(
                "country_not_allowed", f"phone: destination country {region or 'unknown'} is not allowed ({allowed})"
            )
    if policy.allowed_prefixes and not any(e164.startswith(p) for p in policy.allowed_prefixes):
        raise DestinationNotAllowed("prefix_not_allowed", "phone: the number is outside this tenant's allowed prefixes")


# The limits the store checks for a new request (its limit_check), by the
# name it reports the one a request is over with.
COUNTED = ("requests_per_minute", "sends_per_phone", "failure_cooldown", "daily_call_budget", "daily_sms_budget")


def refused(policy: Policy, reason: str, retry_after: float | None, count: int | None) -> RateLimited:
    """The error for a request the store found over the limit ``reason``
    (one of ``COUNTED``), ``count`` the figure that tripped it, with the
    seconds until a request may pass (``retry_after``)."""
    wait = None if retry_after is None else max(retry_after, 0.0)
    if reason == "requests_per_minute":
        message = f"more than {policy.requests_per_minute} requests in a minute; slow down"
    elif reason == "sends_per_phone":
        message = (
            f"this number was called or sent a code {count} times in the last"
            f" {policy.sends_per_phone_window_seconds} s (limit {policy.sends_per_phone})"
        )
    elif reason == "failure_cooldown":
        message = "a request to this number failed just now; try again later"
    elif reason == "daily_call_budget":
        message = f"today's call budget of {policy.daily_call_budget} is used up (resets at 00:00 UTC)"
    elif reason == "daily_sms_budget":
        message = f"today's SMS budget of {policy.daily_sms_budget} is used up (resets at 00:00 UTC)"
    else:
        raise ValueError(f"unknown limit {reason!r}")
    return RateLimited(reason, message, wait if wait is not None else 1.0)


def _listed(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
