"""Asterisk REST Interface: REST client and events websocket, on aiohttp."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

# One decoded ARI event (its "type" names it).
Event = dict[str, Any]
EventHandler = Callable[[Event], Awaitable[None]]
# Called after each (re)connect of the events websocket, before its events are read.
ConnectHandler = Callable[[], Awaitable[None]]
