"""Each controller's report of itself to Postgres, every few seconds: its
Asterisk node, whether the ARI events websocket is up, its calls and its
trunks. The dashboard shows node and trunk health from these rows, whichever
API process serves it; a row that stops being refreshed is a controller gone."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable

from ivr_auth import errors, tasks, trunks
from ivr_auth.store import dashboard as board

logger = logging.getLogger(__name__)

REPORT_SECONDS = 3.0


def trunk_states(pool: trunks.Trunks, now: float) -> list[dict[str, object]]:
    """Each trunk: up or down (and for how much longer), and its calls."""
    out: list[dict[str, object]] = []
    for name in pool.names:
        trunk = pool[name]
        up = trunk.up(now)
        retry_in = None if up or trunk.down_until is None else round(trunk.down_until - now, 1)
        out.append({"name": name, "up": up, "retry_in_seconds": retry_in, "calls": trunk.channels})
    return out


async def run(
    dashboard: board.Dashboard,
    take: Callable[[float], board.ControllerReport],
    interval: float = REPORT_SECONDS,
) -> None:
    """Report ``take(monotonic now)`` every ``interval`` seconds until cancelled;
    a database that does not answer costs a report, nothing else."""
    failing = False
    while True:
        try:
            await dashboard.report_controller(take(time.monotonic()))
            failing = False
        except errors.StoreError as exc:
            tasks.reraise_cancellation(exc)
            if not failing:
                logger.warning("could not report this controller's state: %s", exc)
            failing = True
        await asyncio.sleep(interval)


async def forget(dashboard: board.Dashboard, name: str) -> None:
    """A controller stopping cleanly takes its row away (a crashed one's goes stale)."""
    try:
        await asyncio.wait_for(dashboard.forget_controller(name), 5)
    except (errors.StoreError, TimeoutError) as exc:
        logger.warning("could not remove this controller's report: %s", exc)


def started_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
