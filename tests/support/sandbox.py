"""The system call sandbox of the service's systemd units, rebuilt without
systemd, for a process to put itself in before it runs the service's
libraries (tests/unit/test_systemd_units.py).

What it rebuilds, with libseccomp as systemd does: ``SystemCallFilter=``
(an allow list, the other calls failing with ``SystemCallErrorNumber=``),
``RestrictAddressFamilies=`` (other families fail with EAFNOSUPPORT), and
``MemoryDenyWriteExecute=`` (through Linux's PR_SET_MDWE, 6.3 and later,
which refuses the same mappings). The groups (``@system-service``) are
expanded by ``systemd-analyze syscall-filter``, so they are the installed
systemd's."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import shutil
import socket
import subprocess
from collections.abc import Iterable

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def scmp_act_errno(number: int) -> int:
    return 0x00050000 | (number & 0xFFFF)


class ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


def syscalls(group: str, seen: set[str] | None = None) -> set[str]:
    """The system calls of a ``SystemCallFilter=`` group, nested groups expanded."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        raise RuntimeError("systemd-analyze is missing")
    seen = set() if seen is None else seen
    seen.add(group)
    listed = subprocess.run(
        [analyze, "syscall-filter", "--no-pager", group], capture_output=True, text=True, check=True, timeout=30
    ).stdout.splitlines()
    found: set[str] = set()
    for line in listed[1:]:  # the first line names the group
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if name.startswith("@"):
            if name not in seen:
                found |= syscalls(name, seen)
        else:
            found.add(name)
    return found


def allowed(groups: Iterable[str], denied: Iterable[str]) -> set[str]:
    """``SystemCallFilter=GROUPS`` then ``SystemCallFilter=~DENIED``."""
    allow: set[str] = set()
    for group in groups:
        allow |= syscalls(group)
    for group in denied:
        allow -= syscalls(group) if group.startswith("@") else {group}
    return allow


def enter(allow: set[str], families: Iterable[int], *, error: int = errno.EPERM) -> None:
    """Load the filter into this process (and its threads to come): every
    call outside ``allow`` fails with ``error``; ``socket()`` of a family
    outside ``families`` with EAFNOSUPPORT."""
    path = ctypes.util.find_library("seccomp")
    if path is None:
        raise RuntimeError("libseccomp is missing")
    lib = ctypes.CDLL(path, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_rule_add_array.argtypes = (
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ArgCmp),
    )
    lib.seccomp_load.argtypes = (ctypes.c_void_p,)
    ctx = lib.seccomp_init(scmp_act_errno(error))
    if not ctx:
        raise RuntimeError("seccomp_init failed")
    socket_nr = lib.seccomp_syscall_resolve_name(b"socket")
    for name in sorted(allow - {"socket"}):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number == -1:  # __NR_SCMP_ERROR: not a call libseccomp knows
            continue
        # Calls of other architectures resolve to pseudo numbers, which
        # libseccomp accepts and leaves out.
        if lib.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, number, 0, None) != 0:
            raise RuntimeError(f"seccomp_rule_add {name} failed")
    if "socket" in allow:
        wanted = set(families)
        for family in range(46):  # AF_MAX on Linux
            action = SCMP_ACT_ALLOW if family in wanted else scmp_act_errno(errno.EAFNOSUPPORT)
            cmp = ArgCmp(0, SCMP_CMP_EQ, family, 0)
            if lib.seccomp_rule_add_array(ctx, action, socket_nr, 1, ctypes.byref(cmp)) != 0:
                raise RuntimeError(f"seccomp_rule_add socket({family}) failed")
    if lib.seccomp_load(ctx) != 0:
        raise RuntimeError(f"seccomp_load failed: errno {ctypes.get_errno()}")


def deny_write_execute() -> bool:
    """PR_SET_MDWE on this process; False where the kernel has none."""
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) == 0)


UNIT_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)


def from_unit(text: str) -> tuple[set[str], tuple[int, ...], int]:
    """The allowed calls, socket families and error number a unit's
    ``[Service]`` section sets (each key's assignments in order, as systemd
    reads them)."""
    groups: list[str] = []
    denied: list[str] = []
    families: tuple[int, ...] = ()
    error = errno.EPERM
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "SystemCallFilter":
            if value.startswith("~"):
                denied += value[1:].split()
            else:
                groups += value.split()
        elif key == "RestrictAddressFamilies":
            families = tuple(socket.AddressFamily[name] for name in value.split())
        elif key == "SystemCallErrorNumber":
            error = getattr(errno, value)
    return allowed(groups, denied), families, error
