"""Live updates for the dashboard: one task per API process looks at
Postgres about once a second while at least one page is open, and hands each
open page the overview whenever something moved (or every few seconds, for
the ages and the controllers' reports). Pages that read slowly miss
intermediate overviews, never the latest one."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import zoneinfo
from collections.abc import AsyncIterator
from typing import Any

from ivr_auth import config, errors, tasks
from ivr_auth.store import dashboard as board

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0
REFRESH_SECONDS = 5.0
# A controller reports every few seconds; silent this long, it counts as gone.
STALE_SECONDS = 15.0
QUEUE_SIZE = 2
# Today's counts per tenant scan the day's requests: read again this often
# (not on every change), whatever the traffic.
DAY_REFRESH_SECONDS = 15.0

Message = dict[str, Any]


def day_start(now: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """Midnight of ``now``'s day in ``zone``."""
    local = now.astimezone(zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


async def overview(
    dashboard: board.Dashboard, cfg: config.Config, now: dt.datetime | None = None, *, with_day: bool = True
) -> Message:
    """The page's figures; without today's counts per tenant unless ``with_day``."""
    since = day_start(now or dt.datetime.now(dt.UTC), zoneinfo.ZoneInfo(cfg.dashboard.timezone))
    return await dashboard.overview(
        since=since if with_day else None,
        recent=cfg.dashboard.recent,
        trunks=[t.name for t in cfg.outbound_trunks],
        stale_seconds=STALE_SECONDS,
    )


class Hub:
    def __init__(
        self,
        dashboard: board.Dashboard,
        cfg: config.Config,
        *,
        poll_seconds: float = POLL_SECONDS,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self._dashboard = dashboard
        self._cfg = cfg
        self._poll = poll_seconds
        self._refresh = refresh_seconds
        self._pages: set[asyncio.Queue[Message]] = set()
        self._latest: Message | None = None
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Message]]:
        """A queue of messages for one open page: ``{"type": "overview", ...}``
        or ``{"type": "unavailable", "message": ...}``."""
        queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_SIZE)
        if self._latest is not None:
            queue.put_nowait(self._latest)
        self._pages.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="dashboard-live")
        try:
            yield queue
        finally:
            self._pages.discard(queue)

    def end_pages(self) -> None:
        """This process is stopping: every open page is told to go (and
        reconnects, to another process or once this one is back)."""
        self._send({"type": "closing"})

    async def close(self) -> None:
        await tasks.cancel(self._task)
        self._task = None

    def _send(self, message: Message) -> None:
        for queue in self._pages:
            if queue.full():  # a slow page: drop its oldest, keep the newest
                queue.get_nowait()
            queue.put_nowait(message)

    async def _run(self) -> None:
        seen: board.Cursor | None = None
        sent_at = 0.0
        day: tuple[float, Any, Any] | None = None  # (read at, counts, day started at)
        while self._pages:
            try:
                cursor = await self._dashboard.cursor()
                if cursor != seen or time.monotonic() - sent_at >= self._refresh:
                    changed = await self._dashboard.changed_requests(seen.event_id) if seen else []
                    now = time.monotonic()
                    fresh_day = day is None or now - day[0] >= DAY_REFRESH_SECONDS
                    message = await overview(self._dashboard, self._cfg, with_day=fresh_day)
                    if fresh_day:
                        day = (now, message["tenants_today"], message["day_started_at"])
                    else:
                        assert day is not None
                        message["tenants_today"], message["day_started_at"] = day[1], day[2]
                    message["type"] = "overview"
                    message["changed"] = changed
                    moved = seen is not None and cursor.webhook_attempt_id != seen.webhook_attempt_id
                    message["webhooks_moved"] = moved
                    self._latest = {**message, "changed": [], "webhooks_moved": False}
                    self._send(message)
                    seen, sent_at = cursor, time.monotonic()
            except errors.StoreError as exc:
                tasks.reraise_cancellation(exc)
                logger.warning("dashboard: could not read Postgres: %s", exc)
                self._latest = None
                self._send({"type": "unavailable", "message": "the database is not answering; retrying"})
                seen = None
            await asyncio.sleep(self._poll)
        self._latest = None
