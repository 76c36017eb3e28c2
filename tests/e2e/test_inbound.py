"""Inbound caller-ID verification end to end: a SIPp caller dials the test
stack's published number into Asterisk; the controller's Stasis app (or,
for the FastAGI number, Asterisk's own dialplan through AGI()) matches the
caller ID against the request created over HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ivr_auth import connections, models, phone, states
from ivr_auth import store as store_mod
from ivr_auth.store import tenants
from ivr_auth_devkit import sipp, stack
from tests.e2e.conftest import Api, Starter, service_config

pytestmark = pytest.mark.e2e

REGISTERED = "090-1234-5678"
TERMINAL = {s.value for s in states.TERMINAL}
# The test stack's published numbers (tests/conftest.py): one served by the
# Stasis app, one routed by the dialplan to the FastAGI example context.
STASIS_DID = "05012345678"
AGI_DID = "05012340000"


def caller(frm: str, did: str = STASIS_DID, **kwargs: Any) -> sipp.Caller:
    cfg = service_config()
    return sipp.Caller(target_port=cfg.stack.sip_port, did=did, caller=frm, **kwargs)


def statuses(log: dict[str, Any]) -> list[str]:
    return [e["to_status"] for e in log["events"] if e["type"] == "status"]


async def ended_calls(api: Api, verification_id: str) -> list[dict[str, Any]]:
    """The request's calls once each has its outcome recorded: the caller's
    SIPp may finish a moment before the controller writes it, but no more
    (a call whose end the controller does not hear of is written late)."""
    deadline = time.monotonic() + 3
    while True:
        calls: list[dict[str, Any]] = (await api.events(verification_id))["calls"]
        if all(c["ended_at"] is not None for c in calls):
            return calls
        assert time.monotonic() < deadline, f"calls not recorded as ended 3 s after the caller's end: {calls}"
        await asyncio.sleep(0.1)


async def create_inbound(api: Api, **fields: Any) -> dict[str, Any]:
    return await api.create(REGISTERED, method="inbound", language="en", **fields)


@pytest.mark.parametrize("presented", ["+819012345678", "09012345678"], ids=["e164", "national"])
async def test_call_from_the_registered_phone_verifies(api: Api, start_service: Starter, presented: str) -> None:
    await start_service(api=False)
    created = await create_inbound(api)
    assert created["inbound_number"] == "+815012345678"
    assert created["inbound_number_display"] == "050-1234-5678"
    async with caller(presented) as phone_:
        done = await api.wait_for(created["id"], TERMINAL, timeout=30)
        result = await phone_.wait()
    assert done["status"] == "verified", done
    assert done["reason"] == "caller_id_matched"
    # Answered, heard the confirmation, and was hung up on by us.
    assert result.ok, result.errors_log
    assert statuses(await api.events(created["id"])) == ["queued", "verified"]
    (call,) = await ended_calls(api, created["id"])
    assert call["outcome"] == "verified"
    assert call["answered_at"] is not None


@pytest.mark.parametrize("presented", ["09087654321", "anonymous"], ids=["other_number", "withheld"])
async def test_other_and_withheld_callers_verify_nothing(api: Api, start_service: Starter, presented: str) -> None:
    await start_service(api=False)
    created = await create_inbound(api)
    async with caller(presented) as phone_:
        # Answered, told why, hung up on.
        result = await phone_.wait()
    assert result.ok, result.errors_log
    assert result.final_status == 200
    after = await api.get(created["id"])
    assert after["status"] == "queued"
    assert (await api.events(created["id"]))["calls"] == []


async def test_untrusted_trunk_ignores_p_asserted_identity(api: Api, start_service: Starter) -> None:
    # The test stack's trunk is not trusted: its P-Asserted-Identity is the
    # caller's own claim, and From is what counts.
    assert not service_config().trunk.trusted
    await start_service(api=False)
    created = await create_inbound(api)
    async with caller("09087654321", pai="+819012345678") as phone_:
        result = await phone_.wait()
    assert result.ok, result.errors_log
    assert (await api.get(created["id"]))["status"] == "queued"


async def test_trusted_trunk_takes_the_caller_id_from_p_asserted_identity(
    api: Api, start_service: Starter, local_stack: connections.Connections
) -> None:
    # Re-render the stack's Asterisk with the trunk trusted (a reload), and
    # put it back afterwards whatever happens.
    trusted = service_config(trunk={"trusted": True})
    await stack.up(trusted)
    try:
        await start_service(api=False)
        created = await create_inbound(api)
        # From says another number; the carrier's asserted identity is the registered one.
        async with caller("09087654321", pai="+819012345678") as phone_:
            done = await api.wait_for(created["id"], TERMINAL, timeout=30)
            result = await phone_.wait()
    finally:
        await stack.up(service_config())
    assert done["status"] == "verified", done
    assert result.ok, result.errors_log


async def test_call_that_must_also_key_the_code(api: Api, start_service: Starter) -> None:
    await start_service(api=False)
    created = await create_inbound(api, ask_code=True, code="246810")
    async with caller("09012345678", keys="135791#,,,246810#") as phone_:
        done = await api.wait_for(created["id"], TERMINAL, timeout=40)
        result = await phone_.wait()
    assert done["status"] == "verified", done
    assert done["reason"] == "code_matched"
    assert done["code_attempts"] == 1
    assert done["answered_by"] == "human"
    assert result.ok, result.errors_log
    assert statuses(await api.events(created["id"])) == ["queued", "in_call", "verified"]


async def test_missed_call_mode_rejects_unanswered(
    api: Api, start_service: Starter, store: store_mod.Store, tenant: tuple[models.Tenant, str]
) -> None:
    await store.tenants.update(tenant[0].name, tenants.TenantChanges(missed_call=True))
    await start_service(api=False)
    created = await create_inbound(api)
    async with caller("09012345678", expect="reject") as phone_:
        result = await phone_.wait()
    assert result.ok, result.errors_log
    # Never answered, so the caller pays nothing. Asterisk sends cause 21
    # (call rejected) as 403 Forbidden.
    assert result.final_status == 403
    done = await api.get(created["id"])
    assert done["status"] == "verified"
    (call,) = await ended_calls(api, created["id"])
    assert call["answered_at"] is None
    assert call["outcome"] == "rejected_verified"


async def test_no_controller_refuses_the_call_unanswered(api: Api) -> None:
    # Nobody serves the inbound app: the dialplan refuses with a temporary
    # failure rather than leaving the caller ringing or billing them.
    created = await create_inbound(api)
    async with caller("09012345678", expect="reject") as phone_:
        result = await phone_.wait()
    assert result.ok, result.errors_log
    assert result.final_status is not None
    assert result.final_status >= 400
    assert (await api.get(created["id"]))["status"] == "queued"


# --- FastAGI: the same verification from Asterisk's own dialplan -----------------------


async def agi_tenant(store: store_mod.Store, tenant: tuple[models.Tenant, str]) -> None:
    e164 = phone.lenient_e164(AGI_DID, "JP")
    assert e164 is not None
    await store.tenants.update(tenant[0].name, tenants.TenantChanges(inbound_numbers=(e164,)))


async def test_fastagi_route_verifies_the_caller(
    api: Api, start_service: Starter, store: store_mod.Store, tenant: tuple[models.Tenant, str]
) -> None:
    await agi_tenant(store, tenant)
    # No Stasis app is involved: a FastAGI server alone, no controller.
    await start_service(api=False, dialer=False, fastagi=True)
    created = await create_inbound(api)
    assert created["inbound_number"] == "+815012340000"
    async with caller("+819012345678", did=AGI_DID) as phone_:
        done = await api.wait_for(created["id"], TERMINAL, timeout=30)
        result = await phone_.wait()
    assert done["status"] == "verified", done
    assert result.ok, result.errors_log
    events = (await api.events(created["id"]))["events"]
    assert events[-1]["detail"]["source"] == "agi"


async def test_fastagi_route_with_the_code_keyed_in_the_dialplan(
    api: Api, start_service: Starter, store: store_mod.Store, tenant: tuple[models.Tenant, str]
) -> None:
    await agi_tenant(store, tenant)
    await start_service(api=False, dialer=False, fastagi=True)
    created = await create_inbound(api, ask_code=True, code="4321")
    # Read() takes exactly code-length digits: a wrong one, then the right one.
    async with caller("09012345678", did=AGI_DID, keys="9999,,,,,,,4321") as phone_:
        done = await api.wait_for(created["id"], TERMINAL, timeout=40)
        result = await phone_.wait()
    assert done["status"] == "verified", (done, await api.events(created["id"]))
    assert done["code_attempts"] == 1
    assert result.ok, result.errors_log
    sources = {e["detail"].get("source") for e in (await api.events(created["id"]))["events"]}
    assert "agi" in sources


async def test_fastagi_route_withheld_caller(
    api: Api, start_service: Starter, store: store_mod.Store, tenant: tuple[models.Tenant, str]
) -> None:
    await agi_tenant(store, tenant)
    await start_service(api=False, dialer=False, fastagi=True)
    created = await create_inbound(api)
    async with caller("anonymous", did=AGI_DID) as phone_:
        result = await phone_.wait()
    assert result.ok, result.errors_log
    assert (await api.get(created["id"]))["status"] == "queued"
