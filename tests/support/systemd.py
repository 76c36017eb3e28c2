"""Reading the systemd units ``ivr-auth systemd-units`` writes: what
``systemd-analyze verify`` says of them, and a section's settings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def verify(*paths: Path) -> list[str]:
    """What ``systemd-analyze verify`` says about ``paths``: every line it
    prints, and its exit status when not 0."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing (Debian's systemd package; scripts/setup-system.sh)"
    done = subprocess.run(
        [analyze, "verify", "--man=no", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    said = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return said + ([f"exit status {done.returncode}"] if done.returncode else [])


def section(text: str, name: str) -> dict[str, list[str]]:
    """The settings of ``[name]``, each key's values in order (a key may repeat)."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
        elif current == name:
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found
