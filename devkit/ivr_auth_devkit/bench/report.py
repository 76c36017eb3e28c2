"""The bench's figures from its per-request records: percentiles, the
highest rate and concurrency at which every request ended correctly, the
JSON report, the markdown table and the plot. No I/O but the writing."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The latencies measured for ivr-auth, in the order the report shows them.
LATENCIES = {
    "api_accept": "API accept (POST → 201, client side)",
    "request_to_call": "request sent → its call created in Asterisk (ARI ChannelCreated)",
    "accept_to_invite": "accepted → INVITE received by SIPp (its -trace_msg clock)",
    "last_key_to_visible": "last key heard by Asterisk (ARI) → result visible to the client's GET",
    "terminal_to_webhook": "terminal state (finished_at) → webhook received",
}
BASELINE_LATENCIES = {
    "request_to_call": "ARI originate sent → its channel created (ARI ChannelCreated)",
    "accept_to_invite": "ARI originate returned → INVITE received by SIPp",
    "last_key_to_visible": "last key heard (ARI) → result set by the dialplan (ARI ChannelVarset)",
}
# A step the system did not keep up with fails even if every request ended
# well: p95 of request → call above this means calls queue up.
MAX_CALL_DELAY_P95 = 2.0
# Below this share of the offered rate the bench itself fell behind.
MIN_ACHIEVED_SHARE = 0.95
# Processes that generate the load rather than serve it.
LOAD_GENERATOR = ("sipp", "bench")
# The whole machine's CPU, every process (in cpu_seconds beside the processes').
MACHINE = "machine"


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(pct / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 1)

    return {"n": len(values), **{f"p{p}_ms": ms(percentile(values, p)) for p in (50, 95, 99)}}


@dataclass
class Step:
    """One offered rate held for ``seconds``: what was sent, how it ended,
    what it cost."""

    flow: str  # "ivr-auth" or "baseline"
    offered_rate: float
    seconds: float
    requests: int
    achieved_rate: float
    correct: int
    wrong: dict[str, int]
    peak_channels: int
    # offer and drain
    wall_seconds: float = 0.0
    # the offer alone, and the CPU used in it: what cores busy are taken over
    offer_seconds: float = 0.0
    offer_cpu_seconds: dict[str, float] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    # process name -> CPU seconds used during the step
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    verified: int = 0
    # the offer after its warm-up (the calls at once levelled off): its
    # length and the CPU used in it, where asked for (the steady step)
    steady_seconds: float = 0.0
    steady_cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        """Why the step does not count as kept up with; empty when it does."""
        out = []
        if self.correct < self.requests:
            wrong = ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.wrong.items()))
            out.append(f"{self.requests - self.correct} of {self.requests} not in their correct state ({wrong})")
        delay = percentile(self.latencies.get("request_to_call", []), 95)
        if delay is None or delay > MAX_CALL_DELAY_P95:
            shown = "none dialled" if delay is None else f"{delay:.1f} s"
            out.append(f"fell behind: request → call p95 {shown} (bound {MAX_CALL_DELAY_P95:g} s)")
        if self.achieved_rate < MIN_ACHIEVED_SHARE * self.offered_rate:
            out.append(f"the load generator fell behind: {self.achieved_rate}/s sent of {self.offered_rate}/s")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def core_share(self, name: str) -> float | None:
        """CPU of one process during the offer, in cores (1.0: one core busy);
        "others": the machine's CPU that none of the bench's processes used."""
        cpu = self.offer_cpu_seconds
        if not self.offer_seconds or MACHINE not in cpu:
            return None
        if name == "others":
            # A backend's share ("postgres:api") is inside "postgres" already.
            named = sum(sec for key, sec in cpu.items() if key != MACHINE and ":" not in key)
            return round(max(cpu[MACHINE] - named, 0.0) / self.offer_seconds, 2)
        return round(cpu[name] / self.offer_seconds, 2) if name in cpu else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["latencies"] = {name: summary(values) for name, values in self.latencies.items()}
        out["passed"] = self.passed
        out["failures"] = self.failures
        out["cores_busy"] = {name: self.core_share(name) for name in (*self.offer_cpu_seconds, "others")}
        out["cpu_seconds_per_verified_call"] = {
            name: round(sec / self.verified, 4) if self.verified else None for name, sec in self.cpu_seconds.items()
        }
        return out


def capacity(steps: Sequence[Step], bound: str = "") -> dict[str, Any]:
    """The ramp's ceiling: the highest offered rate, and the highest
    concurrency seen, over the steps up to the first that failed.
    ``bound``: why the ramp stopped early without a failing step (a limit
    of the bench, not of the system under test)."""
    good: list[Step] = []
    failed: Step | None = None
    for s in steps:
        if not s.passed:
            failed = s
            break
        good.append(s)
    if failed is not None:
        stopped_by = f"{failed.offered_rate:g}/s failed: " + "; ".join(failed.failures)
    elif bound:
        stopped_by = bound
    else:
        stopped_by = "the top step passed"
    return {
        "max_sustained_rate": max((s.offered_rate for s in good), default=None),
        "max_concurrent_calls": max((s.peak_channels for s in good), default=None),
        "ceiling_reached": failed is not None,
        "stopped_by": stopped_by,
    }


# What "own CPU" adds up: the service's two processes and the Postgres
# backends serving their connections (bench.run's cpu(): found by the client
# port each backend's title names). Postgres's own background processes
# (checkpointer, WAL writer, autovacuum) are left out: they are in
# "postgres" with everything else, shown beside.
OWN_CPU = ("api", "controller", "postgres:api", "postgres:controller")
# issue 17's targets: figure -> (comparison, bound).
TARGETS: dict[str, tuple[str, float]] = {
    "own_cpu_ms_per_verified_call": ("<=", 15.0),
    "cpu_growth_ratio": ("<=", 1.1),
    "ratio_vs_baseline": (">=", 0.75),
    "last_key_to_visible_p99_ms": ("<=", 20.0),
    "terminal_to_webhook_p99_ms": ("<=", 100.0),
}


@dataclass
class Window:
    """A steady step at a fixed rate well below saturation, accounted from
    its first request to its last webhook: CPU by process, and what the
    database and ARI were asked meanwhile (None: not measured). The CPU
    per call is the steady part's (``steady_cpu_seconds`` over
    ``steady_verified``, the verified calls the rate makes in it) where
    measured: the step's start and drain run fewer calls than the rate does,
    over which the processes' own background would be spread."""

    rate: float
    seconds: float
    requests: int
    verified: int
    passed: bool
    # requests in the day's tables when the step began
    rows_before: int
    cpu_seconds: dict[str, float]
    # pg_stat_statements calls (top-level statements, BEGIN/COMMIT included) and
    # pg_stat_database transactions committed or rolled back, every client's
    statements: int | None = None
    transactions: int | None = None
    # the most called statements: {"query": ..., "calls": ...}
    top_statements: list[dict[str, Any]] = field(default_factory=list)
    # process -> HTTP method -> ARI requests (its /metrics' ivr_auth_ari_requests_total)
    ari_requests: dict[str, dict[str, int]] | None = None
    latencies: dict[str, list[float]] = field(default_factory=dict)
    steady_cpu_seconds: dict[str, float] = field(default_factory=dict)
    steady_verified: float = 0.0

    def per_call(self, value: float | None, scale: float = 1.0) -> float | None:
        return None if value is None or not self.verified else round(value * scale / self.verified, 2)

    def cpu_ms_per_call(self, seconds: float) -> float | None:
        if self.steady_cpu_seconds:
            return round(seconds * 1000 / self.steady_verified, 2) if self.steady_verified else None
        return self.per_call(seconds, 1000)

    @property
    def cpu(self) -> dict[str, float]:
        return self.steady_cpu_seconds or self.cpu_seconds

    @property
    def own_cpu_ms(self) -> float | None:
        return self.cpu_ms_per_call(sum(self.cpu.get(name, 0.0) for name in OWN_CPU))

    def figures(self) -> dict[str, Any]:
        ari = self.ari_requests
        return {
            "rate": self.rate,
            "seconds": self.seconds,
            "requests": self.requests,
            "verified": self.verified,
            "passed": self.passed,
            "rows_before": self.rows_before,
            "own_cpu_ms_per_verified_call": self.own_cpu_ms,
            "cpu_ms_per_verified_call": {
                name: self.cpu_ms_per_call(sec) for name, sec in sorted(self.cpu.items()) if name != MACHINE
            },
            "db_statements_per_verified_call": self.per_call(self.statements),
            "db_transactions_per_verified_call": self.per_call(self.transactions),
            "ari_requests_per_verified_call": None
            if ari is None
            else {
                proc: {"total": self.per_call(sum(by.values())), **{m: self.per_call(n) for m, n in sorted(by.items())}}
                for proc, by in sorted(ari.items())
            },
            "latency": {name: summary(values) for name, values in sorted(self.latencies.items())},
            "top_statements": [
                {**row, "per_verified_call": self.per_call(row["calls"])} for row in self.top_statements
            ],
        }


def verdict(value: float | None, comparison: str, bound: float) -> str:
    if value is None:
        return "not measured"
    met = value <= bound if comparison == "<=" else value >= bound
    return "met" if met else "missed"


def p99_ms(window: Window | None, name: str) -> float | None:
    if window is None:
        return None
    found = percentile(window.latencies.get(name, []), 99)
    return None if found is None else round(found * 1000, 1)


def summarize(
    empty: Window | None, full: Window | None, ours: dict[str, Any], baseline: dict[str, Any]
) -> dict[str, Any]:
    """issue 17's figures: own CPU, latencies and round trips per call from
    the steady step on near-empty tables; growth from the same step with the
    day's volume in them; the rate against the dialplan baseline from the ramps."""
    own = empty.own_cpu_ms if empty else None
    own_full = full.own_cpu_ms if full else None
    growth = round(own_full / own, 2) if own and own_full is not None else None
    mine, theirs = ours.get("max_sustained_rate"), baseline.get("max_sustained_rate")
    ratio = round(mine / theirs, 2) if mine is not None and theirs else None
    figures = {
        "own_cpu_ms_per_verified_call": own,
        "cpu_growth_ratio": growth,
        "ratio_vs_baseline": ratio,
        "last_key_to_visible_p99_ms": p99_ms(empty, "last_key_to_visible"),
        "terminal_to_webhook_p99_ms": p99_ms(empty, "terminal_to_webhook"),
    }
    latency = empty.figures()["latency"] if empty else {}
    return {
        **figures,
        "own_cpu_ms_per_verified_call_full_tables": own_full,
        # a ratio against a baseline whose ramp never failed is an upper bound
        "baseline_ceiling_reached": baseline.get("ceiling_reached"),
        "db_statements_per_verified_call": empty.figures()["db_statements_per_verified_call"] if empty else None,
        "db_transactions_per_verified_call": empty.figures()["db_transactions_per_verified_call"] if empty else None,
        "ari_requests_per_verified_call": empty.figures()["ari_requests_per_verified_call"] if empty else None,
        "last_key_to_visible_ms": latency.get("last_key_to_visible"),
        "terminal_to_webhook_ms": latency.get("terminal_to_webhook"),
        "targets": {
            name: {"value": figures[name], "target": f"{op} {bound:g}", "verdict": verdict(figures[name], op, bound)}
            for name, (op, bound) in TARGETS.items()
        },
        "steady": empty.figures() if empty else None,
        "steady_full_tables": full.figures() if full else None,
    }


def _per_verified(steps: Sequence[Step], names: Sequence[str]) -> dict[str, float | None]:
    verified = sum(s.verified for s in steps)
    return {
        name: round(sum(s.cpu_seconds.get(name, 0.0) for s in steps) / verified, 4) if verified else None
        for name in names
    }


def build(
    meta: dict[str, Any],
    ours: Sequence[Step],
    baseline: Sequence[Step],
    bounds: dict[str, str] | None = None,
    steady: Sequence[Window | None] = (None, None),
    extra: Sequence[Step] = (),
) -> dict[str, Any]:
    """``steady``: the steady step on near-empty tables, and with the day's
    volume; ``extra``: steps listed with the rest but outside either ramp."""
    bounds = bounds or {}
    mine, base = capacity(ours, bounds.get("ivr-auth", "")), capacity(baseline, bounds.get("baseline", ""))

    def ratio(key: str) -> float | None:
        a, b = mine[key], base[key]
        return round(a / b, 2) if a is not None and b else None

    # CPU per call over the steps that passed: a failing step's stragglers are not a cost per call.
    ours_good = [s for s in ours if s.passed]
    base_good = [s for s in baseline if s.passed]
    names = sorted({name for s in ours for name in s.cpu_seconds} - {MACHINE})
    return {
        **meta,
        "summary": summarize(steady[0], steady[1], mine, base),
        "ivr_auth": {
            **mine,
            "cpu_seconds_per_verified_call": _per_verified(ours_good, names),
            "latency": {name: summary([v for s in ours_good for v in s.latencies.get(name, [])]) for name in LATENCIES},
        },
        "baseline": {
            **base,
            "cpu_seconds_per_verified_call": _per_verified(base_good, ["asterisk", *LOAD_GENERATOR]),
            "latency": {
                name: summary([v for s in base_good for v in s.latencies.get(name, [])]) for name in BASELINE_LATENCIES
            },
        },
        "ratio_to_baseline": {
            "rate": ratio("max_sustained_rate"),
            "concurrency": ratio("max_concurrent_calls"),
            # A ratio against a baseline that never failed is an upper bound.
            "baseline_ceiling_reached": base["ceiling_reached"],
        },
        "steps": [s.as_dict() for s in (*ours, *extra, *baseline)],
    }


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _bounded(flow: dict[str, Any], key: str) -> str:
    """A capacity figure, "≥" when the ramp stopped without a failing step."""
    value = flow[key]
    if value is None:
        return "none passed"
    return str(value) if flow["ceiling_reached"] else f"≥ {value}"


def _ratio(report: dict[str, Any], key: str) -> str:
    value = report["ratio_to_baseline"][key]
    if value is None:
        return "-"
    ours, base = report["ivr_auth"]["ceiling_reached"], report["baseline"]["ceiling_reached"]
    if ours and not base:
        return f"≤ {value}"
    if base and not ours:
        return f"≥ {value}"
    return str(value) if ours else f"{value} (neither ceiling reached)"


def markdown(report: dict[str, Any]) -> str:
    ours, base = report["ivr_auth"], report["baseline"]
    lines = [
        f"# ivr-auth bench, {report['date']}",
        "",
        f"{report['machine']}. {report['note']}",
        "",
        *summary_markdown(report.get("summary")),
        "| | ivr-auth | dialplan baseline | ratio |",
        "|---|---|---|---|",
        f"| highest sustained rate (verifications/s, step passed) | {_bounded(ours, 'max_sustained_rate')} "
        f"| {_bounded(base, 'max_sustained_rate')} | {_ratio(report, 'rate')} |",
        f"| highest concurrency (calls at once, step passed) | {_bounded(ours, 'max_concurrent_calls')} "
        f"| {_bounded(base, 'max_concurrent_calls')} | {_ratio(report, 'concurrency')} |",
        f"| stopped by | {ours['stopped_by']} | {base['stopped_by']} | |",
        "",
        "Latencies over the steps that passed:",
        "",
        "| latency | n | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for flow, names, prefix in ((ours, LATENCIES, ""), (base, BASELINE_LATENCIES, "baseline: ")):
        for name, label in names.items():
            s = flow["latency"][name]
            lines.append(
                f"| {prefix}{label} | {s['n']} | {_cell(s['p50_ms'])} | {_cell(s['p95_ms'])} | {_cell(s['p99_ms'])} |"
            )
    lines += ["", "| CPU seconds per verified call (steps that passed) | ivr-auth | baseline |", "|---|---|---|"]
    for name in ("controller", "api", "asterisk", "postgres", "postgres:controller", "postgres:api", *LOAD_GENERATOR):
        mine = ours["cpu_seconds_per_verified_call"].get(name)
        theirs = base["cpu_seconds_per_verified_call"].get(name)
        label = f"{name} (load generator)" if name in LOAD_GENERATOR else name
        lines.append(f"| {label} | {_cell(mine)} | {_cell(theirs)} |")
    lines += [
        "",
        f"Cores busy: CPU seconds during the step's offer over its length; the machine has {report.get('cores', '?')}.",
        "",
        "| flow | offered/s for s | achieved/s | requests | correct | peak calls | request → call p95 ms "
        "| cores: asterisk / controller+api+postgres / sipp / bench / others / machine | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["steps"]:
        cores = s["cores_busy"]
        ours_procs = sum(cores.get(n) or 0.0 for n in ("controller", "api", "postgres"))
        generator = " / ".join(_cell(cores.get(name)) for name in (*LOAD_GENERATOR, "others", MACHINE))
        busy = f"{_cell(cores.get('asterisk'))} / {ours_procs:.2f} / {generator}"
        verdict = "pass" if s["passed"] else "FAIL: " + "; ".join(s["failures"])
        delay = s["latencies"].get("request_to_call", {}).get("p95_ms")
        lines.append(
            f"| {s['flow']} | {s['offered_rate']:g} for {s['seconds']:g} | {s['achieved_rate']} | {s['requests']} "
            f"| {s['correct']} | {s['peak_channels']} | {_cell(delay)} | {busy} | {verdict} |"
        )
    if report.get("limits"):
        lines += ["", "Limits of the bench stack (not of the system under test): " + report["limits"]]
    return "\n".join(lines) + "\n"


TARGET_LABELS = {
    "own_cpu_ms_per_verified_call": "own CPU per verified call, ms (API + controller + their Postgres backends)",
    "cpu_growth_ratio": "own CPU with the day's volume in the tables ÷ with them near empty",
    "ratio_vs_baseline": "highest sustained rate ÷ the dialplan baseline's",
    "last_key_to_visible_p99_ms": "last key → result visible to the client, p99 ms",
    "terminal_to_webhook_p99_ms": "terminal state → webhook received, p99 ms",
}


def summary_markdown(found: dict[str, Any] | None) -> list[str]:
    """The summary's targets and per-call figures, as report.md's first table."""
    if not found:
        return []
    steady, full = found.get("steady") or {}, found.get("steady_full_tables") or {}
    lines = ["## Summary (issue 17's targets)", "", "| figure | value | target | |", "|---|---|---|---|"]
    for name, target in found["targets"].items():
        lines.append(
            f"| {TARGET_LABELS.get(name, name)} | {_cell(target['value'])} | {target['target']} | {target['verdict']} |"
        )
    ari = found.get("ari_requests_per_verified_call") or {}
    ari_text = "; ".join(f"{proc} {by.get('total')}" for proc, by in ari.items()) or "-"
    lines += [
        "",
        f"Per verified call at a steady {_cell(steady.get('rate'))}/s for {_cell(steady.get('seconds'))} s "
        f"({_cell(steady.get('verified'))} verified of {_cell(steady.get('requests'))}, "
        f"{_cell(steady.get('rows_before'))} requests already in the day's tables): "
        f"database statements {_cell(found.get('db_statements_per_verified_call'))}, "
        f"transactions {_cell(found.get('db_transactions_per_verified_call'))}, ARI requests {ari_text}. "
        f"With {_cell(full.get('rows_before'))} requests already in the tables: own CPU "
        f"{_cell(found.get('own_cpu_ms_per_verified_call_full_tables'))} ms, database statements "
        f"{_cell(full.get('db_statements_per_verified_call'))}.",
        "",
    ]
    return lines


def plot(report: dict[str, Any], path: Path) -> None:
    """Above: p50 and p95 of each latency against the offered rate, a
    failed step ringed. Below: calls at once and cores busy per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, low) = plt.subplots(2, 1, figsize=(10, 9), sharex=True, height_ratios=(3, 2))
    for flow, names in (("ivr-auth", LATENCIES), ("baseline", BASELINE_LATENCIES)):
        steps = [s for s in report["steps"] if s["flow"] == flow]
        rates = [s["offered_rate"] for s in steps]
        for name in names:
            for pct, style in (("p50_ms", "-o"), ("p95_ms", "--x")):
                values = [s["latencies"].get(name, {}).get(pct) for s in steps]
                if any(v is not None for v in values):
                    ax.plot(
                        rates, [math.nan if v is None else v for v in values], style, label=f"{flow} {name} {pct[:3]}"
                    )
        failed = [s for s in steps if not s["passed"]]
        for s in failed:
            value = s["latencies"].get("request_to_call", {}).get("p95_ms")
            if value:
                ax.plot([s["offered_rate"]], [value], "o", ms=14, mfc="none", mec="red")
        low.plot(rates, [s["peak_channels"] for s in steps], "-o", label=f"{flow}: peak calls at once")
        for s in failed:
            low.plot([s["offered_rate"]], [s["peak_channels"]], "o", ms=14, mfc="none", mec="red")
    ax.axhline(MAX_CALL_DELAY_P95 * 1000, color="red", lw=0.8, ls=":", label="bound on request → call p95")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title(f"ivr-auth bench {report['date']}: latency against offered load (red ring: step failed)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    low.set_xlabel("offered load (new verifications per second, each held for the step's duration)")
    low.set_ylabel("calls at once")
    low.grid(True, alpha=0.3)
    cores = low.twinx()
    for flow, style in (("ivr-auth", "--s"), ("baseline", ":^")):
        steps = [s for s in report["steps"] if s["flow"] == flow]
        total = [s["cores_busy"].get(MACHINE) or 0.0 for s in steps]
        cores.plot(
            [s["offered_rate"] for s in steps], total, style, color="grey", label=f"{flow}: cores busy (machine)"
        )
    cores.set_ylabel("cores busy")
    handles = low.get_legend_handles_labels()[0] + cores.get_legend_handles_labels()[0]
    low.legend(handles=handles, fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(report: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "report.json", out_dir / "report.md", out_dir / "latency.png"]
    paths[0].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    paths[1].write_text(markdown(report))
    plot(report, paths[2])
    return paths
