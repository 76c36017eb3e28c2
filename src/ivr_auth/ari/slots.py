"""Inbound slots: the Stasis apps ``<inbound.app>-1`` ... ``<inbound.app>-N``
through which inbound calls reach whichever controllers are alive.

An app name has one websocket at a time (a second one takes it over), so
controllers sharing an Asterisk cannot share one inbound app. Each holds a
slot of its own instead; the dialplan offers a call to every slot at once
with StasisBroadcast where Asterisk has it (the first controller to claim
it wins), and otherwise tries the slots in order with Stasis(), moving on
only while no one serves the slot. Asterisk forgets an app as soon as its
websocket closes, a killed controller's included (Asterisk 16 and 22 alike),
so the slots ``GET /applications`` does not list are the free ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def app(base: str, slot: int) -> str:
    return f"{base}-{slot}"


def slot_of(base: str, name: str) -> int | None:
    """The slot ``name`` is, when it is one of ``base``'s."""
    prefix = f"{base}-"
    number = name.removeprefix(prefix)
    if name == number or not number.isdigit() or number.startswith("0"):
        return None
    return int(number)


def taken(base: str, registered: Iterable[str]) -> set[int]:
    return {n for n in (slot_of(base, name) for name in registered) if n is not None}


def choose(base: str, slots: int, registered: Iterable[str]) -> int | None:
    """The lowest slot no websocket holds; None when all are held."""
    held = taken(base, registered)
    return next((n for n in range(1, slots + 1) if n not in held), None)


def filter_regex(base: str) -> str:
    """StasisBroadcast's app filter for ``base``'s slots. App names are
    letters, digits and ``-_.`` (config checks); ``.`` goes in a character
    class because the dialplan's argument parser eats backslashes."""
    return "^" + re.sub(r"\.", "[.]", base) + "-[0-9]+$"
