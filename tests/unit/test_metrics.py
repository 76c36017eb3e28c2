"""The metric families built from a database snapshot, the in-process
counters, and a scrape that still answers when Postgres does not."""

from __future__ import annotations

from typing import Any, cast

from prometheus_client.parser import text_string_to_metric_families

from ivr_auth import errors, metrics
from ivr_auth.store import base, gauges

SNAPSHOT = gauges.Snapshot(
    requests={("dtmf", "queued"): 3, ("voice", "verified"): 2},
    queue_depth=3,
    queue_oldest_age_seconds=12.5,
    calls_in_progress={("pbx1", "main"): 4},
    dial_outcomes={("busy", "17"): 1, ("answered", "16"): 5},
    webhooks_pending=1,
    webhooks_delivered=7,
    webhooks_given_up=2,
    webhook_attempts=11,
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_families_of_a_snapshot() -> None:
    got = {f.name: f for f in metrics.families(SNAPSHOT)}
    assert got["ivr_auth_database_up"].samples[0].value == 1
    assert {(s.labels["method"], s.labels["status"]): s.value for s in got["ivr_auth_requests"].samples} == {
        ("dtmf", "queued"): 3,
        ("voice", "verified"): 2,
    }
    assert got["ivr_auth_queue_depth"].samples[0].value == 3
    assert got["ivr_auth_queue_oldest_age_seconds"].samples[0].value == 12.5
    assert got["ivr_auth_calls_in_progress"].samples[0].labels == {"node": "pbx1", "trunk": "main"}
    assert {s.labels["state"]: s.value for s in got["ivr_auth_webhook_deliveries"].samples} == {
        "pending": 1,
        "delivered": 7,
        "given_up": 2,
    }
    assert got["ivr_auth_webhook_delivery_attempts"].samples[0].value == 11


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


class _Down(base.Base):
    def __init__(self) -> None:
        pass

    def connection(self) -> Any:
        raise errors.StoreUnavailable("database unavailable: test")


async def test_a_database_that_is_down_gives_database_up_0() -> None:
    m = metrics.Metrics(cast(base.Base, _Down()))
    m.created("voice")
    got = samples((await m.exposition()).decode())
    assert got[("ivr_auth_database_up", ())] == 0
    assert got[("ivr_auth_api_verifications_total", (("method", "voice"),))] == 1
    assert not any(name == "ivr_auth_requests" for name, _ in got)
