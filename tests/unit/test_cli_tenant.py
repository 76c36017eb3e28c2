"""Parsing of `ivr-auth tenant limits` options."""

from __future__ import annotations

import argparse

import pytest

from ivr_auth import cli, cli_tenant, errors
from ivr_auth.store import controls


def args(**given: object) -> argparse.Namespace:
    values: dict[str, object] = {key: None for key in controls.INT_LIMITS}
    values.update(allow_country=None, allow_prefix=None, allow_line_type=None)
    values.update(given)
    return argparse.Namespace(**values)


def test_nothing_given_changes_nothing() -> None:
    assert cli_tenant.limit_changes(args()) == controls.LimitChanges()


def test_numbers_and_default() -> None:
    changes = cli_tenant.limit_changes(args(sends_per_phone="3", daily_call_budget="default"))

    assert changes.sends_per_phone == 3
    assert changes.daily_call_budget == controls.DEFAULT
    assert changes.requests_per_minute is None


@pytest.mark.parametrize("value", ["-1", "3.5", "many", ""])
def test_bad_numbers_name_the_option(value: str) -> None:
    with pytest.raises(errors.IvrAuthError, match="--sends-per-phone: expected a whole number"):
        cli_tenant.limit_changes(args(sends_per_phone=value))


def test_countries_are_upper_cased_and_checked() -> None:
    assert cli_tenant.limit_changes(args(allow_country=["jp", " us "])).allowed_countries == ("JP", "US")
    assert cli_tenant.limit_changes(args(allow_country=[""])).allowed_countries == ()
    with pytest.raises(errors.IvrAuthError, match="--allow-country: 'XX'"):
        cli_tenant.limit_changes(args(allow_country=["XX"]))


def test_prefixes_must_be_e164() -> None:
    assert cli_tenant.limit_changes(args(allow_prefix=["+8190", "+8180"])).allowed_prefixes == ("+8190", "+8180")
    with pytest.raises(errors.IvrAuthError, match="--allow-prefix"):
        cli_tenant.limit_changes(args(allow_prefix=["090"]))


def test_line_types_are_checked_and_default_goes_back_to_the_configs() -> None:
    changes = cli_tenant.limit_changes(args(allow_line_type=["mobile", " toll_free ", "mobile"]))
    assert changes.allowed_line_types == ("mobile", "toll_free")
    assert cli_tenant.limit_changes(args(allow_line_type=["default"])).allowed_line_types == ()


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (["cell"], "--allow-line-type: 'cell' is not one of mobile, fixed, fixed_or_mobile, ip, toll_free, "),
        ([""], "--allow-line-type: name at least one line type, or 'default'"),
        (["default", "mobile"], "--allow-line-type: 'default' stands alone"),
    ],
)
def test_bad_line_types_name_the_option(given: list[str], says: str) -> None:
    with pytest.raises(errors.IvrAuthError) as info:
        cli_tenant.limit_changes(args(allow_line_type=given))
    assert str(info.value).startswith(says)


def test_the_line_type_option_is_on_tenant_limits() -> None:
    parsed = cli._parser().parse_args(
        ["tenant", "limits", "acme", "--allow-line-type", "mobile", "--allow-line-type", "toll_free"]
    )

    assert parsed.allow_line_type == ["mobile", "toll_free"]
