"""``ivr-auth doctor``'s look at an SMS carrier: reach it, bind as a
transceiver with the configured credentials, unbind. One connection, no
message sent."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from ivr_auth import config
from ivr_auth.sms import pdu, smpp

# Refusals of a bind that mean the credentials (or the account) are wrong.
_CREDENTIALS = {0x0D: "bind failed", 0x0E: "wrong password", 0x0F: "unknown system_id"}
_ALREADY_BOUND = 0x05


async def check(carrier: config.SmsCarrierConfig, timeout: float) -> str:
    """What was found; raises smpp.SmppError saying what is wrong and what to do."""
    where = f"{carrier.host}:{carrier.port}"
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(carrier.host, carrier.port), timeout)
    except TimeoutError:
        raise smpp.SmppError(
            f"no TCP connection to {where} within {timeout:g}s: is the SMSC up, and does its firewall let this host in?"
        ) from None
    except socket.gaierror as exc:
        raise smpp.SmppError(f"host {carrier.host!r} does not resolve ({exc})") from None
    except ConnectionRefusedError:
        raise smpp.SmppError(f"{where} refused the connection: nothing listens there; check host and port") from None
    except OSError as exc:
        raise smpp.SmppError(f"{where} cannot be reached ({exc.strerror or exc}): check host and port") from None
    try:
        async with asyncio.timeout(timeout):
            return await _bind_and_unbind(carrier, reader, writer, where, started)
    except TimeoutError:
        raise smpp.SmppError(
            f"{where} took the connection but did not answer bind_transceiver within {timeout:g}s: is it an SMPP port?"
        ) from None
    except (asyncio.IncompleteReadError, ConnectionError):
        raise smpp.SmppError(f"{where} closed the connection during the bind: is this host allowed there?") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _bind_and_unbind(
    carrier: config.SmsCarrierConfig,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    where: str,
    started: float,
) -> str:
    writer.write(pdu.bind_transceiver(1, carrier.system_id, carrier.password, carrier.system_type).encode())
    response = await _response(reader, writer, 1)
    if response.command_status != pdu.ESME_ROK:
        status = response.command_status
        advice = (
            f"{_CREDENTIALS[status]}: check system_id {carrier.system_id!r}, password and system_type"
            if status in _CREDENTIALS
            else "the account allows no second bind while `ivr-auth sms` holds one"
            if status == _ALREADY_BOUND
            else "ask the carrier why"
        )
        raise smpp.BindFailed(
            f"{where} refused bind_transceiver ({pdu.status_name(status)}): {advice}",
            command_status=status,
        )
    ms = (time.monotonic() - started) * 1000
    writer.write(pdu.request(pdu.UNBIND, 2).encode())
    await _response(reader, writer, 2)
    return f"{where} bound {carrier.system_id!r} as transceiver in {ms:.0f} ms, and unbound"


async def _response(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sequence: int) -> pdu.Pdu:
    """The response to our request ``sequence``, answering the SMSC's own
    requests meanwhile (an enquire_link, a receipt held for us)."""
    while True:
        header = await reader.readexactly(pdu.HEADER_SIZE)
        try:
            message = pdu.decode(header + await reader.readexactly(pdu.read_length(header) - pdu.HEADER_SIZE))
        except pdu.PduError as exc:
            raise smpp.SmppError(f"the SMSC sent an unreadable PDU ({exc}): is it an SMPP 3.4 port?") from None
        if message.is_response and message.sequence == sequence:
            return message
        if message.command_id == pdu.DELIVER_SM:
            # Not ours to take: a temporary error has the SMSC deliver the
            # receipt again, to the sender's bind.
            writer.write(pdu.response(message, pdu.ESME_RX_T_APPN, b"\0").encode())
        elif message.command_id == pdu.ENQUIRE_LINK:
            writer.write(pdu.response(message).encode())
        elif not message.is_response:
            writer.write(pdu.generic_nack(message.sequence, pdu.ESME_RINVCMDID).encode())
