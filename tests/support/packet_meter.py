"""A packet meter on the loopback interface: the UDP datagrams that reach a
SIPp phone's ports, seen from the phone's side, for tests that must show
that media never stops (carriers and SBCs drop a call whose RTP stops).

It captures as tcpdump does, with a Linux ``AF_PACKET`` socket bound to
``lo`` (root only). Over loopback each datagram passes the interface twice,
once leaving (``PACKET_OUTGOING``) and once arriving (``PACKET_HOST``); only
the arrival is kept. Times are the kernel's receive stamps
(``SO_TIMESTAMPNS``), so a busy event loop in the test process cannot move
a packet into another second.
"""

from __future__ import annotations

import math
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ETH_P_ALL = 0x0003
# Linux (asm-generic); Python's socket module does not name it.
SO_TIMESTAMPNS = 35
# Enough for an IPv6 header (40), the UDP header (8) and the payload's first bytes.
SNAPLEN = 96
HEAD_BYTES = SNAPLEN - 48
UDP = 17


@dataclass(frozen=True)
class Datagram:
    at: float  # kernel receive time, seconds since the epoch
    dst_port: int
    head: bytes  # the first bytes of the UDP payload


def udp_destination(packet: bytes) -> tuple[int, bytes] | None:
    """(destination port, start of the payload) of a UDP packet over IPv4 or
    IPv6, as an ``AF_PACKET`` ``SOCK_DGRAM`` socket gives it (from the IP
    header on); None for anything else, and for an IPv4 fragment after the
    first (it has no UDP header)."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        start = (packet[0] & 0x0F) * 4
        if len(packet) < max(start, 20) + 8 or packet[9] != UDP:
            return None
        if struct.unpack_from("!H", packet, 6)[0] & 0x1FFF:
            return None
    elif version == 6:
        # A next header other than UDP (extension headers included) is not counted.
        start = 40
        if len(packet) < start + 8 or packet[6] != UDP:
            return None
    else:
        return None
    (dst_port,) = struct.unpack_from("!H", packet, start + 2)
    return dst_port, packet[start + 8 : start + 8 + HEAD_BYTES]


def arriving(packet: bytes, address: tuple[Any, ...], at: float, ports: frozenset[int]) -> Datagram | None:
    """The datagram ``packet`` is, when it is UDP to one of ``ports`` and seen
    arriving (``address`` is ``recvfrom``'s: interface, protocol, packet type, ...)."""
    if address[2] == socket.PACKET_OUTGOING:
        return None
    found = udp_destination(packet)
    if found is None or found[0] not in ports:
        return None
    return Datagram(at, found[0], found[1])


def per_second(times: Iterable[float], start: float, end: float) -> list[int]:
    """How many of ``times`` fall in each whole second from ``start``, for the
    seconds that are over by ``end`` (a last, partial second is left out)."""
    counts = [0] * max(math.floor(end - start), 0)
    for at in times:
        index = math.floor(at - start)
        if 0 <= index < len(counts):
            counts[index] += 1
    return counts


class PacketMeter:
    """Records, from ``start()`` to ``stop()``, every UDP datagram arriving on
    ``interface`` for one of ``ports``."""

    def __init__(self, ports: Iterable[int], interface: str = "lo") -> None:
        self.ports = frozenset(ports)
        self.interface = interface
        self._datagrams: list[Datagram] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        try:
            sock.bind((self.interface, 0))
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            # Room for every packet of a long test on a busy loopback, should the thread fall behind.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
            sock.settimeout(0.1)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._read, name=f"packet-meter-{self.interface}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> PacketMeter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def datagrams(self, port: int | None = None) -> list[Datagram]:
        with self._lock:
            return [d for d in self._datagrams if port is None or d.dst_port == port]

    def times(self, port: int) -> list[float]:
        return [d.at for d in self.datagrams(port)]

    def first(self, port: int, head: bytes) -> Datagram | None:
        """The first datagram to ``port`` whose payload begins with ``head``
        (``b"BYE "``: the request that ends a call)."""
        return next((d for d in self.datagrams(port) if d.head.startswith(head)), None)

    def _read(self) -> None:
        assert self._sock is not None
        ancillary = socket.CMSG_SPACE(16)
        while not self._stopping.is_set():
            try:
                packet, ancdata, _, address = self._sock.recvmsg(SNAPLEN, ancillary)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            found = arriving(packet, address, _stamp(ancdata), self.ports)
            if found is not None:
                with self._lock:
                    self._datagrams.append(found)


def _stamp(ancdata: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack_from("@ll", data)
            return float(seconds) + float(nanoseconds) / 1e9
    return time.time()
