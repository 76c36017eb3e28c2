"""The SIP OPTIONS probe: the request it builds, the responses it reads,
and a UDP stand-in trunk that makes it resend and ignore a stray answer."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from ivr_auth import sip_options


def test_an_options_request_is_valid_sip() -> None:
    request = sip_options.options_request(
        "192.0.2.10", 5060, "udp", ("127.0.0.1", 40000), call_id="abc@x", branch="z9hG4bKdef", tag="t1"
    ).decode()
    head, sep, body = request.partition("\r\n\r\n")
    assert sep
    assert body == ""
    lines = head.split("\r\n")
    assert lines[0] == "OPTIONS sip:192.0.2.10:5060 SIP/2.0"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Via"] == "SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKdef;rport"
    assert headers["From"].endswith(";tag=t1")
    assert headers["To"] == "<sip:192.0.2.10:5060>"
    assert headers["Call-ID"] == "abc@x"
    assert headers["CSeq"] == "1 OPTIONS"
    assert headers["Max-Forwards"] == "70"
    assert headers["Content-Length"] == "0"


def test_an_options_request_over_tcp_and_ipv6() -> None:
    request = sip_options.options_request("::1", 5061, "tcp", ("::1", 40000), call_id="c", branch="z9hG4bKb", tag="t")
    text = request.decode()
    assert text.startswith("OPTIONS sip:[::1]:5061;transport=tcp SIP/2.0\r\n")
    assert "Via: SIP/2.0/TCP [::1]:40000;branch=z9hG4bKb;rport\r\n" in text


def test_fresh_ids_each_time() -> None:
    call_id, branch, tag = sip_options.new_ids()
    assert branch.startswith("z9hG4bK")
    assert sip_options.new_ids() != (call_id, branch, tag)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"SIP/2.0 200 OK\r\nCall-ID: a@b\r\nContent-Length: 0\r\n\r\n", sip_options.SipResponse(200, "OK", "a@b")),
        (b"SIP/2.0 405 Method Not Allowed\r\ni: c\r\n\r\n", sip_options.SipResponse(405, "Method Not Allowed", "c")),
        (b"SIP/2.0 501\r\ncall-id:x\r\n\r\n", sip_options.SipResponse(501, "", "x")),
        (b"OPTIONS sip:a SIP/2.0\r\nCall-ID: a@b\r\n\r\n", None),
        (b"HTTP/1.1 200 OK\r\n\r\n", None),
        (b"SIP/2.0 2000 OK\r\n\r\n", None),
        (b"\xff\xfe", None),
    ],
)
def test_parse_response(data: bytes, expected: sip_options.SipResponse | None) -> None:
    assert sip_options.parse_response(data) == expected


async def test_a_udp_answer_to_our_call_id(unused_udp_port: int) -> None:
    """A stand-in trunk on loopback: ignores the first copy (so the probe
    must resend), then answers a stray response first and ours second."""

    class Trunk(asyncio.DatagramProtocol):
        seen = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            # 3.11's selector transport does not subclass DatagramTransport.
            self.transport = cast(asyncio.DatagramTransport, transport)

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.seen += 1
            if self.seen == 1:
                return
            call_id = next(line for line in data.decode().split("\r\n") if line.startswith("Call-ID:"))
            self.transport.sendto(b"SIP/2.0 200 OK\r\nCall-ID: not-yours\r\n\r\n", addr)
            self.transport.sendto(f"SIP/2.0 404 Not Here\r\n{call_id}\r\n\r\n".encode(), addr)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Trunk, local_addr=("127.0.0.1", unused_udp_port))
    try:
        response = await asyncio.wait_for(sip_options.send("127.0.0.1", unused_udp_port, "udp"), 3)
    finally:
        transport.close()
    assert (response.status, response.reason) == (404, "Not Here")
