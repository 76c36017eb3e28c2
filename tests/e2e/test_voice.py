"""Voice OTP end to end: the controller calls a SIPp handset, which presses
a key and listens to the code; the backend then checks the code the person
typed into the web page."""

from __future__ import annotations

from typing import Any

import pytest

from ivr_auth import models, states
from ivr_auth import store as store_mod
from ivr_auth.store import tenants
from ivr_auth_devkit import sipp
from tests.e2e.conftest import Api, Starter, service_config

pytestmark = pytest.mark.e2e

PHONE = "090-1234-5678"
TERMINAL = {s.value for s in states.TERMINAL}
SETTLED = TERMINAL | {"delivered"}
VOICE: dict[str, Any] = {"voice_key_timeout_seconds": 2.0}


def handset(**kwargs: Any) -> sipp.Handset:
    cfg = service_config()
    return sipp.Handset(port=cfg.trunk.port, host=cfg.trunk.host, **kwargs)


def statuses(log: dict[str, Any]) -> list[str]:
    return [e["to_status"] for e in log["events"] if e["type"] == "status"]


async def test_code_read_out_then_checked(api: Api, start_service: Starter) -> None:
    await start_service(api=False, cfg=service_config(verification=VOICE))
    created = await api.create(PHONE, method="voice", language="en")
    assert created["method"] == "voice"
    assert created["code"].isdigit()
    async with handset(keys="1") as phone:
        delivered = await api.wait_for(created["id"], SETTLED, timeout=60)
        result = await phone.wait()
    assert delivered["status"] == "delivered", delivered
    assert delivered["delivered_at"] is not None
    assert delivered["answered_by"] == "human"  # a key was pressed
    assert result.ok, result.errors_log
    log = await api.events(created["id"])
    assert statuses(log) == ["queued", "calling", "in_call", "delivered"]
    (call,) = log["calls"]
    assert call["outcome"] == "delivered"
    # The call was long enough to have read the code twice: intro + 2 x digits.
    assert call["ended_at"] is not None

    wrong = "".join(str((int(d) + 1) % 10) for d in created["code"])
    status, body = await api.call("POST", f"/v1/verifications/{created['id']}/check", {"code": wrong})
    assert status == 200, body
    assert body["verified"] is False
    assert body["verification"]["status"] == "delivered"
    assert body["verification"]["code_attempts"] == 1

    status, body = await api.call("POST", f"/v1/verifications/{created['id']}/check", {"code": created["code"]})
    assert status == 200, body
    assert body["verified"] is True
    assert body["verification"]["status"] == "verified"


async def test_hung_up_during_read_out_is_not_delivered(api: Api, start_service: Starter) -> None:
    await start_service(api=False, cfg=service_config(verification=VOICE))
    created = await api.create(PHONE, method="voice", language="en")
    # Presses the key, then hangs up a second later: the read-out takes longer.
    async with handset(keys="1", hangup_after_ms=1000) as phone:
        done = await api.wait_for(created["id"], SETTLED, timeout=60)
        await phone.wait()
    assert done["status"] == "hung_up", done
    assert done["reason"] == "hung_up_before_end"
    assert done["delivered_at"] is None
    log = await api.events(created["id"])
    assert "delivered" not in statuses(log)
    # Not heard, so not checkable.
    status, body = await api.call("POST", f"/v1/verifications/{created['id']}/check", {"code": created["code"]})
    assert status == 409, body


async def test_no_key_pressed_nothing_is_read(api: Api, start_service: Starter) -> None:
    await start_service(api=False, cfg=service_config(verification=VOICE))
    created = await api.create(PHONE, method="voice", language="en")
    async with handset(keys="") as phone:
        done = await api.wait_for(created["id"], SETTLED, timeout=60)
        await phone.wait()
    assert done["status"] == "failed", done
    assert done["reason"] == "no_key_pressed"
    assert done["answered_by"] == "unknown"


async def test_tenant_without_the_key_hears_the_code_at_once(
    api: Api, start_service: Starter, store: store_mod.Store, tenant: tuple[models.Tenant, str]
) -> None:
    await store.tenants.update(tenant[0].name, tenants.TenantChanges(voice_require_key=False))
    await start_service(api=False, cfg=service_config(verification=VOICE))
    created = await api.create(PHONE, method="voice", language="en")
    async with handset(keys="") as phone:
        done = await api.wait_for(created["id"], SETTLED, timeout=60)
        await phone.wait()
    assert done["status"] == "delivered", done
    # Nothing showed that a person listened.
    assert done["answered_by"] == "unknown"


async def test_press_1_hears_the_code_again(api: Api, start_service: Starter) -> None:
    # A long wait for the repeat key, so that the key lands in it whatever
    # the read-out's exact length.
    await start_service(api=False, cfg=service_config(verification={**VOICE, "voice_key_timeout_seconds": 8.0}))
    created = await api.create(PHONE, method="voice", language="en", code="1234")
    # 1 to hear the code; then, after the read-out, 1 to hear it again.
    async with handset(keys="1" + "," * 11 + "1") as phone:
        await api.wait_for(created["id"], SETTLED, timeout=60)
        result = await phone.wait()
    assert result.ok, result.errors_log
    log = await api.events(created["id"])
    repeats = [e for e in log["events"] if e["type"] == "code_repeated"]
    assert [e["detail"]["repeat"] for e in repeats] == [1]
    assert statuses(log)[-1] == "delivered"


# --- answering-machine detection -------------------------------------------------------

AMD: dict[str, Any] = {**VOICE, "amd": True}


async def test_answering_machine_never_hears_the_code(api: Api, start_service: Starter) -> None:
    await start_service(api=False, cfg=service_config(verification=AMD))
    created = await api.create(PHONE, method="voice", language="en")
    assert created["max_call_attempts"] == 2
    # A long greeting, as a voicemail's: AMD's LONGGREETING (over amd.conf's
    # 1500 ms). A machine is treated like no answer, so it is called again.
    async with handset(greeting_ms=4000, calls=2) as phone:
        done = await api.wait_for(created["id"], SETTLED, timeout=60)
        result = await phone.wait()
    assert done["status"] == "no_answer", done
    assert done["reason"] == "answered_by_machine"
    assert done["answered_by"] == "machine"
    assert done["delivered_at"] is None
    assert done["call_attempts"] == 2
    assert result.successful == 2, result.errors_log
    log = await api.events(created["id"])
    assert statuses(log) == ["queued", "calling", "queued", "calling", "no_answer"]
    assert [e["detail"]["amd"]["status"] for e in log["events"] if e["from_status"] == "calling"] == ["MACHINE"] * 2
    assert [c["outcome"] for c in log["calls"]] == ["machine", "machine"]


async def test_person_detected_by_amd_hears_the_code(api: Api, start_service: Starter) -> None:
    await start_service(api=False, cfg=service_config(verification=AMD))
    created = await api.create(PHONE, method="voice", language="en")
    # "Hello?" then silence: AMD's HUMAN; then the key that asks for the code.
    async with handset(greeting_ms=500, keys="1") as phone:
        done = await api.wait_for(created["id"], SETTLED, timeout=60)
        await phone.wait()
    assert done["status"] == "delivered", done
    assert done["answered_by"] == "human"
    log = await api.events(created["id"])
    in_call = next(e for e in log["events"] if e["to_status"] == "in_call")
    assert in_call["detail"]["amd"]["status"] == "HUMAN"
