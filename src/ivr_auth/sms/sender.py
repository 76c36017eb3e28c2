"""The SMS sender: takes due SMS codes from the Postgres outbox, submits them
through the operator's carriers over SMPP, and records what became of them.

- One per process, with one ``smpp.Carrier`` per configured carrier. Each
  message goes to the first carrier bound, by priority (lowest first): the
  next one carries the traffic only while those before it are unbound, so a
  backup carrier (often the dearer one) is not used for overflow.
- Claims under a lease (``FOR UPDATE SKIP LOCKED``), so that any number of
  senders share one outbox and no message is taken by two of them; no more
  at once than the window of the carrier in use has free slots for. Woken by
  ``NOTIFY ivr_auth_sms`` and polling all the same: the table is the truth.
- Each message in its own task: one failing touches no other.
- Delivery receipts are recorded as they come, before the carrier answers
  the deliver_sm. One can come before the submit's result is written (the
  SMSC answers within milliseconds): one that finds no message is tried
  again in the background for about half a minute, then logged and counted
  as unmatched.
- On shutdown stops claiming, lets submits in progress finish (up to a
  grace), unbinds, and hands the messages it claimed and did not get to
  back to the outbox, due at once (``retry_later`` with no delay) rather
  than leaving them to wait out their lease.

The text and the code are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import math
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from ivr_auth import config, errors, tasks
from ivr_auth import metrics as metrics_mod
from ivr_auth.sms import smpp, text
from ivr_auth.store import sms as sms_store

logger = logging.getLogger(__name__)

# A failed submit is due again after base * 2^(attempt-1) seconds, capped,
# with equal jitter (senders retrying a throttling carrier spread out).
RETRY_BASE_SECONDS = 2.0
RETRY_MAX_SECONDS = 120.0
# A receipt that finds no message yet is tried again after each of these
# (about 30 s in all), then counted as unmatched.
RECEIPT_RETRY_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
# What a submit may take of its lease: the rest is for recording its result
# before another sender could claim the message again.
SUBMIT_SHARE_OF_LEASE = 0.75
# Receipt states SMPP 3.4 defines (Appendix B); anything else is counted "other".
RECEIPT_STATS = ("DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD", "ENROUTE")
# The segment reference of concatenated SMS is one octet (UDH IEI 0x00).
REFERENCES = 256
# When a stopping sender's last steps run out of time.
STOP_STEP_SECONDS = 10.0


class Carrier(Protocol):
    """What the sender uses of ``smpp.Carrier`` (unit tests give a fake)."""

    @property
    def name(self) -> str: ...

    @property
    def bound(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def submit(self, destination: str, message: text.Message, *, validity: dt.datetime | None) -> list[str]: ...


class Outbox(Protocol):
    """What the sender uses of ``store.sms`` (unit tests give a fake)."""

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[sms_store.Outgoing]: ...

    async def submitted(
        self, sms_id: uuid.UUID, *, carrier: str, message_ids: list[str], encoding: str, parts: int
    ) -> None: ...

    async def refused(self, sms_id: uuid.UUID, *, carrier: str, command_status: int, error: str) -> None: ...

    async def retry_later(self, sms_id: uuid.UUID, *, delay: float, error: str) -> bool: ...

    async def receipt(self, carrier: str, message_id: str, *, stat: str, err: str | None) -> bool: ...


ReceiptHandler = Callable[[smpp.Receipt], Awaitable[None]]
BindHandler = Callable[[bool], None]
CarrierFactory = Callable[[config.SmsCarrierConfig, ReceiptHandler, BindHandler], Carrier]


def drain_seconds(cfg: config.SmsConfig) -> float:
    """How long a stopping sender waits for its submits: as long as one may take."""
    return cfg.lease_seconds * SUBMIT_SHARE_OF_LEASE


def stop_bound(cfg: config.SmsConfig) -> float:
    """The longest ``Sender.stop`` takes: the drain, then its other steps, each bounded."""
    return drain_seconds(cfg) + 4 * STOP_STEP_SECONDS


def retry_delay(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds before a message whose submit try number ``attempt`` (1, 2,
    ...) failed for a passing reason is due again."""
    ceiling = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * float(2 ** min(max(attempt, 1) - 1, 30)))
    return ceiling / 2 + rand() * ceiling / 2


def minutes_left(expires_at: dt.datetime, now: dt.datetime) -> int:
    """The code's validity the message states: whole minutes, rounded up
    (never 0: a message claimed is not expired yet)."""
    return max(1, math.ceil((expires_at - now).total_seconds() / 60))


def service_name(cfg: config.Config, language: str, tenant_name: str) -> str:
    """The name the message gives: sms.service_name_<lang>, else the one the
    prompts say, else the tenant's."""
    names = {
        "ja": (cfg.sms.service_name_ja, cfg.prompts.service_name_ja),
        "en": (cfg.sms.service_name_en, cfg.prompts.service_name_en),
    }
    return next((name for name in names.get(language, ()) if name), tenant_name)


def receipt_stat(stat: str) -> str:
    """A receipt's state as a metric label: one SMPP defines (in any case,
    as the store reads it), else "other" (a label never carries what the
    SMSC made up)."""
    return stat.upper() if stat.upper() in RECEIPT_STATS else "other"


@dataclasses.dataclass(frozen=True)
class _Result:
    """What became of one submit."""

    carrier: str  # "none" when no carrier was bound
    message_ids: list[str] = dataclasses.field(default_factory=list)
    encoding: str = ""
    refused: smpp.SubmitRefused | None = None
    error: str | None = None  # a passing failure: try again later
    accepted: tuple[str, ...] = ()  # parts accepted before a refusal or failure


class Sender:
    def __init__(
        self,
        cfg: config.Config,
        outbox: Outbox,
        *,
        owner: str,
        metrics: metrics_mod.Metrics | None = None,
        make_carrier: CarrierFactory | None = None,
        listen: Callable[[], contextlib.AbstractAsyncContextManager[AsyncIterator[object]]] | None = None,
    ) -> None:
        """``owner``: the name claims are leased under (the process's).
        ``listen``: a LISTEN on ``ivr_auth_sms`` (``store.db.listen``) whose
        notifications wake the claims; None: polling only."""
        self.cfg = cfg
        self.outbox = outbox
        self.owner = owner
        self.metrics = metrics or metrics_mod.Metrics(None)
        # The carriers count their binds and keep the bound gauge themselves.
        make = make_carrier or functools.partial(_smpp_carrier, metrics=self.metrics)
        ordered = sorted(cfg.sms.carriers, key=lambda carrier: carrier.priority)  # stable: file order breaks ties
        self._configs = {carrier.name: carrier for carrier in ordered}
        self.carriers: list[Carrier] = [
            make(carrier, self.on_receipt, functools.partial(self._on_bound, carrier.name)) for carrier in ordered
        ]
        self.metrics.sms_carriers(self._configs)
        self._listen = listen
        # From a random point: senders in other processes number their own
        # long messages to the same phones.
        self._references = {name: random.randrange(REFERENCES) for name in self._configs}
        self._wake = asyncio.Event()
        self._claiming = False
        self._short_of_room = False
        # Messages claimed whose submit has not ended (released on shutdown),
        # and the tasks sending them.
        self._held: dict[uuid.UUID, sms_store.Outgoing] = {}
        self._sending: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._receipts: set[asyncio.Task[bool]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.listening = False

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        for carrier in self.carriers:
            await carrier.start()
        self._claiming = True
        self._loops.append(asyncio.create_task(self._claim_loop(), name=f"{self.owner}-sms-claims"))
        if self._listen is not None:
            self._loops.append(asyncio.create_task(self._listen_loop(), name=f"{self.owner}-sms-listen"))
        logger.info("SMS sender %s started with carriers %s", self.owner, ", ".join(self._configs))

    async def stop(self, grace: float | None = None) -> None:
        """Claim no more; let submits in progress end for ``grace`` seconds
        (default: as long as one may take); unbind; give back what was
        claimed and not submitted."""
        grace = drain_seconds(self.cfg.sms) if grace is None else grace
        self._claiming = False
        await _cancel(self._loops)
        self._loops.clear()
        sending = list(self._sending.values())
        if sending:
            logger.info("SMS sender: waiting up to %.0fs for %d submit(s)", grace, len(sending))
            if grace > 0:
                await asyncio.wait(sending, timeout=grace)
            await _cancel(sending)
        await self._unbind()
        if self._receipts:
            # Unbound: no more come, and the SMSC had its deliver_sm_resp for these.
            logger.warning("SMS sender: %d receipt(s) not recorded at shutdown", len(self._receipts))
            await _cancel(self._receipts)
        await self._release()

    async def kill(self) -> None:
        """Stop at once, as a crash would: what it claimed is left to its leases."""
        self._claiming = False
        await _cancel([*self._loops, *self._sending.values(), *self._receipts])
        self._loops.clear()
        self._held.clear()
        await self._unbind()

    async def _unbind(self) -> None:
        for carrier in self.carriers:
            try:
                await asyncio.wait_for(carrier.stop(), STOP_STEP_SECONDS)
            except TimeoutError:
                logger.warning("SMS sender: carrier %s did not unbind within %.0fs", carrier.name, STOP_STEP_SECONDS)

    async def _release(self) -> None:
        held, self._held = list(self._held.values()), {}
        if not held:
            return
        released = 0
        try:
            async with asyncio.timeout(STOP_STEP_SECONDS):
                for sms in held:
                    await self.outbox.retry_later(sms.id, delay=0.0, error="the sender stopped before submitting it")
                    released += 1
        except (errors.StoreError, TimeoutError) as exc:
            logger.warning("SMS sender: %d claimed message(s) left to their leases: %s", len(held) - released, exc)
        logger.info("SMS sender: %d claimed message(s) handed back to the outbox", released)

    def wake(self) -> None:
        self._wake.set()

    # --- health ------------------------------------------------------------------------

    def checks(self) -> dict[str, Callable[[], Awaitable[object]]]:
        """``/readyz``'s check: fails while no carrier is bound (SMS cannot
        go out). A backup carrier that is down leaves the process ready: it
        shows in ``ivr_auth_smpp_bound`` and the log instead, and the API
        beside the sender in ``ivr-auth run`` stays in its load balancer."""
        return {"smpp": _Check(self.carriers, self._configs)}

    # --- routing -----------------------------------------------------------------------

    def _on_bound(self, carrier: str, bound: bool) -> None:
        """A carrier's bind came up (``bound``), failed, or was lost."""
        if bound:
            logger.debug("carrier %s bound: looking for due SMS", carrier)
            self._wake.set()  # messages may have waited for a carrier

    def route(self) -> Carrier | None:
        """The carrier that takes the next message: the first bound."""
        return next((carrier for carrier in self.carriers if carrier.bound), None)

    def room(self) -> int:
        """How many more messages may be claimed now: the free slots of the
        window of the carrier in use (0 when none is bound)."""
        carrier = self.route()
        if carrier is None:
            return 0
        return max(0, self._configs[carrier.name].window - len(self._held))

    def reference(self, carrier: str) -> int:
        """The next concatenation reference for ``carrier`` (0-255, in turn):
        a phone joins parts by sender and reference, so two long messages
        to one phone must not share one (across processes, 256 references
        make that unlikely, not impossible)."""
        ref = self._references[carrier]
        self._references[carrier] = (ref + 1) % REFERENCES
        return ref

    # --- claiming ----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        poll = self.cfg.sms.poll_interval_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll)
            self._wake.clear()
            try:
                if await self.claim_once():
                    self._wake.set()
            except Exception as exc:
                tasks.reraise_cancellation(exc)
                # The outbox out of reach is said in a line; anything else is a bug, with its trace.
                logger.warning("SMS claim pass failed: %s", exc, exc_info=not isinstance(exc, errors.StoreError))
                await asyncio.sleep(poll)

    async def claim_once(self) -> bool:
        """Claim what the carrier in use has room for and start sending it;
        True when there may be more due that could be taken now."""
        room = self.room() if self._claiming else 0
        # Room freed by a submit's end, or a carrier binding, is told by a
        # wake only while work may be waiting for it.
        self._short_of_room = True
        if room <= 0:
            return False
        due = await self.outbox.claim(self.owner, room, self.cfg.sms.lease_seconds)
        for sms in due:
            self._held[sms.id] = sms
            self._sending[sms.id] = asyncio.create_task(self._send(sms), name=f"sms-{sms.id}")
        self._short_of_room = len(due) == room
        return len(due) == room

    async def _listen_loop(self) -> None:
        """A hint only: the claims poll anyway, so a lost connection costs
        latency, not messages."""
        assert self._listen is not None
        backoff = 0.5
        while True:
            try:
                async with self._listen() as notes:
                    self.listening = True
                    backoff = 0.5
                    self._wake.set()  # whatever came due while we were not listening
                    async for _ in notes:
                        self._wake.set()
            except errors.StoreError as exc:
                tasks.reraise_cancellation(exc)
                logger.warning("SMS listen connection lost: %s", exc)
            finally:
                self.listening = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    # --- one message -------------------------------------------------------------------

    async def _send(self, sms: sms_store.Outgoing) -> None:
        try:
            result = await self.submit(sms)
            await self.record(sms, result)
        except errors.StoreError as exc:
            tasks.reraise_cancellation(exc)
            # Submitted, it may go out twice: the lease runs out and it is claimed again.
            logger.warning("SMS %s: result not recorded: %s", sms.id, exc, extra=_log(sms))
        except Exception as exc:
            tasks.reraise_cancellation(exc)
            logger.exception("SMS %s: send task failed; left to its lease", sms.id, extra=_log(sms))
            self._held.pop(sms.id, None)
        finally:
            # Held still when canceled: a stopping sender hands it back.
            self._sending.pop(sms.id, None)
            if self._short_of_room:
                self._wake.set()

    async def submit(self, sms: sms_store.Outgoing) -> _Result:
        """Render, encode and submit ``sms`` through the carrier in use."""
        carrier = self.route()
        if carrier is None:
            self._held.pop(sms.id, None)
            return _Result("none", error="no carrier bound")
        message = text.render(
            sms.language,
            service_name(self.cfg, sms.language, sms.tenant_name),
            sms.code,
            minutes_left(sms.expires_at, dt.datetime.now(dt.UTC)),
        )
        encoded = text.encode(message, self.reference(carrier.name))
        result = _Result(carrier.name, encoding=encoded.encoding)
        try:
            async with asyncio.timeout(drain_seconds(self.cfg.sms)):
                ids = await carrier.submit(sms.phone, encoded, validity=sms.expires_at)
        except smpp.SubmitRefused as exc:
            result = dataclasses.replace(result, refused=exc, accepted=tuple(exc.accepted))
        except smpp.SubmitFailed as exc:
            result = dataclasses.replace(result, error=str(exc), accepted=tuple(exc.accepted))
        except TimeoutError:
            result = dataclasses.replace(result, error="no answer within the lease")
        else:
            result = dataclasses.replace(result, message_ids=ids)
        # The carrier has answered (or was given up on): from here a stopping
        # sender does not hand the message back, its result is recorded.
        self._held.pop(sms.id, None)
        return result

    async def record(self, sms: sms_store.Outgoing, result: _Result) -> None:
        log = _log(sms) | {"carrier": result.carrier}
        if result.accepted:
            # Parts accepted before a refusal or a failure reach the phone all the same.
            self.metrics.sms_parts(result.carrier, result.encoding, len(result.accepted))
        if result.refused is not None:
            refused = result.refused
            await self.outbox.refused(
                sms.id, carrier=result.carrier, command_status=refused.command_status, error=str(refused)
            )
            self.metrics.sms_submit(result.carrier, "refused")
            logger.warning(
                "SMS %s refused by %s (0x%08X): %s", sms.id, result.carrier, refused.command_status, refused, extra=log
            )
            return
        if result.error is not None:
            delay = retry_delay(sms.attempt)
            again = await self.outbox.retry_later(sms.id, delay=delay, error=result.error)
            self.metrics.sms_submit(result.carrier, "retry")
            if again:
                logger.info("SMS %s not sent (%s); again in %.0fs", sms.id, result.error, delay, extra=log)
            else:
                logger.info("SMS %s not sent (%s); its request ended meanwhile", sms.id, result.error, extra=log)
            return
        await self.outbox.submitted(
            sms.id,
            carrier=result.carrier,
            message_ids=result.message_ids,
            encoding=result.encoding,
            parts=len(result.message_ids),
        )
        self.metrics.sms_submit(result.carrier, "ok")
        self.metrics.sms_parts(result.carrier, result.encoding, len(result.message_ids))
        logger.info(
            "SMS %s submitted to %s (%d part(s), %s)",
            sms.id,
            result.carrier,
            len(result.message_ids),
            result.encoding,
            extra=log,
        )

    # --- receipts ----------------------------------------------------------------------

    async def on_receipt(self, receipt: smpp.Receipt) -> None:
        """A carrier's delivery receipt (``Carrier``'s callback, answered to
        the SMSC once it returns): recorded now, else tried again in the
        background."""
        if await self.take_receipt(receipt, delays=()):
            return
        task = asyncio.create_task(self.take_receipt(receipt), name=f"sms-receipt-{receipt.message_id}")
        self._receipts.add(task)
        task.add_done_callback(self._receipts.discard)

    async def take_receipt(self, receipt: smpp.Receipt, delays: Sequence[float] | None = None) -> bool:
        """Record ``receipt``; tried again after each of ``delays`` while no
        message matches it yet (or the database is out of reach); with
        ``delays`` empty, once, and nothing counted when it does not match.
        None: ``RECEIPT_RETRY_SECONDS``."""
        log = {"carrier": receipt.carrier, "message_id": receipt.message_id, "stat": receipt.stat}
        retries = RECEIPT_RETRY_SECONDS if delays is None else delays
        for delay in (0.0, *retries):
            await asyncio.sleep(delay)
            try:
                matched = await self.outbox.receipt(
                    receipt.carrier, receipt.message_id, stat=receipt.stat, err=receipt.err
                )
            except errors.StoreError as exc:
                tasks.reraise_cancellation(exc)
                logger.warning("receipt for %s not recorded yet: %s", receipt.message_id, exc, extra=log)
                continue
            if matched:
                self.metrics.sms_receipt(receipt.carrier, receipt_stat(receipt.stat))
                return True
        if not retries:
            return False  # a first try: the background ones follow
        self.metrics.sms_receipt(receipt.carrier, "unmatched")
        logger.warning(
            "receipt %s from %s for message %s matches no SMS sent", receipt.stat, receipt.carrier, receipt.message_id
        )
        return False


class _Check:
    """``/readyz``'s check of the carriers: one bound is enough."""

    def __init__(self, carriers: Sequence[Carrier], configs: dict[str, config.SmsCarrierConfig]) -> None:
        self.carriers = carriers
        self.configs = configs

    async def __call__(self) -> None:
        if not any(carrier.bound for carrier in self.carriers):
            unbound = ", ".join(
                f"{c.name} ({self.configs[c.name].host}:{self.configs[c.name].port})" for c in self.carriers
            )
            raise errors.IvrAuthError(f"no SMS carrier bound: {unbound}")


def _smpp_carrier(
    cfg: config.SmsCarrierConfig, on_receipt: ReceiptHandler, on_bound: BindHandler, *, metrics: metrics_mod.Metrics
) -> Carrier:
    return smpp.Carrier(cfg, on_receipt, on_bound=on_bound, metrics=metrics)


def _log(sms: sms_store.Outgoing) -> dict[str, str]:
    return {"sms_id": str(sms.id), "verification_id": str(sms.verification_id)}


async def _cancel(pending: Iterable[asyncio.Task[Any]], timeout: float = STOP_STEP_SECONDS) -> None:
    """Cancel and wait, but never forever: shutdown must end."""
    waiting = list(pending)
    for task in waiting:
        task.cancel()
    if waiting:
        await asyncio.wait(waiting, timeout=timeout)
