"""``python -m ivr_auth_devkit.drill`` (``make drill``). DRILL_ASTERISK: 22,
host or both (the default); DRILL_ONLY: drills to run, comma-separated (all
by default). Exits 1 when any drill fails, 130 when interrupted."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

from ivr_auth import config, logs
from ivr_auth_devkit.drill import report, run


async def _main(which: str, only: tuple[str, ...]) -> tuple[list[report.Result], dict[str, Any]]:
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM stops everything as Ctrl-C does: the task is cancelled and unwinds.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run.main(which, only)


def main() -> int:
    logging.basicConfig(level=logging.WARNING, handlers=[logs.handler(config.LoggingConfig().format, sys.stderr)])
    which = os.environ.get("DRILL_ASTERISK", "") or "both"
    if which not in ("both", *run.ASTERISKS):
        print(f"drill: DRILL_ASTERISK={which}: say 22, host or both", file=sys.stderr)
        return 2
    only = tuple(d.strip() for d in os.environ.get("DRILL_ONLY", "").split(",") if d.strip()) or run.DRILLS
    unknown = set(only) - set(run.DRILLS)
    if unknown:
        print(f"drill: DRILL_ONLY: no drill {', '.join(sorted(unknown))} ({', '.join(run.DRILLS)})", file=sys.stderr)
        return 2
    try:
        results, meta = asyncio.run(_main(which, only))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("drill: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    paths = report.write(results, meta, run.OUT_DIR)
    print(report.table(results))
    failed = report.failures_text(results)
    if failed:
        print("\n" + failed)
    print("drill: wrote " + ", ".join(str(p.relative_to(run.ROOT)) for p in paths), file=sys.stderr)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
