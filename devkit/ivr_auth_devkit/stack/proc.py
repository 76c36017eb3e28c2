"""Run the stack's helper programs, as the postgres user where Postgres wants;
watch the servers the devkit starts (whether one still runs, its log's end)."""

from __future__ import annotations

import asyncio
import os
import pwd
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ivr_auth import errors


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


async def run(argv: Sequence[str], *, timeout: float = 60.0, user: str | None = None) -> Result:
    """Run a program to completion. ``user`` is honoured only when we are root."""
    if user is not None and os.geteuid() == 0:
        argv = ["runuser", "-u", user, "--", *argv]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise errors.NotInstalled(f"{argv[0]} is not installed (not found on PATH)") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise errors.StackError(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from None
    return Result(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


def user_ids(name: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise errors.NotInstalled(f"there is no '{name}' system user; install PostgreSQL with `make setup`") from exc
    return entry.pw_uid, entry.pw_gid


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a parent that never reaps it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def tail(path: Path, lines: int = 15, *, missing: str = "(no log)") -> str:
    """The last ``lines`` lines of a server's log, for an error that names it."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return missing
