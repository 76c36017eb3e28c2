"""The API process's one LISTEN connection: status changes wake the
long-poll GETs waiting on that request (``api.waiters``); tenant changes
drop the tenant's cached API keys (``api.key_cache``).

While the connection is down, neither can be told anything: the waiters
read their rows on a timer and the key cache is bypassed. It reconnects
with a growing delay; once it listens again, the cache starts empty and
every waiter reads its row once more (what changed meanwhile was announced
to nobody)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

from ivr_auth import errors
from ivr_auth.api import key_cache, waiters
from ivr_auth.store import database, tenants, verifications

logger = logging.getLogger(__name__)

CHANNELS = (verifications.STATUS_CHANNEL, tenants.TENANTS_CHANNEL)
RETRY_MIN_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0


class Listener:
    def __init__(
        self,
        db: database.Database,
        waiting: waiters.Waiters,
        keys: key_cache.KeyCache,
        *,
        probe_seconds: float = database.LISTEN_PROBE_SECONDS,
    ) -> None:
        self._db = db
        self._waiters = waiting
        self._keys = keys
        self._probe_seconds = probe_seconds
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()

    @property
    def listening(self) -> bool:
        return self._up.is_set()

    async def wait_listening(self) -> None:
        """Returns once the connection listens (tests, and start-up probes)."""
        await self._up.wait()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Listens (reconnecting as needed) while the block runs."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="api-listener")
        try:
            yield
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = RETRY_MIN_SECONDS
        while True:
            try:
                async with self._db.listen(CHANNELS, probe_seconds=self._probe_seconds) as notes:
                    self._set(up=True)
                    delay = RETRY_MIN_SECONDS
                    async for note in notes:
                        self._dispatch(note)
            except errors.StoreError as exc:
                level = logging.WARNING if self.listening or delay == RETRY_MIN_SECONDS else logging.DEBUG
                logger.log(
                    level, "LISTEN connection lost (%s); the key cache is off, waits poll; retry in %gs", exc, delay
                )
            except Exception:
                # Never leave the API without its fallback: log, and start over.
                logger.exception("LISTEN connection failed; retry in %gs", delay)
            finally:
                self._set(up=False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _set(self, *, up: bool) -> None:
        if up == self.listening:
            return
        if up:
            self._keys.live()
            self._up.set()
            logger.info("listening for status and tenant changes")
        else:
            self._keys.dead()
            self._up.clear()
        self._waiters.set_listening(up)

    def _dispatch(self, note: database.Notification) -> None:
        if note.channel == verifications.STATUS_CHANNEL:
            self._waiters.notify(note.payload)
        elif note.channel == tenants.TENANTS_CHANNEL:
            try:
                tenant_id = uuid.UUID(note.payload)
            except ValueError:
                logger.warning("a tenant notification that is no id (%.40r): dropping every cached key", note.payload)
                self._keys.clear()
                return
            self._keys.drop_tenant(tenant_id)
