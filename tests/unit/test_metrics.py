"""The metric families built from a database snapshot, the in-process
counters, and a scrape that still answers when Postgres does not."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from ivr_auth import metrics
from ivr_auth.store import database, gauges

SNAPSHOT = gauges.Snapshot(
    requests_in_progress={("dtmf", "queued"): 3, ("voice", "calling"): 2},
    queue_depth=3,
    queue_oldest_age_seconds=12.5,
    calls_in_progress={("pbx1", "main"): 4},
    webhooks_pending=1,
    totals={
        "requests_created": {("dtmf",): 9},
        "request_transitions": {("dtmf", "queued"): 10, ("dtmf", "verified"): 5},
        "dial_outcomes": {("busy", "17"): 1, ("verified", "16"): 5},
        "webhooks": {("delivered",): 7},
    },
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_families_of_a_snapshot() -> None:
    got = samples(b"".join(generate_latest_of(metrics.families(SNAPSHOT))).decode())
    assert got[("ivr_auth_database_up", ())] == 1
    assert got[("ivr_auth_requests_in_progress", (("method", "dtmf"), ("status", "queued")))] == 3
    assert got[("ivr_auth_requests_in_progress", (("method", "voice"), ("status", "calling")))] == 2
    assert got[("ivr_auth_queue_depth", ())] == 3
    assert got[("ivr_auth_queue_oldest_age_seconds", ())] == 12.5
    assert got[("ivr_auth_calls_in_progress", (("node", "pbx1"), ("trunk", "main")))] == 4
    # Totals are counters: every method and webhook result from the start, at 0 when none yet.
    assert got[("ivr_auth_requests_created_total", (("method", "dtmf"),))] == 9
    assert got[("ivr_auth_requests_created_total", (("method", "inbound"),))] == 0
    assert got[("ivr_auth_request_transitions_total", (("method", "dtmf"), ("status", "verified")))] == 5
    assert got[("ivr_auth_dial_outcomes_total", (("cause", "17"), ("outcome", "busy")))] == 1
    assert got[("ivr_auth_webhook_deliveries_pending", ())] == 1
    assert got[("ivr_auth_webhook_deliveries_total", (("result", "delivered"),))] == 7
    assert got[("ivr_auth_webhook_deliveries_total", (("result", "given_up"),))] == 0


def generate_latest_of(families: list[Any]) -> list[bytes]:
    """The text format of ``families``, as a scrape would show them."""
    registry = CollectorRegistry()

    class _Fixed(Collector):
        def collect(self) -> Any:
            return iter(families)

    registry.register(_Fixed())
    return [generate_latest(registry)]


def test_without_a_snapshot_only_database_up_0() -> None:
    (only,) = metrics.families(None)
    assert only.name == "ivr_auth_database_up"
    assert only.samples[0].value == 0


async def test_in_process_counters_are_exposed() -> None:
    m = metrics.Metrics(None)
    m.created("dtmf")
    m.created("dtmf")
    m.refused("requests_per_minute")
    got = samples((await m.exposition()).decode())
    assert got[("ivr_auth_api_verifications_total", (("method", "dtmf"),))] == 2
    # Every method is there from the start, so that rate() sees its first one.
    assert got[("ivr_auth_api_verifications_total", (("method", "inbound"),))] == 0
    assert got[("ivr_auth_api_refusals_total", (("reason", "requests_per_minute"),))] == 1
    assert not any(name == "ivr_auth_database_up" for name, _ in got)


async def test_a_database_that_is_down_gives_database_up_0() -> None:
    # Never opened: every statement is StoreUnavailable.
    down = database.Database("postgresql://db.invalid/ivr_auth")
    m = metrics.Metrics(gauges.Gauges(down))
    m.created("voice")
    got = samples((await m.exposition()).decode())
    assert got[("ivr_auth_database_up", ())] == 0
    assert got[("ivr_auth_api_verifications_total", (("method", "voice"),))] == 1
    assert not any(name == "ivr_auth_requests_in_progress" for name, _ in got)


async def test_latency_histograms_count_by_method() -> None:
    m = metrics.Metrics(None)
    m.invited("dtmf", 0.4)
    m.result("dtmf", 12.0)
    m.result("inbound", -1.0)  # clocks apart: counted, as 0
    got = samples((await m.exposition()).decode())
    assert got[("ivr_auth_accept_to_invite_seconds_count", (("method", "dtmf"),))] == 1
    assert got[("ivr_auth_accept_to_invite_seconds_bucket", (("le", "0.5"), ("method", "dtmf")))] == 1
    assert got[("ivr_auth_accept_to_invite_seconds_count", (("method", "voice"),))] == 0
    assert ("ivr_auth_accept_to_invite_seconds_count", (("method", "inbound"),)) not in got
    assert got[("ivr_auth_answer_to_result_seconds_count", (("method", "dtmf"),))] == 1
    assert got[("ivr_auth_answer_to_result_seconds_sum", (("method", "inbound"),))] == 0


async def test_webhook_attempts_by_result_and_delivery_latency() -> None:
    m = metrics.Metrics(None)
    m.webhook_attempt("failed")
    m.webhook_attempt("delivered", 3.0)
    m.webhook_attempt("given_up")
    got = samples((await m.exposition()).decode())
    assert {r: got[("ivr_auth_webhook_attempts_total", (("result", r),))] for r in metrics.WEBHOOK_RESULTS} == {
        "delivered": 1,
        "failed": 1,
        "given_up": 1,
    }
    assert got[("ivr_auth_result_to_webhook_seconds_count", ())] == 1
    assert got[("ivr_auth_result_to_webhook_seconds_sum", ())] == 3.0


async def test_ari_connection_gauge_and_reconnects() -> None:
    m = metrics.Metrics(None)
    m.ari_connection("pbx1", up=False)
    got = samples((await m.exposition()).decode())
    assert got[("ivr_auth_ari_connected", (("node", "pbx1"),))] == 0
    assert got[("ivr_auth_ari_reconnects_total", (("node", "pbx1"),))] == 0
    m.ari_connection("pbx1", up=True)  # the first connect is no reconnect
    m.ari_connection("pbx1", up=False)
    m.ari_connection("pbx1", up=True, reconnect=True)
    got = samples((await m.exposition()).decode())
    assert got[("ivr_auth_ari_connected", (("node", "pbx1"),))] == 1
    assert got[("ivr_auth_ari_reconnects_total", (("node", "pbx1"),))] == 1


async def test_api_errors_counted_under_a_fixed_set_of_reasons() -> None:
    m = metrics.Metrics(None)
    for status in (401, 409, 422, 400, 418):
        m.api_error(status)
    got = samples((await m.exposition()).decode())
    reasons = {
        dict(labels)["reason"]: v
        for name, labels in got
        if name == "ivr_auth_api_refusals_total"
        for v in [got[(name, labels)]]
    }
    assert reasons == {"unauthorized": 1, "conflict": 1, "invalid": 2, "other": 1}
