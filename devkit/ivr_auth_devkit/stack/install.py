"""Which Asterisk the embedded stack runs, and how to run it.

Either the host's own (``stack.asterisk_root: host``), or an Asterisk
installed in a tree of its own entered with chroot(8): on Debian 12, whose
archive carries no Asterisk newer than Debian 11's 16, ``make setup`` builds
a Debian unstable tree with Asterisk 22 LTS (scripts/setup-asterisk22.sh).
``auto`` (the default) takes that tree when it is there, else the host's.

Inside a tree, Asterisk sees the host's files only where they are
bind-mounted at the same path: the stack's run directory, the prompts and
``/tmp`` (its control socket may live there, and so do the tests'
directories). :meth:`Install.expose` mounts them, and mounts them again when
the host's directory was removed and made anew since.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ivr_auth import config, errors
from ivr_auth.ari import release

# Where scripts/setup-asterisk22.sh builds the tree unless told otherwise.
DEFAULT_ROOT = Path(os.environ.get("IVR_AUTH_ASTERISK22_ROOT", "/var/lib/ivr-auth-dev/asterisk22"))
ROOT_BINARY = "/usr/sbin/asterisk"
MODULE_DIR_CANDIDATES = (
    "/usr/lib/asterisk/modules",
    "/usr/lib/x86_64-linux-gnu/asterisk/modules",
    "/usr/lib/aarch64-linux-gnu/asterisk/modules",
    "/usr/lib64/asterisk/modules",
)
DATA_DIR_CANDIDATES = ("/usr/share/asterisk", "/var/lib/asterisk")


def parse_version(text: str) -> tuple[int, ...] | None:
    """``Asterisk 22.10.1+dfsg...`` -> (22, 10, 1); None when not a version line."""
    found = release.Release.parse(text.removeprefix("Asterisk "))
    return found.version if found else None


@dataclass(frozen=True)
class Install:
    """An Asterisk installation: ``root`` None is the host's."""

    cfg: config.StackConfig
    root: Path | None

    @property
    def description(self) -> str:
        return f"the tree {self.root}" if self.root else "this host"

    def outside(self, path: str | Path) -> Path:
        """Where a path inside the installation is on the host."""
        return self.root / str(path).lstrip("/") if self.root else Path(path)

    def command(self) -> list[str]:
        """argv that runs this installation's ``asterisk``."""
        if self.root is None:
            found = shutil.which(self.cfg.asterisk_binary)
            if not found:
                raise errors.NotInstalled(
                    f"Asterisk is not installed ('{self.cfg.asterisk_binary}' is not on PATH); run `make setup`, "
                    "or set stack.asterisk_binary, or point ari.url at an Asterisk you run yourself"
                )
            return [found]
        binary = self.cfg.asterisk_binary if self.cfg.asterisk_binary.startswith("/") else ROOT_BINARY
        if not self.outside(binary).is_file():
            raise errors.NotInstalled(
                f"there is no Asterisk at {binary} in {self.root}; run `make setup` (it builds the tree), "
                'or set stack.asterisk_root to "host" to run the host\'s own Asterisk'
            )
        if os.geteuid() != 0:
            raise errors.StackError(
                f"running the Asterisk in {self.root} takes chroot, which needs root; run as root, "
                'or set stack.asterisk_root to "host" to run the host\'s own Asterisk'
            )
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        return [chroot, str(self.root), binary]

    def version(self) -> tuple[int, ...] | None:
        """The installed Asterisk's version, from ``asterisk -V``."""
        try:
            out = subprocess.run(
                [*self.command(), "-V"], capture_output=True, text=True, timeout=15, check=False
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        return parse_version(out)

    def _system_dir(self, key: str) -> str | None:
        try:
            text = self.outside("/etc/asterisk/asterisk.conf").read_text()
        except OSError:
            return None
        match = re.search(rf"^\s*{key}\s*=>?\s*(\S+)", text, re.MULTILINE)
        return match.group(1) if match else None

    def module_dir(self) -> Path:
        """The modules directory, as Asterisk itself names it."""
        for candidate in (self.cfg.asterisk_module_dir, self._system_dir("astmoddir"), *MODULE_DIR_CANDIDATES):
            if candidate and (self.outside(candidate) / "res_ari.so").exists():
                return Path(candidate)
        raise errors.NotInstalled(
            f"Asterisk's modules (res_ari.so) were not found in {self.description}; run `make setup` to install "
            "Asterisk, or set stack.asterisk_module_dir"
        )

    def data_dir(self) -> Path:
        for candidate in (self.cfg.asterisk_data_dir, self._system_dir("astdatadir"), *DATA_DIR_CANDIDATES):
            if candidate and (self.outside(candidate) / "sounds").is_dir():
                return Path(candidate)
        raise errors.NotInstalled(
            f"Asterisk's sounds were not found in {self.description}; run `make setup` (it installs "
            "asterisk-core-sounds-en), or set stack.asterisk_data_dir"
        )

    def expose(self, paths: Iterable[Path]) -> None:
        """Make host directories visible inside the tree at the same paths
        (bind mounts); nothing to do for the host's own Asterisk."""
        if self.root is None:
            return
        # Name resolution as on the host: Asterisk looks up the host's own
        # name (and logs an error a few times a minute when it cannot).
        for name in ("/etc/hosts", "/etc/resolv.conf"):
            host_file, tree_file = Path(name), self.outside(name)
            with contextlib.suppress(OSError):
                text = host_file.read_bytes()
                if not tree_file.exists() or tree_file.read_bytes() != text:
                    tree_file.write_bytes(text)
        for path in (Path("/tmp"), *paths):
            path = path.resolve()
            target = self.outside(path)
            if target.exists() and os.path.samestat(os.stat(path), os.stat(target)):
                continue
            while mounted(target):
                # The host's directory was removed and made anew: the old mount shows a deleted one.
                _mount(["umount", "-l", str(target)])
            target.mkdir(parents=True, exist_ok=True)
            _mount(["mount", "--bind", str(path), str(target)])

    def release(self, path: Path) -> None:
        """Undo :meth:`expose` for one directory (not /tmp, which stacks share)."""
        if self.root is None:
            return
        target = self.outside(path.resolve())
        while mounted(target):
            _mount(["umount", "-l", str(target)])


def mounted(path: Path) -> bool:
    """Whether a mount sits on ``path``. (os.path.ismount cannot tell a bind
    mount from the same filesystem: it compares devices.)"""
    try:
        table = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return False
    wanted = str(path)
    for line in table.splitlines():
        fields = line.split(" ")
        # Field 5 is the mount point, with space, tab, newline and backslash as octal escapes.
        if len(fields) > 4 and re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]) == wanted:
            return True
    return False


def _mount(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise errors.StackError(f"{' '.join(argv)} failed: {(result.stdout + result.stderr).strip()}")


def resolve(cfg: config.StackConfig) -> Install:
    """The installation ``stack.asterisk_root`` names."""
    choice = cfg.asterisk_root
    if choice == "host":
        return Install(cfg, None)
    if choice == "auto":
        return Install(cfg, DEFAULT_ROOT if (DEFAULT_ROOT / ROOT_BINARY.lstrip("/")).is_file() else None)
    return Install(cfg, Path(choice))
