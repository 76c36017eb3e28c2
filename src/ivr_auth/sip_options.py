"""A SIP OPTIONS reachability probe (RFC 3261 11): build the request, read
the response, send it over UDP or TCP until something answers. No dialogue,
no registration, no authentication: an answer of any status means a SIP
stack listens there."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SipResponse:
    status: int
    reason: str
    call_id: str


def options_request(
    host: str, port: int, transport: str, local: tuple[str, int], *, call_id: str, branch: str, tag: str
) -> bytes:
    """A minimal out-of-dialogue OPTIONS (RFC 3261 11) from ``local``."""
    params = ";transport=tcp" if transport == "tcp" else ""
    uri = f"sip:{_uri_host(host)}:{port}{params}"
    me = f"{_uri_host(local[0])}:{local[1]}"
    lines = [
        f"OPTIONS {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {me};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:ivr-auth-doctor@{me}>;tag={tag}",
        f"To: <{uri}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        f"Contact: <sip:ivr-auth-doctor@{me}{params}>",
        "Accept: application/sdp",
        "User-Agent: ivr-auth doctor",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def new_ids() -> tuple[str, str, str]:
    """A Call-ID, a Via branch (with RFC 3261's magic cookie) and a From tag."""
    return (
        f"{secrets.token_hex(16)}@ivr-auth-doctor",
        f"z9hG4bK{secrets.token_hex(10)}",
        secrets.token_hex(8),
    )


def parse_response(data: bytes) -> SipResponse | None:
    """The status and Call-ID of a SIP response; None for a request or noise."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or len(parts[1]) != 3 or not parts[1].isdigit():
        return None
    call_id = ""
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() in ("call-id", "i"):  # "i" is Call-ID's compact form
            call_id = value.strip()
    return SipResponse(int(parts[1]), parts[2].strip() if len(parts) > 2 else "", call_id)


class _OptionsProtocol(asyncio.DatagramProtocol):
    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.answer: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        response = parse_response(data)
        if response is not None and response.call_id == self.call_id and not self.answer.done():
            self.answer.set_result(response)

    def error_received(self, exc: Exception) -> None:
        # On a connected socket, an ICMP port unreachable ends up here.
        if not self.answer.done():
            self.answer.set_exception(exc)


async def send(host: str, port: int, transport: str) -> SipResponse:
    """Send an OPTIONS to ``host:port`` until something answers it (UDP
    resends every 0.5 s, as T1 does); the caller bounds the wait. Raises
    OSError when the far end refuses, IncompleteReadError when a TCP one
    hangs up without answering."""
    call_id, branch, tag = new_ids()
    if transport == "tcp":
        reader, writer = await asyncio.open_connection(host, port)
        try:
            local = writer.get_extra_info("sockname")
            writer.write(options_request(host, port, "tcp", local[:2], call_id=call_id, branch=branch, tag=tag))
            await writer.drain()
            while True:
                response = parse_response(await reader.readuntil(b"\r\n\r\n"))
                if response is not None and response.call_id == call_id:
                    return response
        finally:
            writer.close()
    loop = asyncio.get_running_loop()
    udp, protocol = await loop.create_datagram_endpoint(lambda: _OptionsProtocol(call_id), remote_addr=(host, port))
    try:
        request = options_request(
            host, port, "udp", udp.get_extra_info("sockname")[:2], call_id=call_id, branch=branch, tag=tag
        )
        while True:
            udp.sendto(request)
            done, _ = await asyncio.wait({protocol.answer}, timeout=0.5)
            if done:
                return protocol.answer.result()
    finally:
        udp.close()


def _uri_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host
