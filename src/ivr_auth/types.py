"""Shapes of callbacks and payloads, named once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

# One decoded ARI event (its "type" names it).
AriEvent = dict[str, Any]
AriEventHandler = Callable[[AriEvent], Awaitable[None]]
# Called after each (re)connect of the events websocket, before its events are read.
AriConnectHandler = Callable[[], Awaitable[None]]
