"""The doctor's checks that the running Asterisk matches what
``ivr-auth asterisk-config`` writes: its modules and the trunks' context."""

from __future__ import annotations

import datetime as dt

import pytest

from ivr_auth import asterisk_config, doctor
from ivr_auth.ari import release


def running(names: list[str], status: str = "Running") -> list[dict[str, object]]:
    return [{"name": name, "description": "", "use_count": 0, "status": status} for name in names]


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("22.10.1+dfsg+~cs6.17.60671434-1", (22, 10, 1)),
        ("16.28.0~dfsg-0+deb11u10", (16, 28, 0)),
        ("20.13", (20, 13)),
        ("GIT-master-abc123", None),
        ("", None),
    ],
)
def test_asterisk_versions_as_ari_gives_them(text: str, version: tuple[int, ...] | None) -> None:
    assert doctor.parse_asterisk_version(text) == version


def test_every_module_loaded_is_no_problem() -> None:
    found = running(["acl", *asterisk_config.modules((22, 10)), "app_echo.so"])

    assert doctor.missing_modules(found, (22, 10)) == []


def test_missing_modules_are_named_in_the_order_of_the_include_file() -> None:
    wanted = asterisk_config.modules((22, 10))
    found = running([m for m in wanted if m not in ("res_ari.so", "app_amd.so")])

    assert doctor.missing_modules(found, (22, 10)) == ["res_ari.so", "app_amd.so"]


def test_a_module_that_did_not_start_is_missing() -> None:
    wanted = asterisk_config.modules((16, 28))
    found = running([m for m in wanted if m != "res_agi.so"]) + running(["res_agi.so"], status="Not Running")

    assert doctor.missing_modules(found, (16, 28)) == ["res_agi.so"]


def test_asterisk_16_is_not_asked_for_the_modules_of_newer_releases() -> None:
    found = running(asterisk_config.modules((16, 28)))
    newer = ["res_stasis_broadcast.so", "app_stasis_broadcast.so", "res_websocket_client.so"]

    assert doctor.missing_modules(found, (16, 28)) == []
    assert doctor.missing_modules(found, (22, 10)) == newer
    # An Asterisk that gives no version is taken for 22.
    assert doctor.missing_modules(found, None) == newer


def attributes(**values: str) -> list[dict[str, str]]:
    return [{"attribute": key, "value": value} for key, value in values.items()]


def test_a_trunk_entering_ivr_auths_context_is_fine() -> None:
    assert doctor.endpoint_context_problem(attributes(context="ivr-auth-inbound", aors="carrier"), "carrier") is None


def test_a_trunk_entering_another_context_says_what_to_change() -> None:
    problem = doctor.endpoint_context_problem(attributes(context="from-external"), "carrier")

    assert problem is not None
    assert "calls from trunk endpoint carrier enter context 'from-external', not ivr-auth-inbound" in problem
    assert "set context = ivr-auth-inbound" in problem


def test_a_trunk_without_a_context_is_a_problem() -> None:
    problem = doctor.endpoint_context_problem([], "carrier")

    assert problem is not None
    assert "context None" in problem


@pytest.mark.parametrize(
    ("version", "warned"),
    [("16.28.0~dfsg-0+deb11u10", True), ("18.26.0", True), ("20.17.0", False), ("22.10.1+dfsg", False)],
)
def test_an_asterisk_past_its_end_of_life_is_a_warning(version: str, warned: bool) -> None:
    found = release.Release.parse(version)
    today = dt.date(2026, 12, 6)
    if warned:
        with pytest.raises(doctor.Concern, match=r"Asterisk 1[68] reached its end of life in October 20\d\d"):
            doctor.release_finding(found, "Asterisk answers", today)
    else:
        assert doctor.release_finding(found, "Asterisk answers", today) == "Asterisk answers"


def test_a_version_that_does_not_read_as_one_is_no_warning() -> None:
    assert doctor.release_finding(None, "Asterisk GIT-master answers", dt.date(2026, 12, 6)).endswith("answers")
