"""A stand-in for ``smpp.Carrier`` in the SMS sender's tests (the real
SMPP path is tests/e2e's): it accepts, refuses or fails each submit as a
test tells it, or holds it until released, and keeps what it was given."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

from ivr_auth import config
from ivr_auth.sms import sender, text

_ids = itertools.count(1)


class FakeCarrier:
    def __init__(self, cfg: config.SmsCarrierConfig, on_bound: sender.BindHandler | None = None) -> None:
        self.cfg = cfg
        self.on_bound: sender.BindHandler = on_bound or (lambda bound: None)
        self.bound = True
        self.started = self.stopped = False
        # None: accept every part (message ids <name>-<n>, unique in the
        # process); a list: these ids; an exception: raised.
        self.answer: list[str] | Exception | None = None
        # Set: each submit waits for ``release`` before it answers.
        self.hold = False
        self.release = asyncio.Event()
        self.submits: list[tuple[str, text.Message, dt.datetime]] = []
        # The message ids of every part it accepted, in order.
        self.accepted: list[str] = []

    @property
    def name(self) -> str:
        return self.cfg.name

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True
        self.bound = False

    async def submit(self, destination: str, message: text.Message, *, validity: dt.datetime | None) -> list[str]:
        assert validity is not None, "the sender gives every message the request's expiry"
        self.submits.append((destination, message, validity))
        if self.hold:
            await self.release.wait()
        if isinstance(self.answer, Exception):
            raise self.answer
        ids = self.answer if self.answer is not None else [f"{self.name}-{next(_ids)}" for _ in message.parts]
        self.accepted.extend(ids)
        return ids


class Carriers:
    """The carriers a sender made (its ``make_carrier``), by name."""

    def __init__(self) -> None:
        self.made: dict[str, FakeCarrier] = {}

    def __getitem__(self, name: str) -> FakeCarrier:
        return self.made[name]

    def __call__(
        self, cfg: config.SmsCarrierConfig, on_receipt: sender.ReceiptHandler, on_bound: sender.BindHandler
    ) -> FakeCarrier:
        self.made[cfg.name] = FakeCarrier(cfg, on_bound)
        return self.made[cfg.name]

    def values(self) -> list[FakeCarrier]:
        return list(self.made.values())
