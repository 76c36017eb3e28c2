"""GET /metrics served for real against the real Postgres, parsed with
prometheus-client's own text-format parser."""

from __future__ import annotations

from collections.abc import AsyncIterator

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ivr_auth import config, models
from ivr_auth import store as store_mod
from tests.integration.conftest import Client, Conn, served

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# Three requests a minute per tenant: the fourth is refused.
CFG = config.from_mapping({"limits": {"requests_per_minute": 3, "sends_per_phone": 10_000}})
JP_MOBILE = "+819012345678"


@pytest.fixture
async def client(store: store_mod.Store, tenant: tuple[models.Tenant, str], db: Conn) -> AsyncIterator[Client]:
    async with served(CFG, store, tenant, db) as client:
        yield client


async def scrape(client: Client) -> Samples:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == prometheus_client.CONTENT_TYPE_LATEST
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(await response.text())
        for s in family.samples
    }


def requests(samples: Samples, method: str, status: str, name: str = "ivr_auth_requests_in_progress") -> float:
    return samples.get((name, (("method", method), ("status", status))), 0)


def delta(before: Samples, after: Samples, key: tuple[str, tuple[tuple[str, str], ...]]) -> float:
    return after.get(key, 0) - before.get(key, 0)


async def test_scrape_counts_what_was_created(client: Client, tenant: tuple[models.Tenant, str]) -> None:
    auth = {"Authorization": f"Bearer {tenant[1]}"}
    before = await scrape(client)
    assert before[("ivr_auth_database_up", ())] == 1
    for method in ("dtmf", "dtmf", "voice"):
        response = await client.post("/v1/verifications", json={"phone": JP_MOBILE, "method": method}, headers=auth)
        assert response.status == 201, await response.text()
    refused = await client.post("/v1/verifications", json={"phone": JP_MOBILE, "method": "dtmf"}, headers=auth)
    assert refused.status == 429

    after = await scrape(client)
    assert after[("ivr_auth_database_up", ())] == 1
    assert after[("ivr_auth_queue_depth", ())] - before[("ivr_auth_queue_depth", ())] == 3
    assert after[("ivr_auth_queue_oldest_age_seconds", ())] >= 0
    assert requests(after, "dtmf", "queued") - requests(before, "dtmf", "queued") == 2
    assert requests(after, "voice", "queued") - requests(before, "voice", "queued") == 1
    # The totals every process shares, kept by triggers.
    assert delta(before, after, ("ivr_auth_requests_created_total", (("method", "dtmf"),))) == 2
    assert delta(before, after, ("ivr_auth_requests_created_total", (("method", "voice"),))) == 1
    entered = "ivr_auth_request_transitions_total"
    assert requests(after, "dtmf", "queued", entered) - requests(before, "dtmf", "queued", entered) == 2
    # This process's counters: a fresh Metrics per app.
    assert after[("ivr_auth_api_verifications_total", (("method", "dtmf"),))] == 2
    assert after[("ivr_auth_api_verifications_total", (("method", "voice"),))] == 1
    assert after[("ivr_auth_api_verifications_total", (("method", "inbound"),))] == 0
    assert after[("ivr_auth_api_refusals_total", (("reason", "requests_per_minute"),))] == 1
    assert ("ivr_auth_webhook_deliveries_pending", ()) in after
    for result in ("delivered", "given_up"):
        assert ("ivr_auth_webhook_deliveries_total", (("result", result),)) in after
    # No label ever carries the phone number.
    assert not any("9012345678" in value for _, labels in after for _, value in labels)


async def test_one_statement_changing_many_requests_counts_each(
    client: Client, tenant: tuple[models.Tenant, str], db: Conn
) -> None:
    auth = {"Authorization": f"Bearer {tenant[1]}"}
    for _ in range(3):
        response = await client.post("/v1/verifications", json={"phone": JP_MOBILE, "method": "dtmf"}, headers=auth)
        assert response.status == 201
    canceled = ("ivr_auth_request_transitions_total", (("method", "dtmf"), ("status", "canceled")))
    before = await scrape(client)
    # As the reaper expires queued requests: one UPDATE for all of them.
    await db.execute("UPDATE verifications SET status = 'canceled' WHERE tenant_id = %s", [tenant[0].id])
    await db.execute("UPDATE verifications SET status = 'canceled' WHERE tenant_id = %s", [tenant[0].id])
    assert delta(before, await scrape(client), canceled) == 3


async def test_scrape_needs_no_api_key(client: Client) -> None:
    response = await client.get("/metrics")
    assert response.status == 200


async def test_calls_in_progress_and_dial_outcomes(client: Client, tenant: tuple[models.Tenant, str], db: Conn) -> None:
    auth = {"Authorization": f"Bearer {tenant[1]}"}
    response = await client.post("/v1/verifications", json={"phone": JP_MOBILE, "method": "dtmf"}, headers=auth)
    verification_id = (await response.json())["id"]
    node, trunk = f"node-{verification_id[:8]}", "metrics-trunk"
    before = await scrape(client)
    busy = ("ivr_auth_dial_outcomes_total", (("cause", "17"), ("outcome", "busy")))
    calling = ("ivr_auth_request_transitions_total", (("method", "dtmf"), ("status", "calling")))
    await db.execute("UPDATE verifications SET status = 'calling' WHERE id = %s", [verification_id])
    await db.execute(
        "INSERT INTO call_attempts (verification_id, attempt, controller, node, trunk, channel_id, ended_at, outcome,"
        " cause) VALUES (%(v)s, 1, 'c', %(node)s, %(trunk)s, %(c1)s, now(), 'busy', 17),"
        " (%(v)s, 2, 'c', %(node)s, %(trunk)s, %(c2)s, NULL, NULL, NULL)",
        {
            "v": verification_id,
            "c1": f"{verification_id}-1",
            "c2": f"{verification_id}-2",
            "node": node,
            "trunk": trunk,
        },
    )
    after = await scrape(client)
    assert after[("ivr_auth_calls_in_progress", (("node", node), ("trunk", trunk)))] == 1
    assert delta(before, after, busy) == 1
    assert delta(before, after, calling) == 1
    # The second call ends: counted once, however often its row is written after.
    rejected = ("ivr_auth_dial_outcomes_total", (("cause", "21"), ("outcome", "rejected")))
    await db.execute(
        "UPDATE call_attempts SET ended_at = now(), outcome = 'rejected', cause = 21 WHERE channel_id = %s",
        [f"{verification_id}-2"],
    )
    await db.execute(
        "UPDATE call_attempts SET ended_at = now(), cause_txt = 'again' WHERE channel_id = %s",
        [f"{verification_id}-2"],
    )
    await db.execute("UPDATE verifications SET status = 'calling' WHERE id = %s", [verification_id])
    last = await scrape(client)
    assert delta(before, last, rejected) == 1
    assert delta(before, last, busy) == 1
    assert delta(before, last, calling) == 1  # the same status again is not a transition
    assert ("ivr_auth_calls_in_progress", (("node", node), ("trunk", trunk))) not in last


def refusals(samples: Samples) -> dict[str, float]:
    return {
        dict(labels)["reason"]: value
        for (name, labels), value in samples.items()
        if name == "ivr_auth_api_refusals_total"
    }


async def test_refusals_count_unauthorized_and_invalid_and_a_limit_once(
    client: Client, tenant: tuple[models.Tenant, str]
) -> None:
    auth = {"Authorization": f"Bearer {tenant[1]}"}
    wrong = await client.post(
        "/v1/verifications", json={"phone": JP_MOBILE, "method": "dtmf"}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status == 401
    invalid = await client.post("/v1/verifications", json={"phone": "not a phone", "method": "dtmf"}, headers=auth)
    assert invalid.status == 422
    for _ in range(3):
        created = await client.post("/v1/verifications", json={"phone": JP_MOBILE, "method": "dtmf"}, headers=auth)
        assert created.status == 201, await created.text()
    limited = await client.post("/v1/verifications", json={"phone": JP_MOBILE, "method": "dtmf"}, headers=auth)
    assert limited.status == 429

    assert refusals(await scrape(client)) == {"unauthorized": 1, "invalid": 1, "requests_per_minute": 1}
