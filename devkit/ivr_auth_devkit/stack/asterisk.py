"""A project-local Asterisk instance.

Its configuration is rendered from the templates in ``asterisk/`` and
``dialplan/`` with values from ivr-auth.yaml into ``<run_dir>/asterisk/etc``;
its database, spool, logs and control socket live beside that, so it touches
neither ``/etc/asterisk`` nor a system Asterisk that may be running.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from ivr_auth import asterisk_config, config, data, errors, ports, prompts
from ivr_auth.ari import client as ari_client
from ivr_auth_devkit.stack import install, proc, render

logger = logging.getLogger(__name__)

TEMPLATE_DIRS = (data.ASTERISK_DIR, data.DIALPLAN_DIR)
# A Unix socket path longer than this does not fit in sockaddr_un.
MAX_SOCKET_PATH = 100


def ari_url(cfg: config.StackConfig) -> str:
    return f"http://{cfg.bind}:{cfg.ari_port}/ari"


def template_values(cfg: config.Config, ari_password: str, dirs: dict[str, Path]) -> dict[str, str]:
    """The values of the stack's own templates: the include files' and the
    stack's addresses and directories."""
    values = asterisk_config.values(cfg, ari_password)
    values.update(
        {
            "ari_bind": cfg.stack.bind,
            "ari_port": str(cfg.stack.ari_port),
            "sip_bind": cfg.stack.bind,
            "sip_port": str(cfg.stack.sip_port),
            "rtp_start": str(cfg.stack.rtp_start),
            "rtp_end": str(cfg.stack.rtp_end),
        }
    )
    values.update({f"{name}_dir": str(path) for name, path in dirs.items()})
    return values


# Moved to the service, which writes the same sections for an operator.
trunk_section = asterisk_config.trunk_section
agi_routes = asterisk_config.agi_routes


def render_config(
    cfg: config.Config,
    ari_password: str,
    dirs: dict[str, Path],
    asterisk_version: tuple[int, ...] | None = None,
) -> list[Path]:
    """Write the stack's own files and the include files an operator would
    install (``ivr-auth asterisk-config``, for ``asterisk_version``; None:
    22), which the stack's files include, into ``dirs['etc']``; return the
    files whose content changed. Files with a password are 0600."""
    values = template_values(cfg, ari_password, dirs)
    etc = dirs["etc"]
    etc.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, str, bool]] = []
    for folder in TEMPLATE_DIRS:
        if not folder.is_dir():
            raise errors.StackError(f"template folder {folder} is missing from the installed package")
        for template in sorted(folder.glob("*.conf")):
            files.append((template.name, render.render(template.read_text(), values, source=str(template)), False))
    files += [(f.name, f.text, f.secret) for f in asterisk_config.generate(cfg, ari_password, asterisk_version)]
    changed = []
    for name, text, secret in files:
        target = etc / name
        if not target.exists() or target.read_text() != text:
            asterisk_config.write_file(target, text, secret=secret)
            changed.append(target)
        elif secret:
            target.chmod(0o600)
    return changed


@dataclass
class Instance:
    cfg: config.Config
    run_dir: Path
    ari_password: str

    @property
    def stack(self) -> config.StackConfig:
        return self.cfg.stack

    @property
    def home(self) -> Path:
        return self.run_dir / "asterisk"

    @property
    def dirs(self) -> dict[str, Path]:
        ctl = self.home / "run"
        if len(str(ctl / "asterisk.ctl")) > MAX_SOCKET_PATH:
            ctl = Path("/tmp") / f"ivr-auth-ast-{hashlib.sha256(str(self.home).encode()).hexdigest()[:12]}"
        return {
            "etc": self.home / "etc",
            "varlib": self.home / "lib",
            "spool": self.home / "spool",
            "log": self.home / "log",
            "ctl": ctl,
            "module": self.install.module_dir(),
            "data": self.install.data_dir(),
        }

    @property
    def conf(self) -> Path:
        return self.home / "etc" / "asterisk.conf"

    @property
    def log_file(self) -> Path:
        return self.home / "log" / "messages"

    @functools.cached_property
    def install(self) -> install.Install:
        return install.resolve(self.stack)

    def command(self) -> list[str]:
        """argv that runs this instance's ``asterisk`` (through chroot for a tree of its own)."""
        return self.install.command()

    @functools.cached_property
    def version(self) -> tuple[int, ...] | None:
        """The installed Asterisk's version, from ``asterisk -V``; None when it does not say."""
        return self.install.version()

    async def cli(self, command: str, timeout: float = 30.0) -> proc.Result:
        return await proc.run([*self.command(), "-C", str(self.conf), "-rx", command], timeout=timeout)

    def pid(self) -> int | None:
        pid_file = self.dirs["ctl"] / "asterisk.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    async def is_running(self) -> bool:
        if not self.conf.exists() or self.pid() is None:
            return False
        result = await self.cli("core show version", timeout=10)
        return result.returncode == 0 and "Asterisk" in result.stdout

    async def start(self) -> None:
        self.command()
        self.install.expose(self._shared_dirs())
        if await self.is_running():
            changed = render_config(self.cfg, self.ari_password, self.dirs, asterisk_version=self.version)
            if changed:
                # Templates or ivr-auth.yaml changed since the instance started.
                logger.info("asterisk config changed (%s); reloading", ", ".join(p.name for p in changed))
                await self.cli("core reload")
            await self.wait_ari(self.stack.start_timeout)
            return
        bind = self.stack.bind
        ports.require_free(bind, self.stack.sip_port, "udp", "stack.sip_port", "Asterisk (SIP over UDP)", wait=5)
        ports.require_free(bind, self.stack.sip_port, "tcp", "stack.sip_port", "Asterisk (SIP over TCP)", wait=5)
        ports.require_free(bind, self.stack.ari_port, "tcp", "stack.ari_port", "Asterisk (ARI / HTTP)", wait=5)
        dirs = self.dirs  # made by _shared_dirs above
        # ARI recordings (POST .../record) are written here; Asterisk does not make it.
        (dirs["spool"] / "recording").mkdir(exist_ok=True)
        render_config(self.cfg, self.ari_password, dirs, asterisk_version=self.version)
        result = await proc.run([*self.command(), "-C", str(self.conf)], timeout=30)
        if result.returncode != 0:
            raise errors.StackError(f"Asterisk did not start: {result.output}\n{self._log_tail()}")
        await self.wait_booted(self.stack.start_timeout)
        await self.wait_ari(self.stack.start_timeout)
        logger.info(
            "asterisk %s up (%s): SIP %s:%s, ARI %s",
            ".".join(map(str, self.version or ())) or "(version unknown)",
            self.install.description,
            bind,
            self.stack.sip_port,
            ari_url(self.stack),
        )

    def _shared_dirs(self) -> list[Path]:
        """Host directories an Asterisk in a tree of its own must see: its run
        directory, its control socket's and the prompts."""
        dirs = self.dirs
        for key in ("etc", "varlib", "spool", "log", "ctl"):
            dirs[key].mkdir(parents=True, exist_ok=True)
        return [self.home, dirs["ctl"], prompts.SHIPPED_DIR]

    async def wait_booted(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None and not (self.dirs["ctl"] / "asterisk.ctl").exists():
                await asyncio.sleep(0.2)
                if self.pid() is None:
                    continue
            result = await self.cli("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
            if result.returncode == 0:
                return
            await asyncio.sleep(0.2)
        raise errors.StackError(
            f"Asterisk did not finish booting within {timeout:.0f}s; its log is {self.log_file}:\n{self._log_tail()}"
        )

    async def wait_ari(self, timeout: float) -> None:
        """ARI is ready when an authenticated request answers 200."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        async with aiohttp.ClientSession() as session:
            client = ari_client.AriClient(
                session, ari_url(self.stack), self.cfg.ari.username, self.ari_password, timeout=5.0
            )
            while time.monotonic() < deadline:
                try:
                    await client.asterisk_info()
                    return
                except errors.AriError as exc:
                    last = str(exc)
                await asyncio.sleep(0.2)
        raise errors.StackError(
            f"ARI at {ari_url(self.stack)} did not answer within {timeout:.0f}s ({last})\n{self._log_tail()}"
        )

    async def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        await self.cli("core stop now", timeout=15)
        # Wait for the process itself, not its pid file (removed before the
        # sockets are closed), so that a restart finds its ports free.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.alive(pid):
            await asyncio.sleep(0.1)
        if proc.alive(pid):
            logger.warning("asterisk pid %s did not stop; killing it", pid)
            os.kill(pid, signal.SIGKILL)
        self.install.release(self.home)
        return True

    def _log_tail(self) -> str:
        return proc.tail(self.log_file, missing="(no Asterisk log yet)")
