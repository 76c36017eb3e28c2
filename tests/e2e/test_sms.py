"""SMS codes end to end: the HTTP API, the store and the SMS sender of the
service, against a real SMSC (the npm ``smpp`` server of the dev kit), and
again through a full gateway in front of it (Jasmin). What the SMSC recorded
is read back over its control port: the text, the encoding, the parts, the
sender ID; its rules decide the submit's answer and the receipts."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from ivr_auth import config, connections, models, states
from ivr_auth_devkit import jasmin, sipp, stack
from ivr_auth_devkit import smsc as smsc_mod
from tests.e2e.conftest import CARRIER_FAST, Api, Starter, local_smsc_carrier, service_config, with_sms

pytestmark = pytest.mark.e2e

TERMINAL = {s.value for s in states.TERMINAL}
SETTLED = TERMINAL | {"delivered"}
SENDER_ID = "AcmeShop"
SERVICE_EN = "Acme Shop"
# 30 characters, the most the message takes: the Japanese text then needs
# more than the 70 UCS-2 units of one part.
SERVICE_JA = "株式会社アクメ通信販売オンラインストア本店営業部お客様係"
# Anything a handset would make a link of.
LINK = re.compile(r"(?i)(://|www\.|[a-z0-9-]+\.[a-z]{2,}\b)")


@dataclasses.dataclass(frozen=True)
class Gateway:
    """Where the service's SMS go: the SMPP server it binds to (``carrier``,
    an ``sms.carriers`` entry) and the SMSC at the end of the line, whose
    records the tests read."""

    tier: str
    carrier: dict[str, Any]
    smsc: smsc_mod.Smsc


@pytest.fixture(scope="module")
def jasmin_carrier(stack_config: config.Config, local_stack: connections.Connections) -> Iterator[dict[str, Any]]:
    """Jasmin in front of the test stack's SMSC, for the module (about 6 s to
    start): the ``sms.carriers`` entry that binds the service to it."""
    upstream = stack.smsc_carrier(stack_config)
    assert upstream is not None, "the test stack's SMSC is not running"
    # A message that comes while Jasmin's connector is down waits 3 s, not 30.
    gateway = jasmin.Jasmin(stack_config.run_dir / "jasmin", not_ready_retry_delay=3)
    system_id, password = "ivr-auth", secrets.token_hex(4)
    port = gateway.start(
        upstream["host"],
        upstream["port"],
        upstream["system_id"],
        upstream["password"],
        system_id=system_id,
        password=password,
    )
    try:
        yield {
            **CARRIER_FAST,
            "name": "jasmin",
            "host": gateway.host,
            "port": port,
            "system_id": system_id,
            "password": password,
        }
    finally:
        gateway.stop()


@pytest.fixture(params=["smsc", "jasmin"])
async def sms_gateway(request: pytest.FixtureRequest, smsc: smsc_mod.Smsc, stack_config: config.Config) -> Gateway:
    """``smsc``: the service binds to the npm SMSC itself. ``jasmin``: it
    binds to Jasmin, which passes each message on to the same SMSC over a
    connector of its own and the receipts back."""
    if request.param == "jasmin":
        return Gateway("jasmin", request.getfixturevalue("jasmin_carrier"), smsc)
    return Gateway("smsc", local_smsc_carrier(stack_config), smsc)


def phone_number(suffix: str) -> tuple[str, str]:
    """A Japanese mobile number ending in ``suffix`` (4 digits), as the API
    takes it and as the SMSC sees the destination (E.164 digits)."""
    return f"090-5555-{suffix}", f"81905555{suffix}"


async def sms_api(
    start_service: Starter,
    http_session: aiohttp.ClientSession,
    tenant: tuple[models.Tenant, str],
    gateway: Gateway,
    *,
    dialer: bool = False,
    **overrides: Any,
) -> Api:
    """The API and the SMS sender (and a controller with ``dialer``), sending
    through ``gateway`` with the sender ID SENDER_ID."""
    sections: dict[str, Any] = {"sms": {"service_name_en": SERVICE_EN, "service_name_ja": SERVICE_JA}}
    for section, values in overrides.items():
        sections[section] = {**sections.get(section, {}), **values}
    cfg = with_sms(service_config(**sections), [{**gateway.carrier, "source_addr": SENDER_ID}])
    rt = await start_service(dialer=dialer, sms=True, cfg=cfg)
    assert rt.http_url is not None
    return Api(http_session, rt.http_url, tenant[1])


async def set_rules(gateway: Gateway, rules: dict[str, smsc_mod.Rule]) -> None:
    await asyncio.to_thread(gateway.smsc.set_rules, rules)


async def recorded(
    gateway: Gateway,
    destination: str,
    count: int,
    *,
    timeout: float = 30,
    accepted_only: bool = False,
) -> list[smsc_mod.Message]:
    """The SMSC's records for ``destination`` once there are ``count`` (and
    after a short settle, so that one too many is seen too)."""
    deadline = time.monotonic() + timeout

    async def read() -> list[smsc_mod.Message]:
        messages = await asyncio.to_thread(gateway.smsc.messages)
        return [
            m for m in messages if m.destination_addr == destination and (m.command_status == 0 or not accepted_only)
        ]

    while True:
        found = await read()
        if len(found) >= count:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"the SMSC recorded {len(found)} message(s) to {destination} after {timeout}s")
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    return await read()


def statuses(log: dict[str, Any]) -> list[str]:
    return [e["to_status"] for e in log["events"] if e["type"] == "status"]


def channel_events(log: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in log["events"] if e["type"] == "channel"]


def at(event: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(event["at"])


async def check(api: Api, verification_id: str, code: str) -> dict[str, Any]:
    status, body = await api.call("POST", f"/v1/verifications/{verification_id}/check", {"code": code})
    assert status == 200, body
    return body


# --- one message, its text and its outcome --------------------------------------------------


async def test_english_code_sent_delivered_and_checked(
    sms_gateway: Gateway, start_service: Starter, http_session: aiohttp.ClientSession, tenant: tuple[models.Tenant, str]
) -> None:
    api = await sms_api(start_service, http_session, tenant, sms_gateway)
    phone, destination = phone_number("0001")
    created = await api.create(phone, method="sms", language="en")
    assert created["method"] == "sms"
    code = created["code"]
    done = await api.wait_for(created["id"], SETTLED, timeout=30)
    assert done["status"] == "delivered", done
    log = await api.events(created["id"])
    assert statuses(log) == ["queued", "sent", "delivered"]
    (sms,) = log["sms"]
    assert sms["parts"] == 1
    assert sms["encoding"] == "gsm7"

    (message,) = await recorded(sms_gateway, destination, 1)
    assert message.command_status == 0
    assert message.data_coding == 0  # the GSM 03.38 default alphabet
    assert message.udh is None
    assert message.esm_class & 0x40 == 0
    assert message.registered_delivery & 0x01
    assert (message.source_addr, message.source_addr_ton, message.source_addr_npi) == (SENDER_ID, 5, 0)
    assert (message.dest_addr_ton, message.dest_addr_npi) == (1, 1)
    assert message.text is not None
    assert code in message.text
    assert SERVICE_EN in message.text
    assert LINK.search(message.text) is None, message.text

    wrong = "".join(str((int(d) + 1) % 10) for d in code)
    body = await check(api, created["id"], wrong)
    assert body["verified"] is False
    body = await check(api, created["id"], code)
    assert body["verified"] is True
    assert body["verification"]["status"] == "verified"


async def test_long_japanese_text_goes_in_ucs2_parts(
    sms_gateway: Gateway, start_service: Starter, http_session: aiohttp.ClientSession, tenant: tuple[models.Tenant, str]
) -> None:
    api = await sms_api(start_service, http_session, tenant, sms_gateway)
    phone, destination = phone_number("0002")
    created = await api.create(phone, method="sms", language="ja")
    done = await api.wait_for(created["id"], SETTLED, timeout=30)
    assert done["status"] == "delivered", done  # every part's receipt said DELIVRD

    parts = await recorded(sms_gateway, destination, 2)
    total = len(parts)
    assert total >= 2
    assert all(p.data_coding == 8 for p in parts)
    assert all(p.esm_class & 0x40 for p in parts)
    headers = [p.udh for p in parts]
    assert all(h is not None for h in headers)
    concat = [h for h in headers if h is not None]
    assert len({h.reference for h in concat}) == 1
    assert {h.total for h in concat} == {total}
    assert sorted(h.sequence for h in concat) == list(range(1, total + 1))
    assert len({p.message_id for p in parts}) == total
    # Each part fits: a 6-octet header and at most 67 UCS-2 units.
    assert all(len(p.short_message) <= 140 for p in parts)
    ordered = sorted(parts, key=lambda p: p.udh.sequence if p.udh else 0)
    text = "".join(p.text or "" for p in ordered)
    assert f"【{SERVICE_JA}】" in text
    assert created["code"] in text
    assert "認証コード" in text
    log = await api.events(created["id"])
    (sms,) = log["sms"]
    assert (sms["encoding"], sms["parts"]) == ("ucs2", total)


@pytest.mark.parametrize(
    ("receipt", "status", "reason"),
    [
        ("UNDELIV", "unreachable", "sms_undeliverable"),
        ("REJECTD", "unreachable", "sms_undeliverable"),
        ("EXPIRED", "unreachable", "sms_expired"),
    ],
)
async def test_failed_receipt_ends_the_request(
    sms_gateway: Gateway,
    start_service: Starter,
    http_session: aiohttp.ClientSession,
    tenant: tuple[models.Tenant, str],
    receipt: smsc_mod.Receipt,
    status: str,
    reason: str,
) -> None:
    phone, destination = phone_number("0003")
    await set_rules(sms_gateway, {"0003": smsc_mod.Rule(receipt=receipt)})
    api = await sms_api(start_service, http_session, tenant, sms_gateway)
    created = await api.create(phone, method="sms", language="en")
    done = await api.wait_for(created["id"], SETTLED, timeout=30)
    assert (done["status"], done["reason"]) == (status, reason), done
    log = await api.events(created["id"])
    assert statuses(log) == ["queued", "sent", status]
    (message,) = await recorded(sms_gateway, destination, 1)
    assert message.command_status == 0
    # Nothing was delivered: the code cannot be checked.
    status_code, body = await api.call("POST", f"/v1/verifications/{created['id']}/check", {"code": created["code"]})
    assert status_code == 409, body


@pytest.mark.parametrize("command_status", [smsc_mod.ESME_RINVDSTADR, smsc_mod.ESME_RSUBMITFAIL])
async def test_carrier_refusing_the_submit_rejects_the_request(
    sms_gateway: Gateway,
    start_service: Starter,
    http_session: aiohttp.ClientSession,
    tenant: tuple[models.Tenant, str],
    command_status: int,
) -> None:
    """Direct: the refusal is the submit_sm_resp, and the request is rejected.
    Through Jasmin 0.11.1: Jasmin answers the service's submit_sm OK at once
    (it queues the message), and when the SMSC then refuses it, it logs the
    error and tells the client nothing, neither an error nor a receipt. The
    request can only stay ``sent`` (a fallback moves it on by its wait): the
    test holds that nothing is made up instead."""
    phone, destination = phone_number("0004")
    await set_rules(sms_gateway, {"0004": smsc_mod.Rule(submit_status=command_status)})
    api = await sms_api(start_service, http_session, tenant, sms_gateway)
    created = await api.create(phone, method="sms", language="en")
    if sms_gateway.tier == "jasmin":
        (message,) = await recorded(sms_gateway, destination, 1, timeout=30)
        assert message.command_status == command_status
        await asyncio.sleep(3)  # what Jasmin would have said would have come by now
        later = await api.get(created["id"])
        assert (later["status"], later["reason"]) == ("sent", "sms_sent"), later
        return
    done = await api.wait_for(created["id"], SETTLED, timeout=30)
    assert (done["status"], done["reason"]) == ("rejected", "sms_rejected"), done
    log = await api.events(created["id"])
    assert "sent" not in statuses(log)
    (sms,) = log["sms"]
    assert sms["command_status"] == command_status
    # Refused for good: submitted once, not retried.
    (message,) = await recorded(sms_gateway, destination, 1)
    assert message.command_status == command_status


# --- a lost connection ---------------------------------------------------------------------


async def test_lost_connection_rebinds_and_sends_each_once(
    sms_gateway: Gateway, start_service: Starter, http_session: aiohttp.ClientSession, tenant: tuple[models.Tenant, str]
) -> None:
    """Every SMPP connection into the SMSC is cut. Direct: the service's own;
    it binds again and sends the next request. Through Jasmin: Jasmin's
    connector to the SMSC (the service stays bound to Jasmin); Jasmin binds
    again after 2 s, and a message that came meanwhile waits in its queue for
    submit_retrial_delay_smppc_not_ready (3 s here) before it goes."""
    api = await sms_api(start_service, http_session, tenant, sms_gateway)
    before_phone, before_destination = phone_number("0005")
    after_phone, after_destination = phone_number("0006")
    first = await api.create(before_phone, method="sms", language="en")
    assert (await api.wait_for(first["id"], SETTLED, timeout=30))["status"] == "delivered"
    bound_before = {s.id for s in await asyncio.to_thread(sms_gateway.smsc.sessions)}
    assert bound_before

    dropped = await asyncio.to_thread(sms_gateway.smsc.drop_connections)
    assert dropped >= 1
    second = await api.create(after_phone, method="sms", language="en")
    done = await api.wait_for(second["id"], SETTLED, timeout=30 if sms_gateway.tier == "smsc" else 60)
    assert done["status"] == "delivered", done

    sessions = await asyncio.to_thread(sms_gateway.smsc.sessions)
    assert sessions
    assert {s.id for s in sessions}.isdisjoint(bound_before), "the SMSC's client should have bound anew"
    assert len(await recorded(sms_gateway, before_destination, 1)) == 1
    assert len(await recorded(sms_gateway, after_destination, 1)) == 1


# --- fallback from the SMS to a call -------------------------------------------------------

FALLBACK_AFTER = 8


def handset(**kwargs: Any) -> sipp.Handset:
    cfg = service_config()
    return sipp.Handset(port=cfg.trunk.port, host=cfg.trunk.host, **kwargs)


async def test_unconfirmed_sms_falls_back_to_a_call_after_its_wait(
    sms_gateway: Gateway, start_service: Starter, http_session: aiohttp.ClientSession, tenant: tuple[models.Tenant, str]
) -> None:
    phone, destination = phone_number("0007")
    # The SMS is taken, and its fate never told: only the wait moves the request on.
    await set_rules(sms_gateway, {"0007": smsc_mod.Rule(receipt="none")})
    api = await sms_api(
        start_service, http_session, tenant, sms_gateway, dialer=True, verification={"voice_key_timeout_seconds": 2.0}
    )
    channels = [{"channel": "sms"}, {"channel": "voice", "after_seconds": FALLBACK_AFTER}]
    async with handset(keys="1") as answering:
        created = await api.create(phone, method="sms", channels=channels, language="en")
        assert (await api.wait_for(created["id"], {"sent"} | TERMINAL, timeout=30))["status"] == "sent"
        done = await api.wait_for(created["id"], TERMINAL | {"delivered"} - {"sent"}, timeout=FALLBACK_AFTER + 40)
        # The call read the code out: delivered by voice.
        await answering.wait()
    assert (done["status"], done["method"]) == ("delivered", "voice"), done
    log = await api.events(created["id"])
    first, second = channel_events(log)
    assert (first["detail"]["channel"], second["detail"]["channel"]) == ("sms", "voice")
    assert second["detail"]["after"] == "time"
    waited = (at(second) - at(first)).total_seconds()
    assert FALLBACK_AFTER <= waited <= FALLBACK_AFTER + 5, waited
    (call,) = log["calls"]
    assert dt.datetime.fromisoformat(call["started_at"]) >= at(second)
    (message,) = await recorded(sms_gateway, destination, 1)
    assert message.message_id is not None
    # One code across the channels: the one the SMS carried is the one read out.
    assert message.text is not None
    assert created["code"] in message.text
    body = await check(api, created["id"], created["code"])
    assert body["verified"] is True


# Direct only: through Jasmin a refusal never reaches the service (see
# test_carrier_refusing_the_submit_rejects_the_request), so only the wait moves it on.
@pytest.mark.parametrize("sms_gateway", ["smsc"], indirect=True)
async def test_refused_sms_falls_back_to_a_call_at_once(
    sms_gateway: Gateway, start_service: Starter, http_session: aiohttp.ClientSession, tenant: tuple[models.Tenant, str]
) -> None:
    phone, destination = phone_number("0008")
    await set_rules(sms_gateway, {"0008": smsc_mod.Rule(submit_status=smsc_mod.ESME_RINVDSTADR)})
    api = await sms_api(
        start_service, http_session, tenant, sms_gateway, dialer=True, verification={"voice_key_timeout_seconds": 2.0}
    )
    wait = 60  # far longer than the test: only the failure can move it on so soon
    channels = [{"channel": "sms"}, {"channel": "voice", "after_seconds": wait}]
    async with handset(keys="1") as answering:
        created = await api.create(phone, method="sms", channels=channels, language="en")
        done = await api.wait_for(created["id"], SETTLED, timeout=40)
        await answering.wait()
    assert (done["status"], done["method"]) == ("delivered", "voice"), done
    log = await api.events(created["id"])
    first, second = channel_events(log)
    assert (first["detail"]["channel"], second["detail"]["channel"]) == ("sms", "voice")
    assert second["detail"]["after"] == "failed"
    assert (at(second) - at(first)).total_seconds() < wait
    assert "sent" not in statuses(log)
    (message,) = await recorded(sms_gateway, destination, 1)
    assert message.command_status == smsc_mod.ESME_RINVDSTADR
    assert len(log["calls"]) == 1
