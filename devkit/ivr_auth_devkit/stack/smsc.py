"""The stack's test SMSC: the development kit's npm SMPP server, run from the
run directory beside Postgres and Asterisk when the config names no SMS
carrier (``sms.carriers`` empty), so that ``make run``, the demo and the
tests send real SMPP to it. Its ports are free ones picked at start and kept
in ``<run_dir>/smsc/smsc.json``: the completed config reads them there."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ivr_auth import config
from ivr_auth_devkit import smsc
from ivr_auth_devkit.stack import secrets

# The carrier's name in the completed config ([a-z0-9_-]).
CARRIER_NAME = "local-smsc"


def embedded(cfg: config.Config) -> bool:
    return not cfg.sms.carriers


def home(cfg: config.Config) -> Path:
    return cfg.run_dir / "smsc"


def running(cfg: config.Config) -> smsc.Smsc | None:
    return smsc.Smsc.attach(home(cfg))


async def start(cfg: config.Config, stack_secrets: secrets.StackSecrets) -> smsc.Smsc:
    """The SMSC running from the run directory, started when it is not."""
    found = await asyncio.to_thread(running, cfg)
    if found is not None:
        return found
    return await asyncio.to_thread(
        smsc.Smsc.start,
        home(cfg),
        system_id=stack_secrets.smsc_system_id,
        password=stack_secrets.smsc_password,
        timeout=cfg.stack.start_timeout,
    )


async def stop(cfg: config.Config) -> bool:
    found = await asyncio.to_thread(running, cfg)
    if found is None:
        return False
    await asyncio.to_thread(found.stop)
    return True


def carrier(cfg: config.Config, stack_secrets: secrets.StackSecrets) -> dict[str, Any] | None:
    """The ``sms.carriers`` entry of the running SMSC; None when it is not running."""
    found = running(cfg)
    if found is None:
        return None
    return {
        "name": CARRIER_NAME,
        "host": found.host,
        "port": found.port,
        "system_id": stack_secrets.smsc_system_id,
        "password": stack_secrets.smsc_password,
    }


def status(cfg: config.Config) -> str:
    if not embedded(cfg):
        return "external (sms.carriers)"
    found = running(cfg)
    if found is None:
        return "stopped"
    return f"running (pid {found.pid}), SMPP {found.host}:{found.port}, control {found.control_url}"
