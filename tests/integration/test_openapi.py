"""The live API against its OpenAPI document: schemathesis generates
requests from the document (valid ones and invalid ones), sends them to the
real application on a real port backed by the real Postgres, and checks
every answer: never a 5xx, a documented status, the documented content type,
headers and body; and data the document calls invalid is refused.

What the generated creates leave queued is deleted with the tenant at the
end: a controller running against the same database later must never dial
it (none runs during this test).
No webhook leaves this test whatever ``callback_url`` was generated: only a
controller sends them, and none runs here."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok

from ivr_auth import config, models
from ivr_auth import store as store_mod
from ivr_auth.api import app as api_app
from ivr_auth.api import openapi
from tests.support import served

pytestmark = pytest.mark.integration

Case = schemathesis.Case[schemathesis.APIOperation[Any, Any, Any, Any]]

# A published number, so that inbound requests are made (and their fields shown).
CFG = config.from_mapping({"inbound": {"numbers": ["050-1234-5678"]}})
# Per operation and generation mode (valid data, invalid data).
MAX_EXAMPLES = 25
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    # The document is no looser than the server: what it calls invalid is refused.
    schemathesis.checks.negative_data_rejection,
]
POSITIVE = schemathesis.GenerationMode.POSITIVE
NEGATIVE = schemathesis.GenerationMode.NEGATIVE
# Random strings are hardly ever phone numbers: valid data also gets real
# ones, in both formats, and one from a country this tenant may not call.
PHONES = ("+819012345601", "+818012345603", "090-1234-5607", "03-1234-5605", "06-1234-5606", "+14155550100")
# Low enough that the fuzzing meets the limit (429) too; the per-minute
# limit is raised out of the way of the requests the test makes itself.
SENDS_PER_PHONE = 3
# Seconds a generated GET ...?wait= may wait (25 examples of up to 60 s would be the test's whole time).
MAX_WAIT = 0.2
REQUESTS_PER_MINUTE = 1000


@pytest.fixture
async def base_url(store: store_mod.Store) -> AsyncIterator[str]:
    """The application on a port of its own, served as the runtime serves it
    (schemathesis speaks real HTTP)."""
    async with served.on_port(api_app.make_app(CFG, store, {"postgres": store.ping})) as url:
        yield url


@pytest.fixture
async def api_key(store: store_mod.Store, tenant: tuple[models.Tenant, str]) -> AsyncIterator[str]:
    """The fresh tenant's key (Japan only, few calls per number, many
    requests a minute); afterwards the tenant is deleted, and with it every
    request it made."""
    tenant_id = tenant[0].id
    await store.db.one(
        "UPDATE tenants SET allowed_countries = '{JP}', sends_per_phone = %(sends)s, requests_per_minute = %(rpm)s"
        " WHERE id = %(id)s",
        {"sends": SENDS_PER_PHONE, "rpm": REQUESTS_PER_MINUTE, "id": tenant_id},
    )
    try:
        yield tenant[1]
    finally:
        await store.db.one("DELETE FROM tenants WHERE id = %(id)s", {"id": tenant_id})


async def test_openapi_json_is_the_committed_document(base_url: str) -> None:
    response = await asyncio.to_thread(requests.get, f"{base_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Cache-Control"] == openapi.CACHE_CONTROL
    assert response.content == openapi.raw()
    assert json.loads(response.content) == openapi.document()


async def test_the_api_conforms_to_its_document(base_url: str, api_key: str) -> None:
    failures = await asyncio.to_thread(_fuzz, base_url, api_key)
    assert not failures, "\n\n".join(failures)


def _fuzz(base_url: str, api_key: str) -> list[str]:
    """Every operation in both modes; the failures found, one per run."""
    auth = {"Authorization": f"Bearer {api_key}"}
    schema = schemathesis.openapi.from_url(
        f"{base_url}/openapi.json", config=schemathesis.Config.from_dict({"base-url": base_url, "headers": auth})
    )
    failures: list[str] = []
    with requests.Session() as session:
        phones = iter(f"+81901234{n:04d}" for n in range(8000, 10000))  # none of PHONES
        for result in schema.get_all_operations():
            if not isinstance(result, Ok):
                failures.append(f"the document has an operation schemathesis cannot use: {result.err()}")
                continue
            operation = result.ok()
            for mode in (POSITIVE, NEGATIVE):
                strategy = operation.as_strategy(generation_mode=mode)
                if mode is POSITIVE:
                    # Fresh ones each time: cancel and check end the requests they meet.
                    ids = _requests_in_every_state(session, base_url, auth, phones)
                    strategy = _with_known_values(strategy, ids)
                try:
                    _as_test(strategy, session)()
                except hypothesis.errors.Unsatisfiable:
                    # Nothing in the operation can be made invalid (no parameters, no body).
                    assert mode is NEGATIVE, operation.label
                # What schemathesis found (a FailureGroup is a BaseExceptionGroup) or a
                # transport error: either names the request and the answer.
                except (FailureGroup, Exception) as exc:
                    failures.append(f"{operation.label} ({mode.value}):\n{exc}")
    return failures


def _requests_in_every_state(
    session: requests.Session, base_url: str, auth: dict[str, str], phones: Iterator[str]
) -> list[str]:
    """Ids of requests the tenant owns: open (dtmf, voice, inbound), canceled
    (with a webhook waiting in the outbox), verified; random ids only ever
    meet a 404."""

    def create(body: dict[str, str | bool]) -> str:
        response = session.post(f"{base_url}/v1/verifications", json=body, headers=auth, timeout=10)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    open_dtmf = create({"phone": next(phones), "method": "dtmf"})
    open_voice = create({"phone": next(phones), "method": "voice", "language": "en"})
    open_inbound = create({"phone": next(phones), "method": "inbound", "ask_code": True})
    # Never sent: no controller runs here.
    canceled = create({"phone": next(phones), "method": "dtmf", "callback_url": "http://127.0.0.1:9/hook"})
    verified = create({"phone": next(phones), "method": "voice", "code": "2468"})
    base = f"{base_url}/v1/verifications"
    assert session.post(f"{base}/{canceled}/cancel", headers=auth, timeout=10).status_code == 200
    checked = session.post(f"{base}/{verified}/check", json={"code": "2468"}, headers=auth, timeout=10)
    assert checked.json()["verified"] is True
    return [open_dtmf, open_voice, open_inbound, canceled, verified]


def _with_known_values(strategy: st.SearchStrategy[Case], ids: Sequence[str]) -> st.SearchStrategy[Case]:
    """Valid cases, some with the id of a request that exists and some with a
    real phone number. Valid data stays valid, so what schemathesis recorded
    about each case (positive, which parts) stays true."""

    def use(drawn: tuple[Case, str | None, str | None]) -> Case:
        case, known_id, phone = drawn
        if known_id is not None and "id" in (case.path_parameters or {}):
            case.path_parameters = {**(case.path_parameters or {}), "id": known_id}
        if phone is not None and isinstance(case.body, dict) and "phone" in case.body:
            case.body = {**case.body, "phone": phone}
        if isinstance(case.query, dict) and isinstance(case.query.get("wait"), int | float):
            # Still valid, but short: a long poll on an open request waits it out.
            case.query = {**case.query, "wait": min(case.query["wait"], MAX_WAIT)}
        return case

    return st.tuples(strategy, st.sampled_from([None, *ids]), st.sampled_from([None, *PHONES])).map(use)


def _as_test(strategy: st.SearchStrategy[Case], session: requests.Session) -> Callable[[], None]:
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        # The same requests every run, no example database, no shrinking
        # (the first failing request is reported as it was sent).
        derandomize=True,
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=strategy)
    def test(case: Case) -> None:
        case.call_and_validate(session=session, checks=CHECKS, timeout=10)

    run: Callable[[], None] = test
    return run
