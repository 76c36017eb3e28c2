"""The processes a drill runs: the API and the controllers, each its own
process (a SIGKILL is real), and the SIPp handsets that keep every INVITE
dialog the trunk received."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from ivr_auth import config, connections
from ivr_auth_devkit import sipp_load, stack
from ivr_auth_devkit.drill import measure

HTTP = "127.0.0.1:8098"
# The controllers reach ARI through this relay (the websocket drill cuts it).
ARI_PROXY_PORT = 58119
# Each controller's name and its own /metrics; the second is started last.
CONTROLLERS = {"c1": "127.0.0.1:8101", "c2": "127.0.0.1:8102"}


class TracingHandsets(sipp_load.LoadHandsets):
    """The load handsets, keeping every INVITE dialog the trunk received."""

    dialogs: list[measure.Invite]

    def _result(self, returncode: int, output: str) -> Any:
        self.dialogs = []
        if self._dir is not None and (log := self._dir / "messages.log").exists():
            self.dialogs = measure.received_invites(log.read_text(errors="replace"))
        return super()._result(returncode, output)


class Services:
    """The API and the controllers, each its own process (SIGKILL is real)."""

    def __init__(self, cfg: config.Config, config_file: Path, endpoints: connections.Connections, out: Path) -> None:
        self.cfg = cfg
        self.config_file = config_file
        self.endpoints = endpoints
        self.out = out
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    async def start(self, name: str) -> None:
        env = {**os.environ, **stack.environment(self.endpoints)}
        command = "api"
        if name in CONTROLLERS:
            command = "controller"
            env.update(
                IVR_AUTH_DIALER_NAME=name,
                IVR_AUTH_METRICS_LISTEN=CONTROLLERS[name],
                IVR_AUTH_ARI_URL=f"http://127.0.0.1:{ARI_PROXY_PORT}/ari",
            )
        with (self.out / f"{name}.log").open("ab") as log:
            self.procs[name] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ivr_auth.cli", "-c", str(self.config_file), "--log-level", "info", command,
                stdout=log, stderr=asyncio.subprocess.STDOUT, env=env,
            )  # fmt: skip

    async def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    async def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
