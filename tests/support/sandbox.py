"""The sandbox of the service's systemd units, rebuilt without systemd,
for a process to put itself in before it runs the service's libraries
(tests/unit/test_systemd_units.py), or, run as a script
(``python sandbox.py UNIT_FILE``), to run a unit's ``ExecStart=`` in
(tests/e2e/test_installed_wheel.py). Only the standard library: the script
runs outside the checkout's venv.

What it rebuilds, with libseccomp as systemd does: ``SystemCallFilter=``
(an allow list, the other calls failing with ``SystemCallErrorNumber=``),
``RestrictAddressFamilies=`` (other families fail with EAFNOSUPPORT), and
``MemoryDenyWriteExecute=`` (through Linux's PR_SET_MDWE, 6.3 and later,
which refuses the same mappings). The groups (``@system-service``) are
expanded by ``systemd-analyze syscall-filter``, so they are the installed
systemd's. The script adds ``ProtectSystem=strict`` and ``ProtectHome=``
(every mount read-only but /dev, /proc and /sys, in a mount namespace of
its own; /home, /root and /run/user hidden), ``CapabilityBoundingSet=``
(empty: root without capabilities), ``NoNewPrivileges=`` and ``UMask=``.
Not rebuilt: ``User=`` (the process stays uid 0, without capabilities),
``PrivateTmp=`` (the tests keep their files in /tmp), ``PrivateDevices=``
and the ``ProtectKernel*`` settings."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
PR_CAPBSET_DROP = 24
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
# statvfs's ST_* flag and the MS_* flag that keeps it on a remount.
KEPT_FLAGS = (
    (os.ST_NOSUID, 0x2),
    (os.ST_NODEV, 0x4),
    (os.ST_NOEXEC, 0x8),
    (os.ST_NOATIME, 0x400),
    (os.ST_NODIRATIME, 0x800),
    (os.ST_RELATIME, 0x200000),
)
WRITABLE = ("/dev", "/proc", "/sys")
HIDDEN = ("/home", "/root", "/run/user")


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


def protect_system() -> None:
    """``ProtectSystem=strict`` and ``ProtectHome=yes`` for this process:
    a mount namespace of its own, every mount in it read-only but those of
    /dev, /proc and /sys, and an empty, inaccessible tmpfs on each of
    /home, /root and /run/user that does not hold this Python. Not root,
    it takes a user namespace too (uid 0 in it, this user outside), where
    the kernel lets it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)

    def mount(source: str | None, target: str, kind: str | None, flags: int, options: str | None = None) -> None:
        encoded = [None if s is None else s.encode() for s in (source, target, kind, options)]
        if libc.mount(encoded[0], encoded[1], encoded[2], flags, encoded[3]) != 0:
            raise OSError(ctypes.get_errno(), f"mount {target}: {os.strerror(ctypes.get_errno())}")

    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWNS | (CLONE_NEWUSER if uid else 0)) != 0:
        raise OSError(ctypes.get_errno(), f"unshare: {os.strerror(ctypes.get_errno())}")
    if uid:
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
        Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # \040 for a space
        if not any(point == w or point.startswith(w + "/") for w in WRITABLE):
            points.append(point)
    for point in points:
        # A mount's own flags are kept: inside a user namespace, dropping one
        # (nosuid, nodev, ...) is refused.
        try:
            kept = os.statvfs(point).f_flag
        except OSError:  # hidden beneath another mount, or gone
            continue
        flags = sum(ms for st, ms in KEPT_FLAGS if kept & st)
        mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
    # A Python of pyenv's in /root/.pyenv would be hidden too; the venvs of
    # the tests are made with it on some machines (a deployment's venv must
    # be made with a Python outside them: docs/deploy.md).
    python = os.path.realpath(sys.executable)
    for hidden in HIDDEN:
        if os.path.isdir(hidden) and not python.startswith(hidden + "/"):
            mount("tmpfs", hidden, "tmpfs", MS_RDONLY, "mode=000")


def drop_capabilities() -> None:
    """``CapabilityBoundingSet=`` (empty): root keeps none across execve."""
    libc = ctypes.CDLL(None, use_errno=True)
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"PR_CAPBSET_DROP {cap}")


def exec_start(text: str) -> list[str]:
    """A unit's ``ExecStart=`` as argv (``%%`` is a ``%``)."""
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "ExecStart":
            return shlex.split(value.replace("%%", "%"))
    raise ValueError("no ExecStart=")


def umask(text: str) -> int:
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "UMask":
            return int(value, 8)
    return 0o022


def main(unit_file: str) -> None:
    """Run the unit's ``ExecStart=`` in its sandbox (this process becomes it)."""
    text = Path(unit_file).read_text()
    argv = exec_start(text)
    allow, families, error = from_unit(text)
    try:
        protect_system()
    except OSError as exc:
        print(f"sandbox: ProtectSystem= and ProtectHome= not rebuilt here ({exc})", file=sys.stderr)
    os.umask(umask(text))
    if "MemoryDenyWriteExecute=yes" in text.splitlines():
        deny_write_execute()  # where the kernel has it
    if os.geteuid() == 0:
        drop_capabilities()
    enter(allow, families, error=error)  # sets no_new_privs too
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1])
