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
    "accept_to_invite": "accepted → INVITE received by SIPp (its -trace_msg clock)",
    "last_key_to_visible": "last key heard by Asterisk (ARI) → result visible to GET (25 ms polls)",
    "terminal_to_webhook": "terminal state (finished_at) → webhook received",
}
BASELINE_LATENCIES = {
    "accept_to_invite": "ARI originate returned → INVITE received by SIPp",
    "last_key_to_visible": "last key heard (ARI) → result set by the dialplan (ARI ChannelVarset)",
}


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
    """One offered rate: what was sent, how it ended, what it cost."""

    flow: str  # "ivr-auth" or "baseline"
    offered_rate: float
    requests: int
    achieved_rate: float
    correct: int
    wrong: dict[str, int]
    peak_channels: int
    latencies: dict[str, list[float]] = field(default_factory=dict)
    # process name -> CPU seconds used during the step
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    verified: int = 0

    @property
    def all_correct(self) -> bool:
        return self.correct == self.requests

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["latencies"] = {name: summary(values) for name, values in self.latencies.items()}
        out["all_correct"] = self.all_correct
        out["cpu_seconds_per_verified_call"] = {
            name: round(sec / self.verified, 4) if self.verified else None for name, sec in self.cpu_seconds.items()
        }
        return out


def capacity(steps: Sequence[Step]) -> dict[str, float | int | None]:
    """The highest offered rate, and the highest concurrency seen, over the
    steps in which every request ended in its correct state."""
    good = [s for s in steps if s.all_correct]
    return {
        "max_sustained_rate": max((s.offered_rate for s in good), default=None),
        "max_concurrent_calls": max((s.peak_channels for s in good), default=None),
    }


def build(meta: dict[str, Any], ours: Sequence[Step], baseline: Sequence[Step]) -> dict[str, Any]:
    mine, base = capacity(ours), capacity(baseline)

    def ratio(key: str) -> float | None:
        a, b = mine[key], base[key]
        return round(a / b, 2) if a is not None and b else None

    cpu: dict[str, list[float]] = {}
    verified = sum(s.verified for s in ours)
    for step in ours:
        for name, sec in step.cpu_seconds.items():
            cpu.setdefault(name, []).append(sec)
    base_verified = sum(s.verified for s in baseline)
    base_cpu = sum(s.cpu_seconds.get("asterisk", 0.0) for s in baseline)
    return {
        **meta,
        "ivr_auth": {
            **mine,
            "cpu_seconds_per_verified_call": {
                name: round(sum(secs) / verified, 4) if verified else None for name, secs in cpu.items()
            },
            "latency": {name: summary([v for s in ours for v in s.latencies.get(name, [])]) for name in LATENCIES},
        },
        "baseline": {
            **base,
            "cpu_seconds_per_verified_call": {
                "asterisk": round(base_cpu / base_verified, 4) if base_verified else None
            },
            "latency": {
                name: summary([v for s in baseline for v in s.latencies.get(name, [])]) for name in BASELINE_LATENCIES
            },
        },
        "ratio_to_baseline": {"rate": ratio("max_sustained_rate"), "concurrency": ratio("max_concurrent_calls")},
        "steps": [s.as_dict() for s in (*ours, *baseline)],
    }


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def markdown(report: dict[str, Any]) -> str:
    ours, base = report["ivr_auth"], report["baseline"]
    lines = [
        f"# ivr-auth bench, {report['date']}",
        "",
        f"{report['machine']}. {report['note']}",
        "",
        "| | ivr-auth | dialplan baseline | ratio |",
        "|---|---|---|---|",
        f"| highest sustained rate (requests/s, all correct) | {_cell(ours['max_sustained_rate'])} "
        f"| {_cell(base['max_sustained_rate'])} | {_cell(report['ratio_to_baseline']['rate'])} |",
        f"| highest concurrency (calls at once, all correct) | {_cell(ours['max_concurrent_calls'])} "
        f"| {_cell(base['max_concurrent_calls'])} | {_cell(report['ratio_to_baseline']['concurrency'])} |",
        "",
        "| latency | n | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for name, label in LATENCIES.items():
        s = ours["latency"][name]
        lines.append(f"| {label} | {s['n']} | {_cell(s['p50_ms'])} | {_cell(s['p95_ms'])} | {_cell(s['p99_ms'])} |")
    for name, label in BASELINE_LATENCIES.items():
        s = base["latency"][name]
        lines.append(
            f"| baseline: {label} | {s['n']} | {_cell(s['p50_ms'])} | {_cell(s['p95_ms'])} | {_cell(s['p99_ms'])} |"
        )
    lines += ["", "| CPU seconds per verified call | ivr-auth | baseline |", "|---|---|---|"]
    for name in ("controller", "api", "asterisk", "postgres"):
        mine = ours["cpu_seconds_per_verified_call"].get(name)
        theirs = base["cpu_seconds_per_verified_call"].get(name)
        lines.append(f"| {name} | {_cell(mine)} | {_cell(theirs)} |")
    lines += [
        "",
        "| flow | offered/s | achieved/s | requests | correct | peak calls | wrong outcomes |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in report["steps"]:
        lines.append(
            f"| {s['flow']} | {s['offered_rate']} | {s['achieved_rate']} | {s['requests']} | {s['correct']} "
            f"| {s['peak_channels']} | {_cell(s['wrong'] or None)} |"
        )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """p50 and p95 of each latency against the offered rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for flow, names in (("ivr-auth", LATENCIES), ("baseline", BASELINE_LATENCIES)):
        steps = [s for s in report["steps"] if s["flow"] == flow]
        rates = [s["offered_rate"] for s in steps]
        for name in names:
            for pct, style in (("p50_ms", "-o"), ("p95_ms", "--x")):
                values = [s["latencies"].get(name, {}).get(pct) for s in steps]
                if any(v is not None for v in values):
                    label = f"{flow} {name} {pct[:3]}"
                    ax.plot(rates, [math.nan if v is None else v for v in values], style, label=label)
    ax.set_xlabel("offered load (new verifications per second)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title(f"ivr-auth bench {report['date']}: latency against offered load")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
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
