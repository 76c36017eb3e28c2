"""Is a port free to bind? Checked before a service is started, so that the
error names the port and the key that sets it instead of a log line deep in
Asterisk's or Postgres' output."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from ivr_auth import errors


def is_free(host: str, port: int, kind: socket.SocketKind) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def holder(port: int, proto: str) -> str | None:
    """Name the process listening on a local port, where /proc tells it."""
    table = {"tcp": ("/proc/net/tcp", "/proc/net/tcp6"), "udp": ("/proc/net/udp", "/proc/net/udp6")}[proto]
    inodes: set[str] = set()
    for path in table:
        try:
            lines = Path(path).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if int(local.rsplit(":", 1)[1], 16) == port and (proto == "udp" or state == "0A"):
                inodes.add(inode)
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = str(fd.readlink())
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    comm = (proc / "comm").read_text().strip()
                    return f"{comm} (pid {proc.name})"
        except OSError:
            continue
    return None


def require_free(host: str, port: int, proto: str, key: str, what: str, *, wait: float = 0.0) -> None:
    """Raise PortInUse naming the port, its holder and the key to change.
    ``wait``: give a process that is just exiting that long to let go."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    deadline = time.monotonic() + wait
    while not is_free(host, port, kind):
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    else:
        return
    who = holder(port, proto)
    by = f" by {who}" if who else ""
    env = "IVR_AUTH_" + key.replace(".", "_").upper()
    raise errors.PortInUse(
        f"{what} needs {proto.upper()} port {port} on {host}, but it is in use{by}. "
        f"Stop that process or choose another port with {key} in ivr-auth.yaml (or {env})."
    )
