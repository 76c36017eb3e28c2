"""``make bench``: a stack of its own, the API and a controller as separate
processes, SIPp as the phones, verifications through the public HTTP API at
fixed offered rates, then the same call flow done entirely in dialplan on
the same stack, as the baseline. Everything started is stopped at the end,
also on Ctrl-C or an error."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from psycopg_pool import AsyncConnectionPool

from ivr_auth import config, crypto, phone, sipp_load, stack, states
from ivr_auth import store as store_mod
from ivr_auth.ari import client as ari_client
from ivr_auth.bench import observe, report
from ivr_auth.stack import asterisk, postgres, secrets

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / ".run" / "bench"
HTTP = "127.0.0.1:8094"
SETTINGS: dict[str, Any] = {
    "ari": {"app": "ivr-auth-bench"},
    "http": {"listen": HTTP},
    # The pacer must not be what limits: SIPp answers everything.
    "trunk": {"port": 5084, "max_channels": 500, "calls_per_second": 200},
    "inbound": {"app": "ivr-auth-bench-inbound"},
    "agi": {"listen": "127.0.0.1:45774"},
    "webhooks": {"allow_private_networks": True, "poll_interval_seconds": 0.2},
    "limits": {"requests_per_minute": 1_000_000, "sends_per_phone": 1000, "prefix_alarm_min_calls": 1_000_000},
    "stack": {
        "run_dir": str(ROOT / ".run" / "bench-stack"),
        "postgres_port": 55452,
        "sip_port": 5074,
        "ari_port": 58108,
        "rtp_start": 35000,
        "rtp_end": 36999,
    },
}
FULL_RATES = (1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0)
QUICK_RATES = (1.0, 2.0)
CODE_LENGTH = 6
# One request in WRONG_EVERY keys a wrong code (max_code_attempts 1): it must end "failed".
WRONG_EVERY = 10
# The handset listens to the prompt this long before keying, as a person would.
WAIT_MS = 3000
GAP_MS = 300
TERMINAL = {s.value for s in states.TERMINAL}


@dataclass
class Request:
    flow: str
    step: int
    number: str
    code: str
    expected: str
    id: str = ""
    posted: float = 0.0
    accepted: float = 0.0
    status: str = ""
    finished: float | None = None
    visible: float | None = None
    channel: str = ""


def steps_plan(quick: bool) -> list[tuple[float, int]]:
    rates = QUICK_RATES if quick else FULL_RATES
    return [(rate, 4 if quick else min(int(6 * rate) + 4, 60)) for rate in rates]


def plan_requests(flow_index: int, plan: list[tuple[float, int]], rng: random.Random) -> list[list[Request]]:
    flow = "ivr-auth" if flow_index == 1 else "baseline"
    out = []
    for step, (_, count) in enumerate(plan):
        batch = []
        for i in range(count):
            wrong = i % WRONG_EVERY == WRONG_EVERY - 1
            code = "".join(rng.choice("0123456789") for _ in range(CODE_LENGTH))
            expected = "failed" if wrong else "verified"
            batch.append(Request(flow, step, f"+8190{flow_index}{step}{i:06d}", code, expected))
        out.append(batch)
    return out


def rows(batches: list[list[Request]]) -> list[sipp_load.HandsetRow]:
    out = []
    for r in (r for batch in batches for r in batch):
        keys = r.code if r.expected == "verified" else "".join(str((int(c) + 1) % 10) for c in r.code)
        out.append(sipp_load.HandsetRow(r.number, keys, wait_ms=WAIT_MS, gap_ms=GAP_MS))
    return out


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (and, for a postmaster, its children)."""
    if pid is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / tick


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
    return out


class Bench:
    def __init__(self, cfg: config.Config, config_file: Path, quick: bool) -> None:
        self.cfg = cfg
        self.config_file = config_file
        self.quick = quick
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.wake: dict[str, asyncio.Event] = {}

    # --- processes ------------------------------------------------------------------

    async def start_service(self, name: str) -> None:
        log = (OUT_DIR / f"{name}.log").open("wb")
        self.procs[name] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ivr_auth.cli", "-c", str(self.config_file), "--log-level", "warning", name,
            stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        log.close()

    async def stop_services(self) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 40)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    def pids(self) -> dict[str, list[int]]:
        ast = asterisk.Instance(self.cfg, self.cfg.run_dir, secrets.load_or_create(self.cfg.run_dir).ari_password)
        cluster = postgres.Cluster(self.cfg.stack, self.cfg.run_dir, "")
        out: dict[str, list[int]] = {name: [p.pid] for name, p in self.procs.items()}
        out["asterisk"] = [p for p in [ast.pid()] if p is not None]
        pid_file = cluster.data_dir / "postmaster.pid"
        if pid_file.exists():
            master = int(pid_file.read_text().split()[0])
            out["postgres"] = [master, *children(master)]
        return out

    def cpu(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.pids().items()}

    # --- one request of each flow --------------------------------------------------

    async def ours(self, http: aiohttp.ClientSession, key: str, callback: str, r: Request) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        body: dict[str, str | int] = {
            "phone": r.number,
            "method": "dtmf",
            "code": r.code,
            "language": "ja",
            "callback_url": callback,
        }
        if r.expected == "failed":
            body["max_code_attempts"] = 1
        r.posted = time.time()
        async with http.post(f"http://{HTTP}/v1/verifications", json=body, headers=headers) as resp:
            created = await resp.json()
            r.accepted = time.time()
        if resp.status != 201:
            r.status = f"http_{resp.status}"
            return
        r.id = created["id"]
        wake = self.wake[uuid_hex(r.id)] = asyncio.Event()
        deadline = time.monotonic() + 120
        fast = False
        while time.monotonic() < deadline:
            if not fast:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), 1.0)
                    fast = True
            async with http.get(f"http://{HTTP}/v1/verifications/{r.id}", headers=headers) as resp:
                state = await resp.json()
            if state["status"] in TERMINAL:
                r.visible = time.time()
                r.status = state["status"]
                r.finished = dt.datetime.fromisoformat(state["finished_at"]).timestamp()
                return
            if fast:
                await asyncio.sleep(0.025)
        r.status = "timeout"

    async def baseline(self, ari: ari_client.AriClient, watch: observe.AriObserver, r: Request, n: int) -> None:
        r.id = r.channel = f"bench-baseline-{r.step}-{n}"
        endpoint = phone.dial_endpoint(r.number, self.cfg.trunk, self.cfg.default_country)
        params: dict[str, str | int | float | bool] = {
            "endpoint": endpoint,
            "context": "ivr-auth-bench-baseline",
            "extension": "s",
            "priority": 1,
            "channelId": r.channel,
            "timeout": 30,
        }
        variables = {"IVRAUTH_BENCH_CODE": r.code}
        r.posted = time.time()
        await ari.request("POST", "channels", params=params, json={"variables": variables})
        r.accepted = time.time()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if r.id in watch.baseline:
                r.status, r.visible = watch.baseline[r.id]
                return
            await asyncio.sleep(0.05)
        r.status = "timeout"

    # --- a step ---------------------------------------------------------------------

    async def step(self, rate: float, batch: list[Request], send: Any, watch: observe.AriObserver) -> report.Step:
        watch.reset_peak()
        before = self.cpu()
        start = time.monotonic()
        tasks = []
        for n, r in enumerate(batch):
            await asyncio.sleep(max(start + n / rate - time.monotonic(), 0))
            tasks.append(asyncio.create_task(send(r, n)))
        await asyncio.gather(*tasks)
        # Let the last calls' hang-ups land before the counters are read.
        await asyncio.sleep(2)
        after = self.cpu()
        span = max(r.posted for r in batch) - min(r.posted for r in batch)
        wrong = Counter(f"{r.expected}->{r.status}" for r in batch if r.status != r.expected)
        return report.Step(
            flow=batch[0].flow,
            offered_rate=rate,
            requests=len(batch),
            achieved_rate=round((len(batch) - 1) / span, 2) if span > 0 else float(len(batch)),
            correct=sum(r.status == r.expected for r in batch),
            wrong=dict(wrong),
            peak_channels=watch.peak_channels,
            cpu_seconds={name: round(after[name] - before.get(name, 0.0), 3) for name in after},
            verified=sum(r.status == "verified" for r in batch),
        )


def uuid_hex(text: str) -> str:
    return text.replace("-", "")


def latencies(
    batch: list[Request], invites: dict[str, float], watch: observe.AriObserver, hooks: dict[str, tuple[str, float]]
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in report.LATENCIES}
    for r in batch:
        if r.flow == "ivr-auth":
            out["api_accept"].append(r.accepted - r.posted)
        if r.number in invites and r.accepted:
            out["accept_to_invite"].append(invites[r.number] - r.accepted)
        prefix = f"ivrauth-{uuid_hex(r.id)}-" if r.flow == "ivr-auth" else r.channel
        keys = [t for ch, times in watch.keys.items() if ch.startswith(prefix) for t in times]
        if len(keys) >= CODE_LENGTH and r.visible is not None:
            out["last_key_to_visible"].append(r.visible - max(keys))
        if r.id in hooks and r.finished is not None:
            out["terminal_to_webhook"].append(hooks[r.id][1] - r.finished)
    return {name: values for name, values in out.items() if values}


@contextlib.asynccontextmanager
async def bench_stack(cfg: config.Config) -> AsyncIterator[stack.Endpoints]:
    try:
        yield await stack.up(cfg)
    finally:
        await stack.down(cfg)


async def main(quick: bool) -> dict[str, Any]:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    config_file = OUT_DIR / "ivr-auth-bench.yaml"
    config_file.write_text(yaml.safe_dump(SETTINGS))
    cfg = config.load(config_file, environ={})
    plan = steps_plan(quick)
    rng = random.Random(7)
    ours_batches, base_batches = plan_requests(1, plan, rng), plan_requests(2, plan, rng)
    bench = Bench(cfg, config_file, quick)
    total_calls = sum(len(b) for b in (*ours_batches, *base_batches))
    print(f"bench: {len(plan)} steps, {total_calls} calls; stack in {cfg.run_dir}", file=sys.stderr)
    async with bench_stack(cfg) as endpoints, aiohttp.ClientSession() as http:
        async with AsyncConnectionPool(endpoints.database_url, min_size=1, max_size=2, open=False) as pool:
            await pool.wait(timeout=10)
            store = store_mod.Store(pool, crypto.Keys.from_secret(endpoints.server_secret))
            tenant, key = await store.create_tenant(f"bench-{int(time.time())}")
            secret = await store.webhook_secret(tenant.id)
        assert secret is not None
        hooks = observe.WebhookReceiver(secret)
        watch = observe.AriObserver(http, endpoints.ari_url, endpoints.ari_username, endpoints.ari_password)

        def on_key(channel: str, count: int) -> None:
            parts = channel.split("-")
            if count >= CODE_LENGTH and len(parts) == 3 and (event := bench.wake.get(parts[1])):
                event.set()

        watch.on_key = on_key
        phones = sipp_load.LoadHandsets(
            port=cfg.trunk.port,
            host=cfg.trunk.host,
            media_port=7000,
            rows=rows([*ours_batches, *base_batches]),
            calls=total_calls,
            timeout=1200,
            trace=True,
        )
        ari = ari_client.AriClient(http, endpoints.ari_url, endpoints.ari_username, endpoints.ari_password)
        ours_steps: list[report.Step] = []
        base_steps: list[report.Step] = []
        try:
            await hooks.start()
            await watch.start()
            await bench.start_service("api")
            await bench.start_service("controller")
            await wait_ready(http)
            await phones.start()

            async def send_ours(r: Request, n: int) -> None:
                await bench.ours(http, key, hooks.url, r)

            async def send_base(r: Request, n: int) -> None:
                await bench.baseline(ari, watch, r, n)

            flows = ((ours_steps, ours_batches, send_ours), (base_steps, base_batches, send_base))
            for flow_steps, batches, send in flows:
                for (rate, _), batch in zip(plan, batches, strict=True):
                    done = await bench.step(rate, batch, send, watch)
                    flow_steps.append(done)
                    print(
                        f"bench: {done.flow} {rate}/s: {done.correct}/{done.requests} correct, "
                        f"peak {done.peak_channels} calls",
                        file=sys.stderr,
                    )
                    if not done.all_correct:
                        break  # a higher rate will not do better
            await asyncio.sleep(3)  # the last webhooks
        finally:
            await phones.stop()
            await phones.wait(30)
            await bench.stop_services()
            await watch.stop()
            await hooks.stop()
    invites: dict[str, float] = {}
    for number, at in phones.invites:
        invites.setdefault(number, at.timestamp())
    for results, batches in ((ours_steps, ours_batches), (base_steps, base_batches)):
        for step_result, batch in zip(results, batches, strict=False):
            step_result.latencies = latencies(batch, invites, watch, hooks.received)
    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {platform.platform()}, Asterisk {await asterisk_version(cfg)}",
        "note": (
            "Everything on one machine over loopback: Postgres, Asterisk, the API and controller processes, "
            "SIPp as the phones and this bench. Each call: the Japanese prompt, keys after 3 s, 6 digits 0.3 s "
            f"apart; one request in {WRONG_EVERY} keys a wrong code (must end failed). Bad webhook signatures: "
            f"{hooks.bad_signatures}."
        ),
        "quick": quick,
        "plan": [{"rate": rate, "requests": count} for rate, count in plan],
    }
    return report.build(meta, ours_steps, base_steps)


async def wait_ready(http: aiohttp.ClientSession) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"http://{HTTP}/readyz") as resp:
                if resp.status == 200:
                    # The controller needs its websocket too: give it a moment.
                    await asyncio.sleep(2)
                    return
        await asyncio.sleep(0.3)
    raise RuntimeError(f"the API on {HTTP} did not become ready; see {OUT_DIR}/api.log")


async def asterisk_version(cfg: config.Config) -> str:
    proc = await asyncio.create_subprocess_exec(
        cfg.stack.asterisk_binary, "-V", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    return out.decode().strip().removeprefix("Asterisk ")
