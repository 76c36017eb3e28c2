"""``python -m ivr_auth_devkit.bench`` (``make bench``; ``BENCH_QUICK=1`` for two short steps)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

from ivr_auth import config, logs
from ivr_auth_devkit.bench import report, run


async def _main(quick: bool) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM stops everything as Ctrl-C does: the task is cancelled and unwinds.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run.main(quick)


def main() -> int:
    # As the CLI does: the project's formatters, which mask phone numbers;
    # text on a terminal, JSON otherwise (logging.format's default).
    logging.basicConfig(level=logging.WARNING, handlers=[logs.handler(config.LoggingConfig().format, sys.stderr)])
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    try:
        result = asyncio.run(_main(quick))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    paths = report.write(result, run.OUT_DIR)
    shown = {k: result[k] for k in ("ivr_auth", "baseline", "ratio_to_baseline")}
    # The summary without its long parts (report.json has them).
    shown["summary"] = {k: v for k, v in result["summary"].items() if k not in ("steady", "steady_full_tables")}
    print(json.dumps(shown, indent=2, ensure_ascii=False))
    print("bench: wrote " + ", ".join(str(p.relative_to(run.ROOT)) for p in paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
