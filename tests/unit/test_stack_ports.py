from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr_auth import errors, ports

HOST = "127.0.0.1"


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def udp_bound() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        yield sock.getsockname()[1]


def test_tcp_port_is_not_free_while_listened_on(tcp_listener: int) -> None:
    assert not ports.is_free(HOST, tcp_listener, socket.SOCK_STREAM)


def test_udp_port_is_not_free_while_bound(udp_bound: int) -> None:
    assert not ports.is_free(HOST, udp_bound, socket.SOCK_DGRAM)


def test_port_is_free_again_once_closed() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not ports.is_free(HOST, port, socket.SOCK_STREAM)

    assert ports.is_free(HOST, port, socket.SOCK_STREAM)


def test_is_free_leaves_the_port_free() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]

    assert ports.is_free(HOST, port, socket.SOCK_DGRAM)
    assert ports.is_free(HOST, port, socket.SOCK_DGRAM)


def test_require_free_names_port_key_and_env_var(tcp_listener: int) -> None:
    with pytest.raises(errors.PortInUse) as exc:
        ports.require_free(HOST, tcp_listener, "tcp", "stack.ari_port", "Asterisk (ARI / HTTP)")

    message = str(exc.value)
    assert f"TCP port {tcp_listener} on {HOST}" in message
    assert "stack.ari_port" in message
    assert "IVR_AUTH_STACK_ARI_PORT" in message
    assert message.startswith("Asterisk (ARI / HTTP) needs")
    assert isinstance(exc.value, errors.StackError)


def test_require_free_for_udp(udp_bound: int) -> None:
    with pytest.raises(errors.PortInUse) as exc:
        ports.require_free(HOST, udp_bound, "udp", "trunk.port", "the SIPp handset")

    assert f"UDP port {udp_bound}" in str(exc.value)
    assert "IVR_AUTH_TRUNK_PORT" in str(exc.value)


@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="needs Linux /proc")
def test_require_free_names_the_process_holding_the_port(tcp_listener: int) -> None:
    with pytest.raises(errors.PortInUse) as exc:
        ports.require_free(HOST, tcp_listener, "tcp", "stack.sip_port", "Asterisk")

    assert f"(pid {os.getpid()})" in str(exc.value)


def test_require_free_passes_on_a_free_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]

    ports.require_free(HOST, port, "tcp", "stack.sip_port", "Asterisk")
