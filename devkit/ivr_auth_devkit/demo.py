"""``ivr-auth-dev demo``: the main job on the embedded stack, done the way a web
backend would do it. One verification of each method goes through the HTTP
API; SIPp plays the person's phone.

- ``dtmf``: the handset keys the code shown on the web page (and once more
  with a mistyped code first);
- ``voice``: the handset presses a key and listens to the code read out;
  the "web page" then checks the code the person typed;
- ``inbound``: a SIPp caller rings the published number from the registered
  phone, and the caller ID verifies the request;
- ``sms``: the code goes by SMS to the stack's test SMSC (what it received is
  shown), and the "web page" checks it; then "SMS, then a call": the SMSC
  withholds the receipt, and the call reads the same code out after the wait.
  Left out when ivr-auth.yaml names SMS carriers of its own.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import secrets
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from ivr_auth import cli as service_cli
from ivr_auth import config, errors, phone, runtime, states
from ivr_auth import store as store_mod
from ivr_auth.store import tenants
from ivr_auth_devkit import sipp, smsc, stack
from ivr_auth_devkit.stack import smsc as stack_smsc

TERMINAL = {s.value for s in states.TERMINAL}
NUMBER = "090-1234-5678"
# Each GET waits this long for the next change of status (GET ...?wait=).
WAIT_SECONDS = 30
# The published number the demo tenant's users call, unless inbound.numbers sets one.
PUBLISHED = "050-1234-5678"
# The SMS scenes' number, and the seconds "SMS, then a call" waits for the SMS.
SMS_NUMBER = "090-1234-0001"
FALLBACK_SECONDS = 10

Say = Callable[..., None]


async def run(cfg: config.Config) -> int:
    if not _is_loopback(cfg.trunk.host):
        raise errors.IvrAuthError(
            f"the demo calls SIPp handsets on this machine, but trunk.host is {cfg.trunk.host}; "
            "run it with a config whose trunk points at 127.0.0.1"
        )
    if not cfg.embedded_asterisk:
        raise errors.IvrAuthError("the demo needs the embedded Asterisk (leave ari.url unset)")
    say: Say = functools.partial(print, flush=True)
    say("bringing up the local stack (Postgres + Asterisk + test SMSC)...")
    endpoints = await stack.up(cfg)
    served = stack.completed(cfg, endpoints)
    test_smsc = await asyncio.to_thread(stack_smsc.running, cfg) if stack_smsc.embedded(cfg) else None
    tenant_name = f"demo-{secrets.token_hex(3)}"

    async def make_tenant(store: store_mod.Store) -> str:
        _, key = await store.tenants.create(tenant_name)
        if not cfg.inbound.numbers:
            published = phone.lenient_e164(PUBLISHED, cfg.default_country)
            assert published is not None
            await store.tenants.update(tenant_name, tenants.TenantChanges(inbound_numbers=(published,)))
        return key

    api_key = await service_cli.with_store_value(served, make_tenant)
    say(f"created tenant {tenant_name} and its API key")
    service = runtime.Runtime(served, endpoints, name="demo", http_port=0, sms=test_smsc is not None)
    await service.start()
    assert service.http_url is not None
    release = service.node.release if service.node is not None else None
    say(f"Asterisk {release.text if release else '(version unknown)'} answers over ARI at {endpoints.ari_url}")
    say(f"API on {service.http_url}, controller 'demo' dialling through trunk {cfg.trunk.host}:{cfg.trunk.port}")
    ok = True
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api_key}"}) as http:
            demo = _Demo(http, service.http_url, cfg, say)
            say("\n== dtmf: the callee keys the code shown on the web page")
            ok &= await demo.dtmf(lambda code: f"{code}#")
            say("\n== dtmf: the callee mistypes once, then keys it right")
            ok &= await demo.dtmf(lambda code: f"{_wrong(code)}#,,,{code}#")
            say("\n== voice: the code is read out; the person types it into the web page")
            ok &= await demo.voice()
            say("\n== inbound: the person calls the published number from the registered phone")
            ok &= await demo.inbound()
            if test_smsc is None:
                say("\n(no SMS scenes: sms.carriers names carriers of your own, not the stack's test SMSC)")
            else:
                say(f"\n== sms: the code goes by SMS (to the stack's test SMSC on port {test_smsc.port})")
                ok &= await demo.sms(test_smsc)
                say(f"\n== sms, then a call: no receipt comes for the SMS; the call follows {FALLBACK_SECONDS} s later")
                ok &= await demo.sms_then_voice(test_smsc)
    finally:
        await service.stop(grace=5)
    say("\nthe local stack is still up: `make stack-down` stops it")
    host, port = cfg.http_host_port()
    say(
        "to watch calls live: `make run`, then open "
        f"http://{host}:{port}/dashboard with a token from `.venv/bin/ivr-auth-dev operator add NAME`"
    )
    return 0 if ok else 1


class _Demo:
    def __init__(self, http: aiohttp.ClientSession, base: str, cfg: config.Config, say: Say) -> None:
        self.http = http
        self.base = base
        self.cfg = cfg
        self.say = say

    async def dtmf(self, keys_for: Callable[[str], str]) -> bool:
        created, started = await self._create(method="dtmf", reference="demo-password-reset")
        handset = sipp.Handset(port=self.cfg.trunk.port, host=self.cfg.trunk.host, keys=keys_for(created["code"]))
        async with handset:
            state = await self._follow(created["id"], started, TERMINAL)
            await handset.wait()
        return await self._summary(state, "verified")

    async def voice(self) -> bool:
        created, started = await self._create(method="voice", reference="demo-sms-did-not-arrive")
        # The handset presses 1 when asked, then listens to the read-out.
        handset = sipp.Handset(port=self.cfg.trunk.port, host=self.cfg.trunk.host, keys="1")
        async with handset:
            state = await self._follow(created["id"], started, TERMINAL | {"delivered"})
            await handset.wait()
        if state["status"] != "delivered":
            return await self._summary(state, "delivered")
        return await self._check(created)

    async def inbound(self) -> bool:
        created, started = await self._create(method="inbound", reference="demo-new-account")
        self.say(f"  the web page says: call {created['inbound_number_display']} from your phone")
        caller = sipp.Caller(
            target_host=self.cfg.stack.bind,
            target_port=self.cfg.stack.sip_port,
            did=phone.format_for_trunk(created["inbound_number"], "national", self.cfg.default_country),
            caller=phone.format_for_trunk(created["phone"], "national", self.cfg.default_country),
        )
        async with caller:
            state = await self._follow(created["id"], started, TERMINAL)
            await caller.wait()
        return await self._summary(state, "verified")

    async def sms(self, test_smsc: smsc.Smsc) -> bool:
        await asyncio.to_thread(test_smsc.reset)
        created, started = await self._create(method="sms", phone=SMS_NUMBER, reference="demo-sign-in")
        state = await self._follow(created["id"], started, TERMINAL | {"delivered"})
        await self._show_received(test_smsc)
        if state["status"] != "delivered":
            return await self._summary(state, "delivered")
        return await self._check(created)

    async def sms_then_voice(self, test_smsc: smsc.Smsc) -> bool:
        await asyncio.to_thread(test_smsc.reset)
        # The carrier takes the SMS and never says what became of it.
        suffix = SMS_NUMBER[-4:]
        await asyncio.to_thread(test_smsc.set_rules, {suffix: smsc.Rule(receipt="none")})
        try:
            channels = [{"channel": "sms"}, {"channel": "voice", "after_seconds": FALLBACK_SECONDS}]
            created, started = await self._create(
                method="sms", phone=SMS_NUMBER, channels=channels, reference="demo-sms-did-not-arrive"
            )
            handset = sipp.Handset(port=self.cfg.trunk.port, host=self.cfg.trunk.host, keys="1")
            async with handset:
                state = await self._follow(created["id"], started, TERMINAL | {"delivered"}, show_method=True)
                await handset.wait()
        finally:
            await asyncio.to_thread(test_smsc.set_rules, {})
        await self._show_received(test_smsc)
        if state["status"] != "delivered":
            return await self._summary(state, "delivered")
        return await self._check(created)

    async def _show_received(self, test_smsc: smsc.Smsc) -> None:
        for message in await asyncio.to_thread(test_smsc.messages):
            self.say(
                f"  the SMSC received from {message.source_addr} to {message.destination_addr} "
                f"(data_coding {message.data_coding}): {message.text!r}"
            )

    async def _check(self, created: dict[str, Any]) -> bool:
        async with self.http.post(
            f"{self.base}/v1/verifications/{created['id']}/check", json={"code": created["code"]}
        ) as resp:
            checked = await resp.json()
        self.say(f"POST .../check (the code typed on the web page) -> {resp.status}  verified {checked['verified']}")
        return await self._summary(checked["verification"], "verified")

    async def _create(self, **fields: Any) -> tuple[dict[str, Any], float]:
        started = time.monotonic()
        body = {"phone": NUMBER, "language": "en", **fields}
        async with self.http.post(f"{self.base}/v1/verifications", json=body) as resp:
            created = await resp.json()
        if resp.status != 201:
            raise errors.IvrAuthError(f"create failed: HTTP {resp.status} {created}")
        self.say(f"POST /v1/verifications -> 201  id {created['id']}  phone {created['phone']}  code {created['code']}")
        return created, started

    async def _follow(
        self, verification_id: str, started: float, until: set[str], *, show_method: bool = False
    ) -> dict[str, Any]:
        """As a web backend waits for the result without polling: each GET
        with ``wait`` answers when the status changes (docs/api.md)."""
        last: str | None = None
        params: dict[str, str] = {}
        while True:
            async with self.http.get(f"{self.base}/v1/verifications/{verification_id}", params=params) as resp:
                state: dict[str, Any] = await resp.json()
            if resp.status != 200:
                raise errors.IvrAuthError(f"GET failed: HTTP {resp.status} {state}")
            now = f"{state['status']} ({state['method']})" if show_method else state["status"]
            if now != last:
                last = now
                self.say(f"  {time.monotonic() - started:6.2f}s  {last}")
            if state["status"] in until:
                return state
            params = {"wait": str(WAIT_SECONDS)}

    async def _summary(self, state: dict[str, Any], wanted: str) -> bool:
        # The phone may hang up a moment before the controller writes how the call ended.
        deadline = time.monotonic() + 5
        while True:
            async with self.http.get(f"{self.base}/v1/verifications/{state['id']}/events") as resp:
                log = await resp.json()
            if all(c["ended_at"] for c in log["calls"]) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        self.say(f"  result: {state['status']} ({state['reason']})")
        self.say(f"  wrong codes {state['code_attempts']}, calls {len(log['calls'])}")
        for call in log["calls"]:
            cause = f"hangup cause {call['cause']} ({call['cause_txt']})"
            self.say(f"  call {call['attempt']}: outcome {call['outcome']}, {cause}")
        return bool(state["status"] == wanted)


def _wrong(code: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in code)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
