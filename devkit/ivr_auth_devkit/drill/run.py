"""``make drill``: the failure drills, on a stack of their own (Postgres and
Asterisk from the dev kit's stack, own ports and run directory), with the
API and two controllers as processes of their own, SIPp as the phones
(handsets keying codes, callers calling the inbound number) and requests
through the public HTTP API. Each drill offers load, injects its fault,
lets everything settle and is judged from the database and from what the
trunk received (docs/drills.md). Everything started is stopped at the end,
also on Ctrl-C or an error."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from ivr_auth import config, connections, errors
from ivr_auth import store as store_mod
from ivr_auth.ari import client as ari_client
from ivr_auth_devkit import sipp_load
from ivr_auth_devkit.bench import run as bench_run
from ivr_auth_devkit.drill import measure, processes, proxy, records, report, verdict
from ivr_auth_devkit.stack import asterisk, install, postgres, secrets

logger = logging.getLogger(__name__)

# The checkout (devkit/ivr_auth_devkit/drill/run.py is three levels below it).
ROOT = Path(__file__).resolve().parents[3]
OUT_DIR = ROOT / ".run" / "drill"
# The trunk's cap in new calls per second, for both controllers together.
CPS_CAP = 10
INBOUND_NUMBER = "050-1234-9999"
CALLER_PORTS = ((5098, 7200), (5099, 7210))
HANDSET_MEDIA_PORT = 7100
LEASE_SECONDS = 8
# Every request lives this long (the API's least): a request nobody served
# has expired by the end of its drill's settle time.
TTL_SECONDS = 30
# The longest a drill's call may last, from the settings below: ringing, the
# greeting, one round of the prompt with the first key's and every next key's
# timeout, the result and goodbye (the prompts are under 5 s each).
RING_SECONDS, FIRST_KEY_SECONDS, NEXT_KEY_SECONDS = 10, 5, 3
CODE_LENGTH = 4
LONGEST_CALL = RING_SECONDS + 5 + (5 + FIRST_KEY_SECONDS + CODE_LENGTH * NEXT_KEY_SECONDS) + 5 + 5
# On top of that: a dead controller's lease, the reaper's pass, a margin.
GRACE_SECONDS = LEASE_SECONDS + 5
# After its last request was created, a drill waits for its requests to end
# until each has or is overdue (stuck), and this long at most: a request
# dialled just before it expires, for the longest call, and the grace.
SETTLE_SECONDS = TTL_SECONDS + LONGEST_CALL + GRACE_SECONDS
SETTINGS: dict[str, Any] = {
    "ari": {"app": "ivr-auth-drill"},
    "http": {"listen": processes.HTTP},
    "trunk": {"port": 5088, "max_channels": 200, "calls_per_second": CPS_CAP},
    "inbound": {"numbers": [INBOUND_NUMBER], "app": "ivr-auth-drill-inbound"},
    # Two controllers on one host: FastAGI would want one port for both.
    "agi": {"listen": ""},
    "webhooks": {"allow_private_networks": True},
    "limits": {"requests_per_minute": 1_000_000, "sends_per_phone": 1000, "prefix_alarm_min_calls": 1_000_000},
    # A dead controller's calls are settled within LEASE_SECONDS (default 30:
    # the kill drill would take a minute); the rest as shipped.
    "dialer": {"lease_seconds": LEASE_SECONDS, "reaper_interval_seconds": 1, "shutdown_grace_seconds": 5},
    # Calls bounded in time (LONGEST_CALL): a call whose keys were lost ends
    # failed after one round instead of three, the code's one attempt.
    "verification": {
        "retry_delay_seconds": 2,
        "ring_timeout_seconds": RING_SECONDS,
        "first_digit_timeout_seconds": FIRST_KEY_SECONDS,
        "inter_digit_timeout_seconds": NEXT_KEY_SECONDS,
        "no_input_retries": 0,
        "max_code_attempts": 1,
    },
    "stack": {
        "postgres_port": 55462,
        "sip_port": 5078,
        "ari_port": 58118,
        "rtp_start": 39000,
        "rtp_end": 39999,
    },
}
# Which Asterisk (DRILL_ASTERISK): the stack's default, 22 (the tree make
# setup builds on Debian 12), and the host's own (16.28 there).
ASTERISKS = {"22": "auto", "host": "host"}
# The load of a fault drill: OFFER_RATE new dtmf requests a second for
# OFFER_SECONDS, the fault FAULT_AFTER seconds in; INBOUND callers before the
# fault (some mid-call when it comes) and as many after it.
OFFER_RATE, OFFER_SECONDS, FAULT_AFTER = 3.0, 12.0, 4.0
INBOUND = 4
CALLER_RATE = 2.0
# The pacing drill: this many requests at once, for the two controllers.
BURST = 60
WS_DROP_SECONDS = 5.0
# How long Asterisk and Postgres stay down (the stack's own stop and start
# take well under 2 s; a real restart, with a bigger database or a node
# booting, takes longer).
ASTERISK_DOWN_SECONDS, POSTGRES_DOWN_SECONDS = 3.0, 5.0
WAIT_MS, GAP_MS = 1500, 300
DRILLS = ("kill-controller", "restart-asterisk", "restart-postgres", "drop-websocket", "trunk-cps")


class Run:
    """The drills on one Asterisk."""

    def __init__(
        self,
        cfg: config.Config,
        endpoints: connections.Connections,
        services: processes.Services,
        http: aiohttp.ClientSession,
        key: str,
        out: Path,
        version: str,
    ) -> None:
        self.cfg = cfg
        self.endpoints = endpoints
        self.services = services
        self.http = http
        self.headers = {"Authorization": f"Bearer {key}"}
        self.out = out
        self.version = version
        self.rng = random.Random(18)
        self.proxy = proxy.AriProxy("127.0.0.1", processes.ARI_PROXY_PORT, cfg.stack.bind, cfg.stack.ari_port)
        self.ari = ari_client.AriClient(http, endpoints.ari_url, endpoints.ari_username, endpoints.ari_password)

    # --- readiness -------------------------------------------------------------------

    async def wait_ready(self, timeout: float = 60) -> None:
        """The API answers, and every controller's app is registered in Asterisk."""
        deadline = time.monotonic() + timeout
        missing: list[str] = ["api"]
        while time.monotonic() < deadline:
            missing = []
            with contextlib.suppress(aiohttp.ClientError):
                async with self.http.get(f"http://{processes.HTTP}/readyz") as resp:
                    if resp.status != 200:
                        missing.append("api")
            for name, proc in self.services.procs.items():
                if name in processes.CONTROLLERS and proc.returncode is None:
                    with contextlib.suppress(errors.AriError):
                        if await self.ari.application(f"{self.cfg.ari.app}-{name}") is None:
                            missing.append(name)
            if not missing:
                return
            await asyncio.sleep(0.3)
        raise RuntimeError(f"not ready within {timeout:.0f} s: {', '.join(missing)}; logs in {self.out}")

    async def start_controller(self, name: str) -> None:
        await self.services.start(name)
        await self.wait_ready()

    # --- requests --------------------------------------------------------------------

    async def create(self, drill: verdict.Drill, r: verdict.Req) -> None:
        body: dict[str, Any] = {
            "phone": r.phone,
            "method": r.method,
            "language": "en",
            "reference": drill.reference,
            "ttl_seconds": TTL_SECONDS,
        }
        if r.method == "dtmf":
            body["code"] = r.code
        drill.requests.append(r)
        try:
            async with self.http.post(
                f"http://{processes.HTTP}/v1/verifications", json=body, headers=self.headers
            ) as resp:
                created = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            r.refused = type(exc).__name__
            return
        if resp.status == 201:
            r.id = created["id"]
        else:
            r.refused = f"HTTP {resp.status}"

    def outbound(self, drill: verdict.Drill, count: int) -> list[verdict.Req]:
        return [
            verdict.Req("dtmf", drill.number(1, i), "".join(self.rng.choice("0123456789") for _ in range(CODE_LENGTH)))
            for i in range(count)
        ]

    async def offer(self, drill: verdict.Drill, batch: list[verdict.Req], rate: float) -> None:
        start = time.monotonic()
        tasks = []
        for n, r in enumerate(batch):
            await asyncio.sleep(max(start + n / rate - time.monotonic(), 0))
            tasks.append(asyncio.create_task(self.create(drill, r)))
        await asyncio.gather(*tasks)

    async def callers(
        self, drill: verdict.Drill, first: int, ports: tuple[int, int], again: list[verdict.Req] | None = None
    ) -> sipp_load.LoadCallers | None:
        """INBOUND inbound requests, then their callers calling in
        (CALLER_RATE a second), after those of ``again`` (requests made before)."""
        batch = [verdict.Req("inbound", drill.number(2, first + i)) for i in range(INBOUND)]
        await asyncio.gather(*(self.create(drill, r) for r in batch))
        accepted = [*(again or []), *(r for r in batch if r.id)]
        if not accepted:
            return None
        did = INBOUND_NUMBER.replace("-", "")
        callers = sipp_load.LoadCallers(
            target_port=self.cfg.stack.sip_port,
            calls_from=[(r.phone, did) for r in accepted],
            rate=CALLER_RATE,
            port=ports[0],
            media_port=ports[1],
            timeout=SETTLE_SECONDS + 30,
        )
        await callers.start()
        return callers

    async def settle(self, drill: verdict.Drill) -> None:
        """Until every accepted request has ended or is overdue (stuck), and
        SETTLE_SECONDS at most."""
        deadline = time.monotonic() + SETTLE_SECONDS
        ids = [r.id for r in drill.requests if r.id]
        while time.monotonic() < deadline:
            found = await records.open_requests(self.endpoints.database_url, ids)
            if found is not None:
                now = time.time()
                if all(
                    measure.overdue(status, now, expires, since, longest_call=LONGEST_CALL, grace=GRACE_SECONDS)
                    for _, status, expires, since in found
                ):
                    return
            await asyncio.sleep(1.0)

    # --- a drill ---------------------------------------------------------------------

    async def fault_drill(self, drill: verdict.Drill, fault: Callable[[], Awaitable[verdict.Fault]]) -> report.Result:
        count = round(OFFER_RATE * OFFER_SECONDS)
        batch = self.outbound(drill, count)
        handsets = self.handsets(batch)
        await handsets.start()
        first_callers: sipp_load.LoadCallers | None = None
        second_callers: sipp_load.LoadCallers | None = None
        try:
            offering = asyncio.create_task(self.offer(drill, batch, OFFER_RATE))
            await asyncio.sleep(FAULT_AFTER - INBOUND / CALLER_RATE)
            first_callers = await self.callers(drill, 0, CALLER_PORTS[0])
            await asyncio.sleep(INBOUND / CALLER_RATE)
            drill.fault = await fault()
            await offering
            # A caller whose call the fault cut before it was taken calls again, as a person would.
            first = [r.id for r in drill.requests if r.method == "inbound" and r.id]
            waiting = {found[0] for found in await records.open_requests(self.endpoints.database_url, first) or []}
            again = [r for r in drill.requests if r.id in waiting]
            if again:
                drill.notes.append(f"{len(again)} caller(s) whose call the fault cut called again")
            second_callers = await self.callers(drill, INBOUND, CALLER_PORTS[1], again)
            await self.settle(drill)
        finally:
            for callers in (first_callers, second_callers):
                if callers is not None:
                    await callers.stop()
                    with contextlib.suppress(errors.IvrAuthError):
                        await callers.wait(10)
            await handsets.stop()
            with contextlib.suppress(errors.IvrAuthError):
                await handsets.wait(30)
        drill.invites = handsets.dialogs
        return await self.judge(drill, recovers=True)

    def handsets(self, batch: list[verdict.Req]) -> processes.TracingHandsets:
        rows = [sipp_load.HandsetRow(r.phone, r.code, wait_ms=WAIT_MS, gap_ms=GAP_MS) for r in batch]
        handsets = processes.TracingHandsets(
            port=self.cfg.trunk.port,
            host=self.cfg.trunk.host,
            media_port=HANDSET_MEDIA_PORT,
            rows=rows,
            calls=4 * len(rows) + 10,
            timeout=300,
            trace=True,
        )
        handsets.dialogs = []
        return handsets

    async def kill_controller(self) -> report.Result:
        drill = verdict.Drill("kill-controller", 1)
        victim = "c2"

        async def fault() -> verdict.Fault:
            nonlocal victim
            # The controller with the most inbound calls up, then outbound
            # (on 16 inbound calls go to the first slot's holder first).
            up = await records.calls_up(self.endpoints.database_url, drill.reference)
            victim = max(processes.CONTROLLERS, key=lambda name: (*up.get(name, (0, 0)), name))
            at = time.time()
            await self.services.kill(victim)
            return verdict.Fault(at, time.time(), controller=victim)

        try:
            return await self.fault_drill(drill, fault)
        finally:
            await self.start_controller(victim)

    async def restart_asterisk(self) -> report.Result:
        instance = asterisk.Instance(self.cfg, self.cfg.run_dir, self.endpoints.ari_password)
        return await self.restart_drill(
            verdict.Drill("restart-asterisk", 2), "Asterisk", instance.stop, instance.start, ASTERISK_DOWN_SECONDS
        )

    async def restart_postgres(self) -> report.Result:
        cluster = postgres.Cluster(
            self.cfg.stack, self.cfg.run_dir, secrets.load_or_create(self.cfg.run_dir).postgres_password
        )
        return await self.restart_drill(
            verdict.Drill("restart-postgres", 3), "Postgres", cluster.stop, cluster.start, POSTGRES_DOWN_SECONDS
        )

    async def restart_drill(
        self,
        drill: verdict.Drill,
        what: str,
        stop: Callable[[], Awaitable[object]],
        start: Callable[[], Awaitable[object]],
        down_seconds: float,
    ) -> report.Result:
        """A service stopped, kept down ``down_seconds``, and started again."""

        async def fault() -> verdict.Fault:
            at = time.time()
            await stop()
            await asyncio.sleep(down_seconds)
            await start()
            ended = time.time()
            drill.notes.append(f"{what} down and back in {ended - at:.1f} s")
            return verdict.Fault(at, ended)

        return await self.fault_drill(drill, fault)

    async def drop_websocket(self) -> report.Result:
        drill = verdict.Drill("drop-websocket", 4)

        async def fault() -> verdict.Fault:
            at = time.time()
            cut = self.proxy.drop_events(WS_DROP_SECONDS)
            await asyncio.sleep(WS_DROP_SECONDS)
            drill.notes.append(
                f"{cut} events websocket(s) cut, {self.proxy.refused} reconnect(s) refused for {WS_DROP_SECONDS:g} s"
            )
            return verdict.Fault(at, time.time())

        return await self.fault_drill(drill, fault)

    async def trunk_cps(self) -> report.Result:
        drill = verdict.Drill("trunk-cps", 5)
        batch = self.outbound(drill, BURST)
        handsets = self.handsets(batch)
        await handsets.start()
        try:
            await asyncio.gather(*(self.create(drill, r) for r in batch))
            await self.settle(drill)
        finally:
            await handsets.stop()
            with contextlib.suppress(errors.IvrAuthError):
                await handsets.wait(30)
        drill.invites = handsets.dialogs
        drill.notes.append(f"{BURST} requests at once for two controllers on one trunk capped at {CPS_CAP} calls/s")
        return await self.judge(drill, recovers=False)

    # --- the verdict -----------------------------------------------------------------

    async def judge(self, drill: verdict.Drill, *, recovers: bool) -> report.Result:
        rows, attempts = await records.records(self.endpoints.database_url, drill.reference)
        return verdict.judge(drill, rows, attempts, asterisk=self.version, cap=CPS_CAP, recovers=recovers)


def settings_for(which: str) -> dict[str, Any]:
    settings: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in SETTINGS.items()}
    settings["stack"]["asterisk_root"] = ASTERISKS[which]
    settings["stack"]["run_dir"] = str(ROOT / ".run" / f"drill-stack-{which}")
    return settings


async def run_on(which: str, only: tuple[str, ...]) -> list[report.Result]:
    """Every drill in ``only`` on one Asterisk; a drill that raised is a
    failed result, and the next one still runs."""
    out = OUT_DIR / which
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "ivr-auth-drill.yaml"
    config_file.write_text(yaml.safe_dump(settings_for(which)))
    cfg = config.load(config_file, environ={})
    found = install.resolve(cfg.stack).version()
    version = ".".join(map(str, found)) if found else which
    print(f"drill: Asterisk {version} ({which}); stack in {cfg.run_dir}", file=sys.stderr)
    results: list[report.Result] = []
    # A database made anew, as the bench's: the drills count what is in it.
    async with bench_run.bench_stack(cfg) as endpoints, aiohttp.ClientSession() as http:
        async with store_mod.Store.from_url(endpoints.database_url, endpoints.server_secret, max_size=2) as store:
            _, key = await store.tenants.create(f"drill-{int(time.time())}")
        services = processes.Services(cfg, config_file, endpoints, out)
        drill_run = Run(cfg, endpoints, services, http, key, out, version)
        await drill_run.proxy.start()
        try:
            await services.start("api")
            await drill_run.start_controller("c1")
            await drill_run.start_controller("c2")
            plan: dict[str, Callable[[], Awaitable[report.Result]]] = {
                "kill-controller": drill_run.kill_controller,
                "restart-asterisk": drill_run.restart_asterisk,
                "restart-postgres": drill_run.restart_postgres,
                "drop-websocket": drill_run.drop_websocket,
                "trunk-cps": drill_run.trunk_cps,
            }
            for name in only:
                began = time.monotonic()
                try:
                    result = await plan[name]()
                except Exception as exc:
                    logger.exception("drill %s failed to run", name)
                    result = report.Result(
                        drill=name, asterisk=version, cap=CPS_CAP, error=f"{type(exc).__name__}: {exc}"
                    )
                results.append(result)
                verdict = "pass" if result.passed else "FAIL: " + "; ".join(result.failures())
                print(f"drill: {version} {name}: {time.monotonic() - began:.0f} s, {verdict}", file=sys.stderr)
                with contextlib.suppress(Exception):
                    await drill_run.wait_ready(30)
        finally:
            await services.stop_all()
            await drill_run.proxy.stop()
    return results


async def main(which: str, only: tuple[str, ...] = DRILLS) -> tuple[list[report.Result], dict[str, Any]]:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    chosen = ("22", "host") if which == "both" else (which,)
    results: list[report.Result] = []
    for one in chosen:
        try:
            results += await run_on(one, only)
        except (errors.IvrAuthError, RuntimeError, OSError) as exc:
            # The stack or the services did not come up: every drill on it failed, the next Asterisk still runs.
            logger.exception("the drills on Asterisk %s could not run", one)
            error = f"{type(exc).__name__}: {exc}"
            results += [report.Result(drill=name, asterisk=one, cap=CPS_CAP, error=error) for name in only]
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores",
        "asterisks": list(chosen),
        "cap_calls_per_second": CPS_CAP,
        "ttl_seconds": TTL_SECONDS,
        "settle_seconds": SETTLE_SECONDS,
        "lease_seconds": LEASE_SECONDS,
        "load": f"{OFFER_RATE:g} dtmf requests/s for {OFFER_SECONDS:g} s, the fault {FAULT_AFTER:g} s in; "
        f"{INBOUND} inbound callers before it and {INBOUND} after; Asterisk down {ASTERISK_DOWN_SECONDS:g} s, "
        f"Postgres {POSTGRES_DOWN_SECONDS:g} s, the events websocket {WS_DROP_SECONDS:g} s",
    }
    return results, meta
