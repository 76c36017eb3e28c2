from __future__ import annotations

import socket
import struct

from tests.support import packet_meter

RTP = b"\x80\x00\x12\x34" + bytes(168)


def ipv4(payload: bytes, *, dst_port: int = 6000, proto: int = 17, options: bytes = b"", fragment: int = 0) -> bytes:
    ihl = (20 + len(options)) // 4
    udp = struct.pack("!HHHH", 31000, dst_port, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        ihl * 4 + len(udp),
        1,
        fragment,
        64,
        proto,
        0,
        socket.inet_aton("127.0.0.1"),
        socket.inet_aton("127.0.0.1"),
    )
    return header + options + udp


def ipv6(payload: bytes, *, dst_port: int = 6000, next_header: int = 17) -> bytes:
    udp = struct.pack("!HHHH", 31000, dst_port, 8 + len(payload), 0) + payload
    header = struct.pack("!IHBB16s16s", 6 << 28, len(udp), next_header, 64, bytes(15) + b"\1", bytes(15) + b"\1")
    return header + udp


def address(pkttype: int) -> tuple[str, int, int, int, bytes]:
    return ("lo", 0x0800, pkttype, 772, bytes(6))


def test_udp_over_ipv4() -> None:
    assert packet_meter.udp_destination(ipv4(RTP)) == (6000, RTP[: packet_meter.HEAD_BYTES])


def test_ipv4_options_move_the_udp_header() -> None:
    assert packet_meter.udp_destination(ipv4(b"BYE sip:x", dst_port=5082, options=bytes(8))) == (5082, b"BYE sip:x")


def test_udp_over_ipv6() -> None:
    assert packet_meter.udp_destination(ipv6(b"BYE sip:x", dst_port=5082)) == (5082, b"BYE sip:x")


def test_not_udp_is_not_counted() -> None:
    assert packet_meter.udp_destination(ipv4(RTP, proto=6)) is None  # TCP
    assert packet_meter.udp_destination(ipv6(RTP, next_header=6)) is None
    assert packet_meter.udp_destination(b"\x00\x01\x02") is None  # not IP
    assert packet_meter.udp_destination(b"") is None
    assert packet_meter.udp_destination(ipv4(RTP)[:24]) is None  # truncated


def test_a_later_fragment_has_no_udp_header() -> None:
    assert packet_meter.udp_destination(ipv4(RTP, fragment=185)) is None
    # More fragments follow, offset 0: the first fragment carries the header.
    assert packet_meter.udp_destination(ipv4(RTP, fragment=0x2000)) is not None


def test_a_loopback_packet_counts_once_on_arrival() -> None:
    ports = frozenset({6000})
    packet = ipv4(RTP)
    assert packet_meter.arriving(packet, address(socket.PACKET_OUTGOING), 1.0, ports) is None
    arrived = packet_meter.arriving(packet, address(socket.PACKET_HOST), 1.0, ports)
    assert arrived == packet_meter.Datagram(1.0, 6000, RTP[: packet_meter.HEAD_BYTES])


def test_other_ports_are_not_counted() -> None:
    assert packet_meter.arriving(ipv4(RTP, dst_port=6002), address(socket.PACKET_HOST), 1.0, frozenset({6000})) is None


def test_per_second_counts_whole_seconds_only() -> None:
    times = [10.0, 10.5, 10.99, 11.0, 12.2, 13.9, 14.1, 9.9]
    # From 10.0 to 13.5: three whole seconds; 13.9 and 14.1 fall after, 9.9 before.
    assert packet_meter.per_second(times, 10.0, 13.5) == [3, 1, 1]
    assert packet_meter.per_second(times, 10.0, 9.0) == []
