"""The usage report's query string: the period, its defaults, every refusal."""

from __future__ import annotations

import datetime as dt

import pytest

from ivr_auth.api import schemas, usage

NOW = dt.datetime(2026, 11, 23, 10, 30, 15, 123456, tzinfo=dt.UTC)
DAY_START = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


def period(**params: str) -> usage.Period:
    return usage.parse_period(params.items(), NOW)


def refused(params: list[tuple[str, str]]) -> schemas.ApiError:
    with pytest.raises(schemas.ApiError) as info:
        usage.parse_period(params, NOW)
    assert info.value.status == 422
    return info.value


def test_defaults_to_the_current_utc_day_so_far() -> None:
    assert period() == usage.Period(DAY_START, NOW)


def test_the_default_day_is_the_utc_one_whatever_zone_now_is_in() -> None:
    tokyo = dt.timezone(dt.timedelta(hours=9))
    now = dt.datetime(2026, 11, 24, 8, 0, tzinfo=tokyo)  # 2026-11-23T23:00Z

    got = usage.parse_period([], now)

    assert got == usage.Period(DAY_START, dt.datetime(2026, 11, 23, 23, tzinfo=dt.UTC))
    assert got.end.tzinfo is dt.UTC


def test_the_default_period_at_midnight_is_empty_not_refused() -> None:
    assert usage.parse_period([], DAY_START) == usage.Period(DAY_START, DAY_START)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T00:00:00Z", dt.datetime(2026, 11, 20, tzinfo=dt.UTC)),
        ("2026-11-20T09:00:00+09:00", dt.datetime(2026, 11, 20, tzinfo=dt.UTC)),
        ("2026-11-19T19:00:00-05:00", dt.datetime(2026, 11, 20, tzinfo=dt.UTC)),
        ("2026-11-20T00:00:00.250000+00:00", dt.datetime(2026, 11, 20, 0, 0, 0, 250000, tzinfo=dt.UTC)),
        ("2026-11-20 00:00Z", dt.datetime(2026, 11, 20, tzinfo=dt.UTC)),
    ],
)
def test_from_is_read_in_any_zone_and_kept_in_utc(text: str, expected: dt.datetime) -> None:
    got = period(**{"from": text})

    assert got == usage.Period(expected, NOW)
    assert got.start.tzinfo is dt.UTC


def test_to_alone_runs_from_the_start_of_the_day() -> None:
    assert period(to="2026-11-23T19:00:00+09:00") == usage.Period(
        DAY_START, dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)
    )


def test_both_may_lie_in_the_past_or_the_future() -> None:
    past = period(**{"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z"})
    future = period(**{"from": "2027-01-01T00:00:00Z", "to": "2027-01-02T00:00:00Z"})

    assert past == usage.Period(dt.datetime(2025, 1, 1, tzinfo=dt.UTC), dt.datetime(2025, 2, 1, tzinfo=dt.UTC))
    assert future.end - future.start == dt.timedelta(days=1)


def test_a_period_of_exactly_366_days_is_accepted() -> None:
    got = period(**{"from": "2025-11-23T00:00:00Z", "to": "2026-11-24T00:00:00Z"})

    assert got.end - got.start == dt.timedelta(days=366)


@pytest.mark.parametrize("param", ["from", "to"])
@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-11-23T25:00:00Z",
        "2026-11-23T00:00:00+25:00",
        "1700000000",
        "2026-11-23T00:00:00Z ",
        "2026-11-23T00:00:00ZZ",
    ],
)
def test_what_is_no_timestamp_is_refused(param: str, text: str) -> None:
    exc = refused([(param, text)])

    assert exc.code == "invalid_field"
    assert exc.message.startswith(f"{param}: expected an ISO 8601 timestamp with a zone")


@pytest.mark.parametrize("param", ["from", "to"])
@pytest.mark.parametrize("text", ["2026-11-23T00:00:00", "2026-11-23", "2026-11-23T00:00:00.5"])
def test_a_timestamp_without_a_zone_is_refused(param: str, text: str) -> None:
    exc = refused([(param, text)])

    assert exc.code == "invalid_field"
    assert exc.message.startswith(f"{param}: the timestamp has no zone")


def test_a_timestamp_that_leaves_the_calendar_in_utc_is_refused() -> None:
    exc = refused([("from", "0001-01-01T00:00:00+09:00")])

    assert (exc.code, exc.message) == ("invalid_field", "from: the timestamp is out of range")


@pytest.mark.parametrize("to", ["2026-11-20T00:00:00Z", "2026-11-20T09:00:00+09:00", "2026-11-19T00:00:00Z"])
def test_to_must_come_after_from(to: str) -> None:
    exc = refused([("from", "2026-11-20T00:00:00Z"), ("to", to)])

    assert exc.code == "invalid_field"
    assert exc.message == "to: must be after from (2026-11-20T00:00:00Z)"


def test_to_alone_before_the_start_of_the_day_names_the_default() -> None:
    exc = refused([("to", "2026-11-22T23:59:59Z")])

    assert exc.message == "to: must be after from (by default the start of the UTC day: 2026-11-23T00:00:00Z)"


def test_from_alone_in_the_future_names_from() -> None:
    exc = refused([("from", "2026-11-24T00:00:00Z")])

    assert exc.code == "invalid_field"
    assert exc.message == "from: must be before to (by default now: 2026-11-23T10:30:15.123456Z)"


@pytest.mark.parametrize(
    ("params", "blamed"),
    [
        ([("from", "2025-11-23T00:00:00Z"), ("to", "2026-11-24T00:00:00.000001Z")], "to"),
        ([("from", "2020-01-01T00:00:00Z"), ("to", "2026-01-01T00:00:00Z")], "to"),
        ([("from", "2025-11-21T00:00:00Z")], "from"),
        ([("to", "2027-12-01T00:00:00Z")], "to"),
    ],
)
def test_a_period_over_366_days_is_refused(params: list[tuple[str, str]], blamed: str) -> None:
    exc = refused(params)

    assert exc.code == "invalid_field"
    assert exc.message.startswith(f"{blamed}: the period ")
    assert exc.message.endswith(" is longer than 366 days")


@pytest.mark.parametrize("param", ["from", "to"])
def test_a_parameter_given_twice_is_refused(param: str) -> None:
    exc = refused([(param, "2026-11-23T01:00:00Z"), (param, "2026-11-23T01:00:00Z")])

    assert (exc.code, exc.message) == ("invalid_field", f"{param}: given more than once")


@pytest.mark.parametrize("name", ["since", "From", "tenant", "", "from[]"])
def test_an_unknown_parameter_is_refused_by_name(name: str) -> None:
    exc = refused([("from", "2026-11-23T01:00:00Z"), (name, "x")])

    assert exc.code == "unknown_field"
    assert exc.message == f"{name}: unknown query parameter (known: from, to)"


def test_a_long_unknown_name_is_cut_short() -> None:
    exc = refused([("x" * 5000, "1")])

    assert exc.message.startswith("x" * schemas.MAX_FIELD_NAME_ECHO + "...: unknown query parameter")
    assert len(exc.message) < 200


def test_unknown_parameters_are_refused_before_bad_values() -> None:
    assert refused([("from", "nonsense"), ("limit", "5")]).code == "unknown_field"


def test_an_unescaped_plus_gets_a_hint() -> None:
    exc = refused([("from", "2026-11-23T00:00:00 09:00")])

    assert exc.message.endswith("(send a '+' as %2B)")
