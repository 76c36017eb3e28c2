"""A drill's figures, its verdict and the table ``make drill`` prints and
writes (.run/drill/report.{json,md}). No I/O but the writing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ivr_auth_devkit.drill import measure

COLUMNS = (
    "asterisk",
    "drill",
    "requests",
    "lost",
    "stuck",
    "dialled twice",
    "CPS at trunk max/mean (cap)",
    "recover",
    "verdict",
)


@dataclass
class Result:
    """One drill on one Asterisk. ``requests``: accepted (201) by the API;
    ``refused``: creates it did not accept (a 503 while Postgres was down is
    an answer, not a loss). ``cps_max``: the most INVITEs the trunk received
    in any one second; ``cps_mean``: their mean rate from first to last.
    ``recover_seconds``: None when it never recovered; ``recovers``: False
    where the drill has no fault (the pacing drill)."""

    drill: str
    asterisk: str
    requests: int = 0
    refused: int = 0
    lost: int = 0
    stuck: int = 0
    dialled_twice: int = 0
    invites: int = 0
    cps_max: int = 0
    cps_mean: float | None = None
    cap: float = 0.0
    recovers: bool = True
    recover_seconds: float | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str = ""

    def failures(self) -> list[str]:
        out = []
        if self.error:
            out.append(f"did not run to its end: {self.error}")
        if self.requests == 0 and not self.error:
            out.append("no request was accepted")
        if self.lost:
            out.append(f"{self.lost} lost")
        if self.stuck:
            out.append(f"{self.stuck} stuck")
        if self.dialled_twice:
            out.append(f"{self.dialled_twice} dialled twice without reason")
        if measure.cap_exceeded(self.cps_max, self.cap):
            out.append(f"{self.cps_max} calls in one second at the trunk, cap {self.cap:g} (+10% at most)")
        if measure.cap_exceeded(self.cps_mean, self.cap):
            out.append(f"mean {self.cps_mean:.1f} calls/s at the trunk, cap {self.cap:g}")
        if self.recovers and self.recover_seconds is None and not self.error:
            out.append("never recovered")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures()

    def row(self) -> tuple[str, ...]:
        mean = "-" if self.cps_mean is None else f"{self.cps_mean:.1f}"
        if not self.recovers:
            recover = "n/a"
        elif self.recover_seconds is None:
            recover = "never"
        else:
            recover = f"{self.recover_seconds:.1f} s"
        requests = str(self.requests) + (f" (+{self.refused} refused)" if self.refused else "")
        return (
            self.asterisk,
            self.drill,
            requests,
            str(self.lost),
            str(self.stuck),
            str(self.dialled_twice),
            f"{self.cps_max}/{mean} ({self.cap:g})",
            recover,
            "pass" if self.passed else "FAIL",
        )


def table(results: Sequence[Result]) -> str:
    """Plain text, aligned: numbers to the right."""
    rows = [COLUMNS, *(r.row() for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    right = {2, 3, 4, 5, 6, 7}

    def line(row: Sequence[str]) -> str:
        cells = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        return "  ".join(cells).rstrip()

    return "\n".join([line(rows[0]), "  ".join("-" * w for w in widths), *(line(r) for r in rows[1:])])


def failures_text(results: Sequence[Result]) -> str:
    return "\n".join(f"{r.asterisk} {r.drill}: {'; '.join(r.failures())}" for r in results if not r.passed)


def markdown(results: Sequence[Result], meta: dict[str, Any]) -> str:
    out = [
        "# make drill",
        "",
        f"{meta.get('date', '')}, {meta.get('machine', '')}. What each drill does and proves: docs/drills.md.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    out += ["| " + " | ".join(r.row()) + " |" for r in results]
    out.append("")
    for r in results:
        out.append(f"## {r.asterisk} {r.drill}: {'pass' if r.passed else 'FAIL'}")
        out.append("")
        for failure in r.failures():
            out.append(f"- **{failure}**")
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items()))
        out.append(f"- ended: {outcomes or 'nothing'}; INVITE dialogs at the trunk: {r.invites}")
        out += [f"- {note}" for note in r.notes]
        out.append("")
    return "\n".join(out)


def write(results: Sequence[Result], meta: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "meta": meta,
        "passed": all(r.passed for r in results),
        "drills": [{**asdict(r), "passed": r.passed, "failures": r.failures()} for r in results],
    }
    paths = [out_dir / "report.json", out_dir / "report.md"]
    paths[0].write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    paths[1].write_text(markdown(results, meta))
    return paths
