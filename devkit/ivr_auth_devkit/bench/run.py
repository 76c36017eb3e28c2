"""``make bench``: a stack of its own, the API and a controller as separate
processes, SIPp as the phones, verifications through the public HTTP API
at rising offered rates, each held for a fixed time, until a step fails;
then the same call flow done entirely in dialplan on the same stack, as
the baseline. Everything started is stopped at the end, also on Ctrl-C or
an error."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import platform
import random
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from ivr_auth import config, connections, errors, phone, states
from ivr_auth import store as store_mod
from ivr_auth.ari import client as ari_client
from ivr_auth_devkit import sipp_load, stack
from ivr_auth_devkit.bench import observe, prefill, report
from ivr_auth_devkit.stack import asterisk, install, postgres, secrets

logger = logging.getLogger(__name__)

# The checkout (devkit/ivr_auth_devkit/bench/run.py is three levels below it).
ROOT = Path(__file__).resolve().parents[3]
OUT_DIR = ROOT / ".run" / "bench"
HTTP = "127.0.0.1:8094"
# The controller's own /metrics (its ARI requests).
CONTROLLER_METRICS = "127.0.0.1:8096"
SETTINGS: dict[str, Any] = {
    "ari": {"app": "ivr-auth-bench"},
    "http": {"listen": HTTP},
    "metrics": {"listen": CONTROLLER_METRICS},
    # The pacer must not be what limits: SIPp answers everything.
    "trunk": {"port": 5084, "max_channels": 2000, "calls_per_second": 200},
    "inbound": {"app": "ivr-auth-bench-inbound"},
    "agi": {"listen": "127.0.0.1:45774"},
    "webhooks": {"allow_private_networks": True},
    "limits": {"requests_per_minute": 1_000_000, "sends_per_phone": 1000, "prefix_alarm_min_calls": 1_000_000},
    "stack": {
        "run_dir": str(ROOT / ".run" / "bench-stack"),
        "postgres_port": 55452,
        "sip_port": 5074,
        "ari_port": 58108,
        "rtp_start": 35000,
        # 2 ports a call: room for 2000 calls at once.
        "rtp_end": 38999,
    },
}
FULL_RATES = (4.0, 8.0, 16.0, 32.0, 40.0, 48.0, 64.0, 80.0, 96.0, 128.0)
QUICK_RATES = (2.0, 4.0)
# Each step offers its rate this long (about twice a call's length: the
# calls at once level off), then waits at most DRAIN_SECONDS for the last
# requests to end. A request not ended by then counts as not correct.
STEP_SECONDS = 20.0
QUICK_STEP_SECONDS = 5.0
DRAIN_SECONDS = 30.0
# A call lasts about this long (3 s to the first key, 6 keys, the result
# prompt): the calls at once a rate makes, for the bound below.
CALL_SECONDS = 9.0
# Calls at once the stack's RTP range holds (2 ports a call), with room to spare.
MAX_CALLS = int((SETTINGS["stack"]["rtp_end"] - SETTINGS["stack"]["rtp_start"] + 1) // 2 * 0.9)
# Each flow's ramp stops when the next step would end past this (seconds
# from the flow's first step): the whole run stays under 10 minutes.
FLOW_BUDGET_SECONDS = 260.0
# The steady step issue 17's per-call figures come from: a rate well below
# where the ramp fails (16/s and more on this 2-core machine), held as long
# as a ramp step, once on the tables as the ramp left them and once more
# with PREFILL requests of today written into them first.
# The issue's own measurement was at 24/s (half of what the stack now keeps
# up with); the CPU per call is taken over the offer after its first
# STEADY_WARMUP_SECONDS, once the calls at once have levelled off (a call
# lasts about CALL_SECONDS).
STEADY_RATE, STEADY_SECONDS = 24.0, 30.0
STEADY_WARMUP_SECONDS = 10.0
QUICK_STEADY_RATE, QUICK_STEADY_SECONDS = 4.0, 5.0
PREFILL = 200_000
QUICK_PREFILL = 20_000
# Postgres backends report their transactions within this long once idle
# (PGSTAT_IDLE_INTERVAL, 10 s); the idle service's own are sampled this long.
STATS_IDLE_SECONDS = 10.5
IDLE_SAMPLE_SECONDS = 5.0
# The simulated web backend waits for each request's end with
# GET ...?wait=LONG_POLL_SECONDS&until=end, where the API offers it.
LONG_POLL_SECONDS = 30
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
    """(rate, requests) of each step, lowest rate first."""
    rates, seconds = (QUICK_RATES, QUICK_STEP_SECONDS) if quick else (FULL_RATES, STEP_SECONDS)
    return [(rate, round(rate * seconds)) for rate in rates]


def plan_requests(flow_index: int, plan: list[tuple[float, int]], rng: random.Random) -> list[list[Request]]:
    """Flow 2 is the dialplan baseline; the others, ivr-auth's (each its own numbers)."""
    flow = "baseline" if flow_index == 2 else "ivr-auth"
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


def machine_cpu_seconds() -> float:
    """CPU time spent by the whole machine, every process (not idle, not iowait)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def open_files(pid: int | None) -> tuple[int, int | None]:
    """(descriptors open, soft limit) of a process."""
    if pid is None:
        return 0, None
    try:
        used = len(os.listdir(f"/proc/{pid}/fd"))
        limits = Path(f"/proc/{pid}/limits").read_text()
    except OSError:
        return 0, None
    for line in limits.splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return used, None if soft == "unlimited" else int(soft)
    return used, None


def client_ports(pid: int, server_port: int) -> set[int]:
    """The local ports of ``pid``'s TCP connections to ``server_port``."""
    try:
        inodes = {
            link[len("socket:[") : -1]
            for fd in Path(f"/proc/{pid}/fd").iterdir()
            if (link := _readlink(fd)).startswith("socket:[")
        }
        tables = [Path(f"/proc/{pid}/net/{table}").read_text() for table in ("tcp", "tcp6")]
    except OSError:
        return set()
    ports = set()
    for line in (line for table in tables for line in table.splitlines()[1:]):
        fields = line.split()
        if len(fields) > 9 and fields[9] in inodes and int(fields[2].rsplit(":", 1)[1], 16) == server_port:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def backend_port(pid: int) -> int | None:
    """The client port a Postgres backend serves, from its process title
    ("postgres: user db 127.0.0.1(43122) idle")."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return None
    found = re.search(r"\((\d+)\)", title)
    return int(found.group(1)) if found else None


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
        self.sipp_pid: int | None = None
        # Asterisk's open descriptors at the end of each step's offer (about its peak)
        self.peak_fds = 0
        self.fd_limit: int | None = None
        # Requests still running when their step was judged.
        self.stragglers: list[asyncio.Task[None]] = []
        # False once the API answered a GET ?wait= at once without a change:
        # it has no long poll, and the backend polls instead.
        self.long_poll = True

    # --- processes ------------------------------------------------------------------

    async def start_service(self, name: str) -> None:
        log = (OUT_DIR / f"{name}.log").open("wb")
        # The service reads the stack's connections from the environment, as
        # `ivr-auth-dev` gives them (it never looks for the dev stack itself).
        env = {**os.environ, **stack.environment(stack.endpoints(self.cfg))}
        self.procs[name] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ivr_auth.cli", "-c", str(self.config_file), "--log-level", "warning", name,
            stdout=log, stderr=asyncio.subprocess.STDOUT, env=env,
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
        # The load generator: SIPp as every phone, and this process.
        out["sipp"] = [p for p in [self.sipp_pid] if p is not None]
        out["bench"] = [os.getpid()]
        pid_file = cluster.data_dir / "postmaster.pid"
        if pid_file.exists():
            master = int(pid_file.read_text().split()[0])
            backends = children(master)
            out["postgres"] = [master, *backends]
            # The backends serving each service process: those whose client
            # port is one of the process's connections to Postgres. A
            # backend that ends between two readings takes its CPU with it;
            # the pools keep theirs open for the bench's length.
            by_port = {port: pid for pid in backends if (port := backend_port(pid)) is not None}
            for name, proc in self.procs.items():
                ports = client_ports(proc.pid, self.cfg.stack.postgres_port)
                out[f"postgres:{name}"] = [by_port[port] for port in ports if port in by_port]
        return out

    def cpu(self) -> dict[str, float]:
        out = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.pids().items()}
        # Whatever else ran on the machine shows as the difference.
        out[report.MACHINE] = machine_cpu_seconds()
        return out

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
        status = created["status"]
        while self.long_poll and time.monotonic() < deadline:
            asked = time.monotonic()
            url = f"http://{HTTP}/v1/verifications/{r.id}"
            params = {"wait": str(LONG_POLL_SECONDS), "until": "end"}
            async with http.get(url, params=params, headers=headers) as resp:
                state = await resp.json()
            if resp.status == 200 and state["status"] in TERMINAL:
                self.seen(r, state)
                return
            if resp.status != 200 or (state["status"] == status and time.monotonic() - asked < LONG_POLL_SECONDS / 2):
                self.long_poll = False
            else:
                status = state["status"]
        fast = False
        while time.monotonic() < deadline:
            if not fast:
                # Until its keys are heard a request is polled every 2 s, as a
                # patient client would; the API serves that load too.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), 2.0)
                    fast = True
            async with http.get(f"http://{HTTP}/v1/verifications/{r.id}", headers=headers) as resp:
                state = await resp.json()
            if state["status"] in TERMINAL:
                self.seen(r, state)
                return
            if fast:
                await asyncio.sleep(0.025)
        r.status = "timeout"

    @staticmethod
    def seen(r: Request, state: dict[str, Any]) -> None:
        """The client sees the request's result."""
        r.visible = time.time()
        r.status = state["status"]
        r.finished = dt.datetime.fromisoformat(state["finished_at"]).timestamp()

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

    async def step(
        self,
        rate: float,
        seconds: float,
        batch: list[Request],
        send: Any,
        watch: observe.AriObserver,
        warmup: float | None = None,
    ) -> report.Step:
        """Offers ``rate`` for ``seconds``, waits for the requests to end
        (DRAIN_SECONDS at most) and judges them as they stand then. With
        ``warmup``, the CPU of the offer after that many seconds is kept
        apart (the steady part)."""
        watch.reset_peak()
        before = self.cpu()
        start = time.monotonic()
        tasks = []
        warm: tuple[float, dict[str, float]] | None = None
        for n, r in enumerate(batch):
            await asyncio.sleep(max(start + n / rate - time.monotonic(), 0))
            if warmup is not None and warm is None and n >= warmup * rate:
                warm = (time.monotonic(), self.cpu())
            tasks.append(asyncio.create_task(send(r, n)))
        # The calls at once have levelled off by the end of the offer: the busiest moment.
        offered = self.cpu()
        offer_end = time.monotonic()
        offer_wall = offer_end - start
        ast = asterisk.Instance(self.cfg, self.cfg.run_dir, "")
        used, self.fd_limit = open_files(ast.pid())
        self.peak_fds = max(self.peak_fds, used)
        _, pending = await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
        self.stragglers += pending
        wall = time.monotonic() - start
        after = self.cpu()
        # A request's status is set when its task ends; a task still running is judged as it stands.
        ended = {id(r): r.status or "still in progress" for r in batch}
        span = max(r.posted for r in batch) - min(r.posted for r in batch)
        wrong = Counter(f"{r.expected}->{ended[id(r)]}" for r in batch if ended[id(r)] != r.expected)
        delays = [t - r.posted for r in batch if r.posted and (t := watch.created.get(request_key(r)))]
        return report.Step(
            flow=batch[0].flow,
            offered_rate=rate,
            seconds=seconds,
            requests=len(batch),
            achieved_rate=round((len(batch) - 1) / span, 2) if span > 0 else float(len(batch)),
            correct=sum(ended[id(r)] == r.expected for r in batch),
            wrong=dict(wrong),
            peak_channels=watch.peak_channels,
            wall_seconds=round(wall, 2),
            offer_seconds=round(offer_wall, 2),
            offer_cpu_seconds={name: round(offered[name] - before.get(name, 0.0), 3) for name in offered},
            latencies={"request_to_call": delays},
            cpu_seconds={name: round(after[name] - before.get(name, 0.0), 3) for name in after},
            verified=sum(ended[id(r)] == "verified" for r in batch),
            steady_seconds=round(offer_end - warm[0], 3) if warm else 0.0,
            steady_cpu_seconds={name: round(offered[name] - warm[1].get(name, 0.0), 3) for name in offered}
            if warm
            else {},
        )

    async def steady(
        self,
        rate: float,
        seconds: float,
        batch: list[Request],
        send: Any,
        watch: observe.AriObserver,
        http: aiohttp.ClientSession,
        db: observe.DatabaseCounters,
        hooks: observe.WebhookReceiver,
    ) -> tuple[report.Step, report.Window]:
        """One step at ``rate``, accounted from its first request to its last
        webhook (5 s at most after the step): CPU of each process, the
        statements and transactions Postgres ran, the ARI requests made."""
        metrics = {"controller": f"http://{CONTROLLER_METRICS}/metrics", "api": f"http://{HTTP}/metrics"}
        rows_before = await db.requests_today()
        # A backend reports its transactions to pg_stat_database at the end of
        # one at most once a second, and an idle one within STATS_IDLE_SECONDS:
        # the ramp's are let in before the window opens.
        await asyncio.sleep(STATS_IDLE_SECONDS)
        # The API's /metrics asks Postgres too: read before the reset and after the counts.
        ari_before = await observe.ari_requests(http, metrics)
        transactions_before = await db.transactions()
        await db.reset_statements()
        before = self.cpu()
        done = await self.step(rate, seconds, batch, send, watch, warmup=min(STEADY_WARMUP_SECONDS, seconds / 2))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(r.id not in hooks.received for r in batch if r.id):
            await asyncio.sleep(0.05)
        after = self.cpu()
        statements, top = await db.statements()
        closed = time.monotonic()
        # The window's last transactions reported, then the idle service's
        # own (its pollers) over the wait taken off again.
        await asyncio.sleep(STATS_IDLE_SECONDS)
        transactions_after = await db.transactions()
        waited = time.monotonic() - closed
        await asyncio.sleep(IDLE_SAMPLE_SECONDS)
        idle_rate = (await db.transactions() - transactions_after) / IDLE_SAMPLE_SECONDS
        transactions = round(transactions_after - transactions_before - idle_rate * waited)
        ari = observe.difference(await observe.ari_requests(http, metrics), ari_before)
        window = report.Window(
            rate=rate,
            seconds=seconds,
            requests=done.requests,
            verified=done.verified,
            passed=done.passed,
            rows_before=rows_before,
            cpu_seconds={name: round(after[name] - before.get(name, 0.0), 3) for name in after},
            statements=statements,
            transactions=transactions,
            top_statements=top,
            ari_requests=ari,
            steady_cpu_seconds=done.steady_cpu_seconds,
            # the verified calls the rate makes in the steady part, at the share verified in the step
            steady_verified=done.steady_seconds * rate * done.verified / done.requests if done.requests else 0.0,
        )
        print(
            f"bench: steady {rate:g}/s on {rows_before} requests of today: own CPU {window.own_cpu_ms} ms "
            f"per verified call, {window.per_call(statements)} statements, {window.per_call(transactions)} "
            f"transactions; {'pass' if done.passed else 'FAIL: ' + '; '.join(done.failures)}",
            file=sys.stderr,
        )
        return done, window

    async def settle(
        self, http: aiohttp.ClientSession, key: str, requests: list[Request], watch: observe.AriObserver
    ) -> None:
        """Between the flows: what is left of a failed step is canceled or
        waited out, so that the next flow starts on an idle stack."""
        headers = {"Authorization": f"Bearer {key}"}
        for r in requests:
            if r.flow == "ivr-auth" and r.id and r.status not in TERMINAL:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.post(f"http://{HTTP}/v1/verifications/{r.id}/cancel", headers=headers):
                        pass
        if self.stragglers:
            _, pending = await asyncio.wait(self.stragglers, timeout=30)
            for task in pending:
                task.cancel()
            self.stragglers = []
        deadline = time.monotonic() + 60
        while watch.channels > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)


def request_key(r: Request) -> str:
    """The key observe.request_key() files this request's channels under."""
    return uuid_hex(r.id) if r.flow == "ivr-auth" else r.channel


def uuid_hex(text: str) -> str:
    return text.replace("-", "")


def latencies(
    batch: list[Request], invites: dict[str, float], watch: observe.AriObserver, hooks: dict[str, tuple[str, float]]
) -> dict[str, list[float]]:
    """The latencies read after the run (SIPp's trace is complete only then);
    request → call was read when the step was judged."""
    out: dict[str, list[float]] = {name: [] for name in report.LATENCIES if name != "request_to_call"}
    for r in batch:
        if r.flow == "ivr-auth":
            out["api_accept"].append(r.accepted - r.posted)
        if r.number in invites and r.accepted:
            out["accept_to_invite"].append(invites[r.number] - r.accepted)
        keys = watch.keys.get(request_key(r), [])
        if len(keys) >= CODE_LENGTH and r.visible is not None:
            out["last_key_to_visible"].append(r.visible - max(keys))
        if r.id in hooks and r.finished is not None:
            out["terminal_to_webhook"].append(hooks[r.id][1] - r.finished)
    return {name: values for name, values in out.items() if values}


@contextlib.asynccontextmanager
async def bench_stack(cfg: config.Config) -> AsyncIterator[connections.Connections]:
    """The bench's stack, on a database made anew: an earlier run's rows
    would be in the "near empty" tables, and its webhooks still due
    (signed with that run's tenant's secret) reach this run's receiver."""
    cluster = postgres.Cluster(cfg.stack, cfg.run_dir, secrets.load_or_create(cfg.run_dir).postgres_password)
    if await cluster.is_running():
        await cluster.stop()
    shutil.rmtree(cluster.data_dir, ignore_errors=True)
    try:
        yield await stack.up(cfg)
    finally:
        await stack.down(cfg)


async def ramp(
    bench: Bench,
    plan: list[tuple[float, int]],
    batches: list[list[Request]],
    send: Any,
    watch: observe.AriObserver,
    seconds: float,
) -> tuple[list[report.Step], str]:
    """Steps up the rate until a step fails; the steps run, and the bound
    of the bench that ended the ramp first (empty when none did)."""
    steps: list[report.Step] = []
    began = time.monotonic()
    for (rate, _), batch in zip(plan, batches, strict=True):
        if rate * CALL_SECONDS > MAX_CALLS:
            return (
                steps,
                f"bench bound: {rate:g}/s would hold about {rate * CALL_SECONDS:.0f} calls, the RTP range {MAX_CALLS}",
            )
        if time.monotonic() - began + seconds + CALL_SECONDS + 2 > FLOW_BUDGET_SECONDS:
            return steps, f"bench bound: {rate:g}/s would end past the {FLOW_BUDGET_SECONDS:g} s each flow is given"
        done = await bench.step(rate, seconds, batch, send, watch)
        steps.append(done)
        cores = ", ".join(f"{name} {done.core_share(name)}" for name in (*sorted(done.offer_cpu_seconds), "others"))
        verdict = "pass" if done.passed else "FAIL: " + "; ".join(done.failures)
        print(
            f"bench: {done.flow} {rate:g}/s for {seconds:g} s: {done.correct}/{done.requests} correct, "
            f"peak {done.peak_channels} calls, {done.wall_seconds} s; cores: {cores}; {verdict}",
            file=sys.stderr,
        )
        if not done.passed:
            break  # a higher rate will not do better
    return steps, ""


async def main(quick: bool) -> dict[str, Any]:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    config_file = OUT_DIR / "ivr-auth-bench.yaml"
    settings: dict[str, Any] = {
        key: dict(value) if isinstance(value, dict) else value for key, value in SETTINGS.items()
    }
    # Which Asterisk to measure: the stack's default (22, from the tree make
    # setup builds on Debian 12), or IVR_AUTH_BENCH_ASTERISK_ROOT ("host": 16 there).
    if root := os.environ.get("IVR_AUTH_BENCH_ASTERISK_ROOT"):
        settings["stack"]["asterisk_root"] = root
    config_file.write_text(yaml.safe_dump(settings))
    cfg = config.load(config_file, environ={})
    plan = steps_plan(quick)
    seconds = QUICK_STEP_SECONDS if quick else STEP_SECONDS
    rng = random.Random(7)
    ours_batches, base_batches = plan_requests(1, plan, rng), plan_requests(2, plan, rng)
    steady_rate, steady_seconds = (QUICK_STEADY_RATE, QUICK_STEADY_SECONDS) if quick else (STEADY_RATE, STEADY_SECONDS)
    steady_plan = [(steady_rate, round(steady_rate * steady_seconds))]
    steady_batches = [plan_requests(3, steady_plan, rng)[0], plan_requests(4, steady_plan, rng)[0]]
    prefill_count = QUICK_PREFILL if quick else PREFILL
    bench = Bench(cfg, config_file, quick)
    total_calls = sum(len(b) for b in (*ours_batches, *steady_batches, *base_batches))
    print(
        f"bench: up to {len(plan)} steps of {seconds:g} s a flow, at most {total_calls} calls; stack in {cfg.run_dir}",
        file=sys.stderr,
    )
    # Every request's client waits on a connection of its own (long polls).
    connector = aiohttp.TCPConnector(limit=MAX_CALLS)
    async with bench_stack(cfg) as endpoints, aiohttp.ClientSession(connector=connector) as http:
        async with store_mod.Store.from_url(endpoints.database_url, endpoints.server_secret, max_size=2) as store:
            tenant, key = await store.tenants.create(f"bench-{int(time.time())}")
            secret = await store.tenants.webhook_secret(tenant.id)
        assert secret is not None
        db = await observe.DatabaseCounters.connect(endpoints.database_url)
        hooks = observe.WebhookReceiver(secret)
        watch = observe.AriObserver(http, endpoints.ari_url, endpoints.ari_username, endpoints.ari_password)

        def on_key(request: str, count: int) -> None:
            if count >= CODE_LENGTH and (event := bench.wake.get(request)):
                event.set()

        watch.on_key = on_key
        phones = sipp_load.LoadHandsets(
            port=cfg.trunk.port,
            host=cfg.trunk.host,
            media_port=7000,
            rows=rows([*ours_batches, *steady_batches, *base_batches]),
            calls=total_calls,
            timeout=1200,
            trace=True,
        )
        ari = ari_client.AriClient(http, endpoints.ari_url, endpoints.ari_username, endpoints.ari_password)
        ours_steps: list[report.Step] = []
        base_steps: list[report.Step] = []
        steady: list[tuple[report.Step, report.Window]] = []
        prefilled: dict[str, float] = {}
        bounds: dict[str, str] = {}
        try:
            await hooks.start()
            await watch.start()
            await bench.start_service("api")
            await bench.start_service("controller")
            await wait_ready(http)
            await phones.start()
            bench.sipp_pid = phones.pid

            # A request the server drops (Asterisk's HTTP server closes
            # sessions past its sessionlimit) is an outcome of the step.
            async def send_ours(r: Request, n: int) -> None:
                try:
                    await bench.ours(http, key, hooks.url, r)
                except aiohttp.ClientError as exc:
                    r.status = f"api error ({type(exc).__name__})"

            async def send_base(r: Request, n: int) -> None:
                try:
                    await bench.baseline(ari, watch, r, n)
                except errors.AriError as exc:
                    r.status = f"ari error ({type(exc).__name__})"

            ours_steps, bounds["ivr-auth"] = await ramp(bench, plan, ours_batches, send_ours, watch, seconds)
            await bench.settle(http, key, [r for b in ours_batches for r in b], watch)
            # The ramp warmed the service up; the steady step on the tables as
            # it left them, then with a day's volume written in first.
            steady.append(
                await bench.steady(steady_rate, steady_seconds, steady_batches[0], send_ours, watch, http, db, hooks)
            )
            await bench.settle(http, key, steady_batches[0], watch)
            prefilled = await prefill.prefill_day(db.conn, str(tenant.id), prefill_count)
            print(f"bench: prefilled today's tables: {prefilled}", file=sys.stderr)
            steady.append(
                await bench.steady(steady_rate, steady_seconds, steady_batches[1], send_ours, watch, http, db, hooks)
            )
            await bench.settle(http, key, steady_batches[1], watch)
            base_steps, bounds["baseline"] = await ramp(bench, plan, base_batches, send_base, watch, seconds)
            await bench.settle(http, key, [], watch)
            await asyncio.sleep(1)  # the last webhooks
        finally:
            await phones.stop()
            await phones.wait(30)
            await bench.stop_services()
            await watch.stop()
            await hooks.stop()
            await db.close()
    invites: dict[str, float] = {}
    for number, at in phones.invites:
        invites.setdefault(number, at.timestamp())
    for results, batches in ((ours_steps, ours_batches), (base_steps, base_batches)):
        for step_result, batch in zip(results, batches, strict=False):
            step_result.latencies.update(latencies(batch, invites, watch, hooks.received))
    for (step_result, window), batch, label in zip(
        steady, steady_batches, ("steady", "steady, prefilled"), strict=False
    ):
        step_result.latencies.update(latencies(batch, invites, watch, hooks.received))
        step_result.flow = f"ivr-auth {label}"
        window.latencies = step_result.latencies
    rtp = SETTINGS["stack"]
    meta = {
        "date": dt.date.today().isoformat(),
        "cores": os.cpu_count(),
        "machine": f"{os.cpu_count()} cores, {platform.platform()}, Asterisk {await asterisk_version(cfg)}",
        "note": (
            "Everything on one machine over loopback: Postgres, Asterisk, the API and controller processes, "
            "SIPp as the phones and this bench. Each call: the Japanese prompt, keys after 3 s, 6 digits 0.3 s "
            f"apart; one request in {WRONG_EVERY} keys a wrong code (must end failed). Each step offers its rate "
            f"for {seconds:g} s, then waits at most {DRAIN_SECONDS:g} s for its requests to end; it passes when "
            f"every request is in its correct state by then, the p95 of request → call is at most "
            f"{report.MAX_CALL_DELAY_P95:g} s and the bench sent at least {report.MIN_ACHIEVED_SHARE:.0%} of the "
            f"rate. The ramp of each flow stops at its first failing step. Then ivr-auth again at a steady "
            f"{steady_rate:g}/s for {steady_seconds:g} s (the summary's per-call figures: the CPU of the offer after "
            f"its first {min(STEADY_WARMUP_SECONDS, steady_seconds / 2):g} s), and once more after "
            f"{prefill_count} ended requests of today were written into the tables. The simulated web backend "
            + (
                f"waits for each request's end with GET ?wait={LONG_POLL_SECONDS}&until=end"
                if bench.long_poll
                else "polls GET every 2 s until the keys are heard, then every 25 ms (the API has no ?wait=)"
            )
            + f". Bad webhook signatures: {hooks.bad_signatures}."
        ),
        "limits": (
            f"RTP {rtp['rtp_start']}-{rtp['rtp_end']} (2 ports a call: the ramp stops before a step of more than "
            f"{MAX_CALLS} calls at once); Asterisk without maxcalls, open files {bench.peak_fds} at most of "
            f"{bench.fd_limit or 'unlimited'}; Postgres max_connections 200 (API and controller pools 20 each); "
            f"trunk.max_channels {SETTINGS['trunk']['max_channels']}, calls_per_second "
            f"{SETTINGS['trunk']['calls_per_second']}; each flow's ramp {FLOW_BUDGET_SECONDS:g} s at most."
        ),
        "quick": quick,
        "step_seconds": seconds,
        "plan": [{"rate": rate, "requests": count} for rate, count in plan],
        "prefill": prefilled,
        "client_wait": f"GET ?wait={LONG_POLL_SECONDS}" if bench.long_poll else "polls",
        "bad_webhook_signatures": hooks.bad_signatures,
    }
    windows = [window for _, window in steady] + [None] * (2 - len(steady))
    return report.build(meta, ours_steps, base_steps, bounds, windows, extra=[s for s, _ in steady])


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
    found = await asyncio.to_thread(install.resolve(cfg.stack).version)
    return ".".join(map(str, found)) if found else "(version unknown)"
