"""Long-poll GETs (``GET /v1/verifications/{id}?wait=S``) waiting for a
request's status to change, woken by the NOTIFY every status change sends
(``verifications.STATUS_CHANNEL``, dispatched here by ``api.listener``).

NOTIFY is a hint and the table the truth: a woken waiter reads the row
again, and while the LISTEN connection is down each waiter reads it every
``FALLBACK_SECONDS`` instead, so that no wait outlives its deadline or
misses a change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol, runtime_checkable

from aiohttp import web

from ivr_auth import errors, models, states

logger = logging.getLogger(__name__)

# How often a waiter reads the row while notifications cannot reach it, and
# how often it looks at its client's connection where no server tells it.
FALLBACK_SECONDS = 1.0
# The statuses a request ends in, as announced.
_ENDED = frozenset(s.value for s in states.TERMINAL)

Read = Callable[[], Awaitable[models.Verification]]


class TooManyWaiters(errors.IvrAuthError):
    """Too many long-poll requests are waiting in this process."""


@runtime_checkable
class Watched(Protocol):
    """A server connection that says when its client goes (``api.app``'s):
    ``callback`` is called then; the function returned forgets it."""

    def when_lost(self, callback: Callable[[], None]) -> Callable[[], None]: ...


class _Waiter:
    __slots__ = ("_event", "_until_end")

    def __init__(self, *, until_end: bool = False) -> None:
        self._event = asyncio.Event()
        # Waiting for the request's end: a status on the way needs no read.
        self._until_end = until_end

    def wake(self, status: str | None = None) -> None:
        """``status``: the one announced (None: read the row anyway)."""
        if status is not None and self._until_end and status not in _ENDED:
            return
        self._event.set()

    async def sleep(self, seconds: float) -> bool:
        """Whether it was woken within ``seconds``; clears the wake-up
        either way, so that one coming in later is not lost."""
        try:
            async with asyncio.timeout(seconds):
                await self._event.wait()
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True


class Waiters:
    """The long-poll requests of one API process, by verification id."""

    def __init__(self, max_waiters: int, *, fallback_seconds: float = FALLBACK_SECONDS) -> None:
        self._max = max_waiters
        self._fallback = fallback_seconds
        self._by_id: dict[uuid.UUID, set[_Waiter]] = {}
        self._count = 0
        # Whether status notifications reach us (the LISTEN connection is up).
        self._listening = False
        self._closing = False

    def __len__(self) -> int:
        return self._count

    @property
    def listening(self) -> bool:
        return self._listening

    def notify(self, payload: str) -> None:
        """A status change was announced (the payload: the request's id, and
        after a space its new status)."""
        request_id, _, status = payload.partition(" ")
        try:
            verification_id = uuid.UUID(request_id)
        except ValueError:
            logger.warning("ignored a status notification that is no id: %.40r", payload)
            return
        for waiter in self._by_id.get(verification_id, ()):
            waiter.wake(status or None)

    def set_listening(self, listening: bool) -> None:
        """Every waiter reads its row again: changes made while the connection
        was down were announced to nobody, and a waiter's pace changes."""
        self._listening = listening
        self._wake_all()

    def close(self) -> None:
        """Shutdown: every wait answers now, with its request as it is."""
        self._closing = True
        self._wake_all()

    async def wait_for_change(
        self,
        verification_id: uuid.UUID,
        read: Read,
        seconds: float,
        *,
        request: web.BaseRequest | None = None,
        until_end: bool = False,
    ) -> models.Verification:
        """The request as ``read`` returns it, once its status differs from
        the first read's (``until_end``: once it is terminal), or after
        ``seconds``, or at once when it is terminal; returns early when the
        client of ``request`` goes (the last read) or the process stops (a
        read then).

        The waiter is registered before the first read: a change committed
        after that read is announced to it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        with self._registered(verification_id, until_end) as waiter:
            connection = request.protocol if request is not None else None
            watched = isinstance(connection, Watched)
            forget = connection.when_lost(waiter.wake) if isinstance(connection, Watched) else _nothing
            try:
                first = current = await read()
                if first.terminal:
                    return first
                while not self._closing:  # stopping already: straight to the last read
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    if request is not None and _gone(request):
                        return current  # gone before it was watched
                    listening = self._listening
                    # Without notifications, the row is read each tick; without
                    # word of the client's going, its transport is looked at.
                    tick = remaining if listening and watched else min(remaining, self._fallback)
                    woken = await waiter.sleep(tick)
                    if request is not None and _gone(request):
                        return current  # nobody is left to read it
                    if self._closing:
                        break
                    if woken or not listening:
                        current = await read()
                        if current.terminal or (current.status != first.status and not until_end):
                            return current
                # Expired or stopping: the request as it is now.
                return await read()
            finally:
                forget()

    @contextlib.contextmanager
    def _registered(self, verification_id: uuid.UUID, until_end: bool) -> Iterator[_Waiter]:
        if self._count >= self._max:
            raise TooManyWaiters(f"{self._max} requests are waiting already (http.max_waiters)")
        waiter = _Waiter(until_end=until_end)
        self._by_id.setdefault(verification_id, set()).add(waiter)
        self._count += 1
        try:
            yield waiter
        finally:
            self._count -= 1
            waiting = self._by_id[verification_id]
            waiting.discard(waiter)
            if not waiting:
                del self._by_id[verification_id]

    def _wake_all(self) -> None:
        for waiting in self._by_id.values():
            for waiter in waiting:
                waiter.wake()


def _gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _nothing() -> None:
    return None
