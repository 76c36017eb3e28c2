"""Ending the background tasks that components own (an events websocket, a
webhook sender, the dashboard's poller, a controller's loops)."""

from __future__ import annotations

import asyncio
import contextlib


def reraise_cancellation(exc: BaseException) -> None:
    """psycopg (and the pool) may turn the cancellation of a query or of a
    wait into an error of their own: a loop that carries on after errors
    must not let that swallow its shutdown."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


async def cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has ended."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
