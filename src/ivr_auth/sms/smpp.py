"""One SMS carrier's SMPP 3.4 bind, as a transceiver, on asyncio streams.

Why not a library: ``smpplib`` is synchronous, and ``aiosmpplib`` 0.7.4 (the
asyncio one) takes short_message as text and encodes and splits it itself
(its SAR path crashes, its UDH split is its own), so our septets and UDH
parts could not go through as they are; it queues submits through a broker
and reports their responses and receipts through hooks, with no await for
one submit's message ids and no window on submits awaiting their response;
its reconnect backoff has no jitter; and it logs whole messages (the code)
at debug and on errors. SMPP 3.4 as an ESME uses is small: ``pdu`` writes
and reads it, and this module keeps the session.

The bind: bind_transceiver with the configured credentials; enquire_link
every ``enquire_link_seconds``, and one unanswered within the response
timeout ends the connection; reconnects back off exponentially with jitter.
Submits wait for room in the window (submit_sm awaiting their response) and
for the token bucket's next token. Every deliver_sm is answered; receipts
go to ``on_receipt`` (matching them to messages is the store's job).

Nothing here logs a short message: it holds the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ivr_auth import config, errors, metrics, pacing, tasks
from ivr_auth.sms import gsm, pdu, text

logger = logging.getLogger(__name__)

# Sequence numbers run 1 .. 2^31 - 1 and wrap.
MAX_SEQUENCE = 0x7FFFFFFF


class SmppError(errors.IvrAuthError):
    """The SMS carrier failed."""


class BindFailed(SmppError):
    """The SMS carrier refused the bind."""

    def __init__(self, message: str | None = None, *, command_status: int | None = None) -> None:
        super().__init__(message)
        self.command_status = command_status


class SubmitRefused(SmppError):
    """The SMS carrier refused the message for good."""

    def __init__(self, message: str | None = None, *, command_status: int, accepted: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.command_status = command_status
        # Message ids of the parts accepted before the refusal.
        self.accepted = list(accepted)


class SubmitFailed(SmppError):
    """The message could not be submitted now; it may be later (throttled,
    the carrier's queue full, not bound, the connection lost, no response)."""

    def __init__(
        self, message: str | None = None, *, command_status: int | None = None, accepted: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.command_status = command_status
        self.accepted = list(accepted)


@dataclass(frozen=True)
class Receipt:
    carrier: str
    message_id: str
    stat: str
    err: str | None


def reconnect_delay(attempt: int, low: float, high: float, jitter: float) -> float:
    """The wait before reconnect ``attempt`` (0 for the first after a loss):
    ``low`` doubled per attempt up to ``high``, of which the upper half is
    drawn by ``jitter`` (0 <= jitter < 1), so that many senders that lost a
    carrier at once do not come back at once; never under ``low``."""
    ceiling = min(high, math.ldexp(low, min(attempt, 62)))
    return max(low, ceiling * (0.5 + jitter / 2))


def source_address(source_addr: str) -> tuple[int, int, str]:
    """TON, NPI and the address for a sender ID (config checked its form)."""
    if gsm.sender_kind(source_addr) == "numeric":
        return 1, 1, source_addr.removeprefix("+")
    return 5, 0, source_addr


def destination_address(phone: str) -> tuple[int, int, str]:
    """TON 1 (international), NPI 1 (E.164), the digits without '+'."""
    digits = phone.removeprefix("+")
    if not (digits.isascii() and digits.isdigit() and 1 <= len(digits) <= 15):
        raise ValueError("not an E.164 number")
    return 1, 1, digits


class _Connection:
    """One TCP connection to the SMSC and the requests awaiting their response on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pending: dict[int, asyncio.Future[pdu.Pdu]] = {}
        self.closed = asyncio.Event()
        self.reason = ""
        self.bound = False
        self.reading: asyncio.Task[None] | None = None

    def send(self, message: pdu.Pdu) -> None:
        if not self.closed.is_set():
            self.writer.write(message.encode())

    def close(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.reason, self.bound = reason, False
        self.closed.set()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(SubmitFailed(f"connection lost: {reason}"))
        self.writer.close()


class Carrier:
    def __init__(
        self,
        cfg: config.SmsCarrierConfig,
        on_receipt: Callable[[Receipt], Awaitable[None] | None],
        *,
        on_bound: Callable[[bool], None] | None = None,
        metrics: metrics.Metrics | None = None,
    ) -> None:
        """``on_receipt`` may be a coroutine function (awaited before the
        deliver_sm is answered) or a plain one. ``on_bound`` hears True on
        every bind and False on every failed bind and every loss of one;
        ``metrics``, if given, counts binds and keeps the bound gauge."""
        self.cfg = cfg
        self._on_receipt = on_receipt
        self._on_bound = on_bound
        self._metrics = metrics
        self._log = {"carrier": cfg.name}
        self._sequence = 0
        self._conn: _Connection | None = None
        self._window = asyncio.Semaphore(cfg.window)
        self._bucket = pacing.TokenBucket(rate=cfg.messages_per_second, burst=1.0)
        self._rate_lock = asyncio.Lock()
        self._bound_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._handovers: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def bound(self) -> bool:
        return self._conn is not None and self._conn.bound

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"smpp-{self.name}")

    async def wait_bound(self, timeout: float) -> bool:
        """True once bound (at once if bound now), False after ``timeout``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._bound_event.wait(), timeout)
        return self.bound

    async def stop(self, grace: float = 5.0) -> None:
        """Unbind (waiting for unbind_resp at most ``grace``) and close."""
        self._stopping = True
        deadline = time.monotonic() + grace
        conn = self._conn
        if conn is not None and conn.bound:
            conn.bound = False  # no submit goes out after the unbind
            self._bound_event.clear()
            try:
                await self._request(conn, pdu.request(pdu.UNBIND, self._next_sequence()), timeout=grace)
                logger.info("carrier %s: unbound", self.name, extra=self._log)
            except SmppError as exc:
                logger.info("carrier %s: closed without unbind_resp (%s)", self.name, exc, extra=self._log)
        if conn is not None:
            conn.close("stopped")
        await tasks.cancel(self._task)
        self._task = None
        if self._handovers:
            await asyncio.wait(self._handovers, timeout=max(0.0, deadline - time.monotonic()))
            for task in list(self._handovers):
                await tasks.cancel(task)

    async def submit(
        self,
        destination: str,
        message: text.Message,
        *,
        validity: dt.datetime | None = None,
        registered_delivery: bool = True,
    ) -> list[str]:
        """Submit every part in order; their message ids. Raises SubmitRefused
        (for good) or SubmitFailed (try again later), with the ids of the
        parts accepted before."""
        try:
            dest_ton, dest_npi, dest_addr = destination_address(destination)
        except ValueError as exc:
            raise SubmitRefused(f"destination: {exc}", command_status=0x0B) from None
        source_ton, source_npi, source_addr = source_address(self.cfg.source_addr)
        ids: list[str] = []
        for part in message.parts:
            short = pdu.ShortMessage(
                source_addr_ton=source_ton,
                source_addr_npi=source_npi,
                source_addr=source_addr,
                dest_addr_ton=dest_ton,
                dest_addr_npi=dest_npi,
                destination_addr=dest_addr,
                esm_class=part.esm_class,
                data_coding=part.data_coding,
                short_message=part.short_message,
                registered_delivery=1 if registered_delivery else 0,
                validity_period="" if validity is None else pdu.absolute_time(validity),
            )
            ids.append(await self._submit_part(short, ids))
        return ids

    async def _submit_part(self, short: pdu.ShortMessage, accepted: list[str]) -> str:
        if not self.bound:
            raise SubmitFailed(f"carrier {self.name} is not bound", accepted=accepted)
        async with self._window:
            await self._take_token()
            conn = self._conn
            if conn is None or not conn.bound:
                raise SubmitFailed(f"carrier {self.name} is not bound", accepted=accepted)
            try:
                response = await self._request(conn, pdu.submit_sm(self._next_sequence(), short))
            except SubmitFailed as exc:
                raise SubmitFailed(str(exc), accepted=accepted) from None
        status = response.command_status
        if status == pdu.ESME_ROK and response.command_id == pdu.SUBMIT_SM_RESP:
            return pdu.read_message_id(response.body)
        what = "generic_nack" if response.command_id == pdu.GENERIC_NACK else "submit_sm_resp"
        if status in pdu.TRANSIENT_STATUSES:
            message = f"carrier {self.name}: {what} {pdu.status_name(status)}, for now"
            raise SubmitFailed(message, command_status=status, accepted=accepted)
        message = f"carrier {self.name} refused the message: {what} {pdu.status_name(status)}"
        raise SubmitRefused(message, command_status=status, accepted=accepted)

    async def _take_token(self) -> None:
        async with self._rate_lock:
            while (wait := self._bucket.wait_time(time.monotonic())) > 0:
                await asyncio.sleep(wait)
            self._bucket.take(time.monotonic())

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % MAX_SEQUENCE + 1
        return self._sequence

    async def _request(self, conn: _Connection, message: pdu.Pdu, timeout: float | None = None) -> pdu.Pdu:
        """Send a request and wait for its response (or a generic_nack)."""
        wait = self.cfg.response_timeout_seconds if timeout is None else timeout
        future: asyncio.Future[pdu.Pdu] = asyncio.get_running_loop().create_future()
        conn.pending[message.sequence] = future
        try:
            if conn.closed.is_set():
                raise SubmitFailed(f"connection lost: {conn.reason}")
            conn.send(message)
            try:
                # The drain too: an SMSC that stops reading fills our buffer.
                async with asyncio.timeout(wait):
                    await conn.writer.drain()
                    return await future
            except TimeoutError:  # before OSError, of which it is one
                raise SubmitFailed(f"carrier {self.name}: no response within {wait:g}s") from None
            except OSError as exc:
                conn.close(f"write failed: {exc}")
                raise SubmitFailed(f"connection lost: {exc}") from None
        finally:
            conn.pending.pop(message.sequence, None)

    # --- the connection's life ---------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                conn = await self._connect()
            except (OSError, TimeoutError, errors.IvrAuthError) as exc:
                logger.warning("carrier %s: bind failed: %s", self.name, _describe(exc), extra=self._log)
                self._notify(False, bind=True)
            except Exception:  # the carrier's loop outlives any one connection's fault
                logger.exception("carrier %s: bind failed", self.name, extra=self._log)
                self._notify(False, bind=True)
            else:
                attempt = 0
                reason = await self._serve(conn)
                if self._stopping:
                    return
                logger.warning("carrier %s: connection ended (%s)", self.name, reason, extra=self._log)
            delay = reconnect_delay(
                attempt, self.cfg.reconnect_min_seconds, self.cfg.reconnect_max_seconds, random.random()
            )
            attempt += 1
            logger.info("carrier %s: reconnecting in %.1fs", self.name, delay, extra=self._log)
            await asyncio.sleep(delay)

    async def _connect(self) -> _Connection:
        where = f"{self.cfg.host}:{self.cfg.port}"
        timeout = self.cfg.response_timeout_seconds
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.cfg.host, self.cfg.port), timeout)
        except TimeoutError:
            raise SmppError(f"no TCP connection to {where} within {timeout:g}s") from None
        conn = _Connection(reader, writer)
        self._conn = conn
        conn.reading = asyncio.create_task(self._read(conn), name=f"smpp-{self.name}-read")
        try:
            smsc_id = await self._bind(conn, where)
        except BaseException:
            await self._close(conn, "bind failed", conn.reading)
            raise
        conn.bound = True
        self._bound_event.set()
        logger.info(
            "carrier %s: bound to %s as transceiver %r (SMSC %r)",
            self.name,
            where,
            self.cfg.system_id,
            smsc_id,
            extra=self._log,
        )
        self._notify(True, bind=True)
        return conn

    async def _bind(self, conn: _Connection, where: str) -> str:
        """Bind as transceiver; the SMSC's system_id."""
        bind = pdu.bind_transceiver(self._next_sequence(), self.cfg.system_id, self.cfg.password, self.cfg.system_type)
        try:
            response = await self._request(conn, bind)
        except SubmitFailed as exc:
            raise SmppError(f"bind_transceiver to {where}: {exc}") from None
        if response.command_status != pdu.ESME_ROK or response.command_id != pdu.BIND_TRANSCEIVER_RESP:
            status = pdu.status_name(response.command_status)
            raise BindFailed(
                f"{where} refused bind_transceiver as {self.cfg.system_id!r}: {status}",
                command_status=response.command_status,
            )
        try:
            return pdu.read_system_id(response.body)
        except pdu.PduError:
            return ""

    async def _serve(self, conn: _Connection) -> str:
        """Keep the bound connection alive until it ends; why it ended."""
        keeper = asyncio.create_task(self._keep_alive(conn), name=f"smpp-{self.name}-enquire")
        try:
            await conn.closed.wait()
        finally:
            self._bound_event.clear()
            await tasks.cancel(keeper)
            await self._close(conn, conn.reason or "stopped", conn.reading)
            self._notify(False, bind=False)
        return conn.reason

    async def _close(self, conn: _Connection, reason: str, reading: asyncio.Task[None] | None) -> None:
        conn.close(reason)
        await tasks.cancel(reading)
        with contextlib.suppress(OSError):
            await conn.writer.wait_closed()

    async def _keep_alive(self, conn: _Connection) -> None:
        while not conn.closed.is_set():
            await asyncio.sleep(self.cfg.enquire_link_seconds)
            try:
                await self._request(conn, pdu.request(pdu.ENQUIRE_LINK, self._next_sequence()))
            except SubmitFailed as exc:
                logger.warning(
                    "carrier %s: enquire_link failed (%s): the bind is dead", self.name, exc, extra=self._log
                )
                conn.close("enquire_link unanswered")

    async def _read(self, conn: _Connection) -> None:
        reason = "closed by the SMSC"
        try:
            while True:
                header = await conn.reader.readexactly(pdu.HEADER_SIZE)
                rest = await conn.reader.readexactly(pdu.read_length(header) - pdu.HEADER_SIZE)
                self._dispatch(conn, pdu.decode(header + rest))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except pdu.PduError as exc:
            reason = f"unreadable PDU: {exc}"
            logger.error("carrier %s: %s; closing the connection", self.name, reason, extra=self._log)
        except OSError as exc:
            reason = f"read failed: {exc}"
        except Exception as exc:  # whatever one PDU does, it ends this connection only
            reason = f"PDU not handled: {type(exc).__name__}"
            logger.exception("carrier %s: %s; closing the connection", self.name, reason, extra=self._log)
        finally:
            conn.close(reason)

    def _dispatch(self, conn: _Connection, message: pdu.Pdu) -> None:
        if message.is_response:
            future = conn.pending.get(message.sequence)
            if future is not None and not future.done():
                future.set_result(message)
            elif message.command_id == pdu.GENERIC_NACK:
                status = pdu.status_name(message.command_status)
                logger.warning("carrier %s: generic_nack %s for no request of ours", self.name, status, extra=self._log)
            return
        if message.command_id == pdu.ENQUIRE_LINK:
            conn.send(pdu.response(message))
        elif message.command_id == pdu.DELIVER_SM:
            short = pdu.read_short_message(message.body)  # unreadable: PduError closes the connection
            task = asyncio.create_task(self._deliver(conn, message, short), name=f"smpp-{self.name}-deliver")
            self._handovers.add(task)
            task.add_done_callback(self._handovers.discard)
        elif message.command_id == pdu.UNBIND:
            conn.send(pdu.response(message))
            logger.warning("carrier %s: the SMSC unbound", self.name, extra=self._log)
            conn.close("unbound by the SMSC")
        else:
            logger.warning(
                "carrier %s: command 0x%08X not handled; generic_nack", self.name, message.command_id, extra=self._log
            )
            conn.send(pdu.generic_nack(message.sequence, pdu.ESME_RINVCMDID))

    async def _deliver(self, conn: _Connection, message: pdu.Pdu, short: pdu.ShortMessage) -> None:
        """Hand a receipt over, then answer the deliver_sm: after it is
        recorded, so that a crash between the two has the SMSC send it again,
        but no later than half the response time-out, so that a slow store
        never has the SMSC take us for dead."""
        try:
            fields = pdu.read_receipt(short)
        except pdu.BadReceipt:
            logger.warning("carrier %s: a delivery receipt without id or state; dropped", self.name, extra=self._log)
            fields = None
        else:
            if fields is None:
                logger.info("carrier %s: a message from a handset; ignored", self.name, extra=self._log)
        if fields is not None:
            receipt = Receipt(self.name, fields.message_id, fields.stat, fields.err)
            handover = asyncio.create_task(self._hand_over(receipt))
            self._handovers.add(handover)
            handover.add_done_callback(self._handovers.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(handover), self.cfg.response_timeout_seconds / 2)
        conn.send(pdu.response(message, body=b"\0"))

    async def _hand_over(self, receipt: Receipt) -> None:
        try:
            handled = self._on_receipt(receipt)
            if inspect.isawaitable(handled):
                await handled
        except Exception:
            logger.exception(
                "carrier %s: the receipt for message %s could not be handed over",
                self.name,
                receipt.message_id,
                extra=self._log,
            )

    def _notify(self, bound: bool, *, bind: bool) -> None:
        """A bind's outcome (``bind``) or the loss of one."""
        if self._metrics is not None:
            if bind:
                self._metrics.smpp_bind(self.name, ok=bound)
            else:
                self._metrics.smpp_unbound(self.name)
        if self._on_bound is not None:
            self._on_bound(bound)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SmppError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
