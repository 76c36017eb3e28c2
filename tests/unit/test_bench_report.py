"""The bench's pure parts: percentiles, the steady step's per-call figures,
issue 17's summary and its verdicts, and the ARI counts it reads from a
process's /metrics."""

from __future__ import annotations

from typing import Any

import pytest

from ivr_auth import metrics
from ivr_auth.ari import client as ari_client
from ivr_auth_devkit.bench import observe, report


def window(**changes: Any) -> report.Window:
    fields: dict[str, Any] = {
        "rate": 8.0,
        "seconds": 20.0,
        "requests": 160,
        "verified": 144,
        "passed": True,
        "rows_before": 1200,
        # 2.88 s of the service's own over 144 verified calls: 20 ms a call
        "cpu_seconds": {
            "api": 0.72,
            "controller": 1.008,
            "postgres:api": 0.576,
            "postgres:controller": 0.576,
            "postgres": 1.5,
            "asterisk": 4.0,
            report.MACHINE: 9.0,
        },
        "statements": 4320,
        "transactions": 1440,
        "ari_requests": {"controller": {"POST": 1008, "DELETE": 144}, "api": {}},
        "latencies": {"last_key_to_visible": [0.005] * 98 + [0.030, 0.040]},
    }
    return report.Window(**(fields | changes))


def test_the_steady_part_s_cpu_is_taken_per_call_the_rate_makes_in_it() -> None:
    # 10 s at 24/s with 90% verified: 216 verified calls' worth; 4.32 s of own CPU.
    w = window(
        steady_cpu_seconds={"api": 1.0, "controller": 2.0, "postgres:api": 0.32, "postgres:controller": 1.0},
        steady_verified=216.0,
    )

    assert w.own_cpu_ms == 20.0
    assert w.figures()["cpu_ms_per_verified_call"]["controller"] == 9.26


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert report.percentile(values, 99) == 99.0
    assert report.percentile(values, 50) == 50.0
    assert report.percentile([3.0], 99) == 3.0
    assert report.percentile([], 99) is None


def test_own_cpu_is_the_service_and_its_backends_per_verified_call() -> None:
    w = window()
    # postgres (the whole cluster) and asterisk are not the service's own
    assert w.own_cpu_ms == 20.0
    figures = w.figures()
    assert figures["db_statements_per_verified_call"] == 30.0
    assert figures["db_transactions_per_verified_call"] == 10.0
    assert figures["ari_requests_per_verified_call"]["controller"] == {"total": 8.0, "DELETE": 1.0, "POST": 7.0}
    assert figures["latency"]["last_key_to_visible"]["p99_ms"] == 30.0


def test_a_window_without_verified_calls_has_no_per_call_figures() -> None:
    w = window(verified=0, statements=None, ari_requests=None)
    assert w.own_cpu_ms is None
    assert w.figures()["db_statements_per_verified_call"] is None
    assert w.figures()["ari_requests_per_verified_call"] is None


def test_summary_divides_full_tables_by_empty_and_ours_by_the_baseline() -> None:
    empty = window(latencies={"last_key_to_visible": [0.010] * 100, "terminal_to_webhook": [0.050] * 100})
    full = window(rows_before=201_200, cpu_seconds={"api": 0.72, "controller": 1.44, "postgres:api": 1.008})
    found = report.summarize(empty, full, {"max_sustained_rate": 48.0}, {"max_sustained_rate": 64.0})
    assert found["own_cpu_ms_per_verified_call"] == 20.0
    assert found["own_cpu_ms_per_verified_call_full_tables"] == 22.0
    assert found["cpu_growth_ratio"] == 1.1
    assert found["ratio_vs_baseline"] == 0.75
    assert found["last_key_to_visible_p99_ms"] == 10.0
    assert found["terminal_to_webhook_p99_ms"] == 50.0
    verdicts = {name: t["verdict"] for name, t in found["targets"].items()}
    assert verdicts == {
        "own_cpu_ms_per_verified_call": "missed",
        # the bounds themselves are met
        "cpu_growth_ratio": "met",
        "ratio_vs_baseline": "met",
        "last_key_to_visible_p99_ms": "met",
        "terminal_to_webhook_p99_ms": "met",
    }
    assert found["targets"]["own_cpu_ms_per_verified_call"]["target"] == "<= 15"


def test_summary_without_steady_steps_measures_nothing_but_the_ratio() -> None:
    found = report.summarize(None, None, {"max_sustained_rate": 16.0}, {"max_sustained_rate": None})
    assert found["ratio_vs_baseline"] is None
    assert {t["verdict"] for t in found["targets"].values()} == {"not measured"}


@pytest.mark.parametrize(
    ("value", "comparison", "bound", "expected"),
    [
        (15.0, "<=", 15.0, "met"),
        (15.1, "<=", 15.0, "missed"),
        (0.74, ">=", 0.75, "missed"),
        (0.75, ">=", 0.75, "met"),
        (None, "<=", 1.0, "not measured"),
    ],
)
def test_verdict(value: float | None, comparison: str, bound: float, expected: str) -> None:
    assert report.verdict(value, comparison, bound) == expected


def test_report_md_opens_with_the_targets() -> None:
    step = report.Step("ivr-auth", 4.0, 5.0, 20, 4.0, 20, {}, 30, latencies={"request_to_call": [0.1]}, verified=18)
    built = report.build({"date": "2026-12-06", "machine": "m", "note": "n"}, [step], [], {}, (window(), window()))
    text = report.markdown(built)
    assert "## Summary" in text
    assert (
        "| own CPU per verified call, ms (API + controller + their Postgres backends) | 20.0 | <= 15 | missed |" in text
    )
    assert text.index("## Summary") < text.index("highest sustained rate (verifications/s")


def test_the_backends_share_is_not_counted_twice_in_others() -> None:
    step = report.Step(
        "ivr-auth", 4.0, 5.0, 20, 4.0, 20, {}, 30, offer_seconds=10.0,
        offer_cpu_seconds={"postgres": 2.0, "postgres:api": 1.0, "api": 1.0, report.MACHINE: 5.0},
    )  # fmt: skip
    assert step.core_share("others") == 0.2


async def test_the_bench_reads_the_ari_requests_a_process_exposes() -> None:
    before = dict(ari_client.REQUESTS)
    ari_client.REQUESTS["POST"] += 3
    try:
        text = (await metrics.Metrics(None).exposition()).decode()
    finally:
        ari_client.REQUESTS.clear()
        ari_client.REQUESTS.update(before)
    found = {method: int(float(n)) for method, n in observe.ARI_REQUESTS.findall(text)}
    assert found["POST"] == before.get("POST", 0) + 3
    assert observe.difference({"controller": {"POST": 10, "GET": 2}}, {"controller": {"POST": 4}}) == {
        "controller": {"POST": 6, "GET": 2}
    }
    assert observe.difference(None, {}) is None
