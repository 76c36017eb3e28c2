"""Parsing of `ivr-auth tenant set --caller-id-pool`."""

from __future__ import annotations

import pytest

from ivr_auth import cli, config, errors

CFG = config.Config()


def test_not_given_changes_nothing() -> None:
    assert cli.caller_id_pool_arg(CFG, None) is None


def test_empty_clears_the_pool() -> None:
    assert cli.caller_id_pool_arg(CFG, "") == ()
    assert cli.caller_id_pool_arg(CFG, " , ") == ()


def test_numbers_become_e164_in_order_each_once() -> None:
    given = "0312345678, 03-1234-5679,+81312345678"

    assert cli.caller_id_pool_arg(CFG, given) == ("+81312345678", "+81312345679")


@pytest.mark.parametrize("given", ["0312345678,12", "0312345678,not-a-number", "0990123456"])
def test_a_bad_number_is_refused_by_the_option_name(given: str) -> None:
    with pytest.raises(errors.IvrAuthError, match=r"^--caller-id-pool: phone: "):
        cli.caller_id_pool_arg(CFG, given)


def test_the_option_is_on_tenant_set() -> None:
    parsed = cli._parser().parse_args(["tenant", "set", "acme", "--caller-id-pool", "0312345678,0312345679"])

    assert parsed.caller_id_pool == "0312345678,0312345679"
