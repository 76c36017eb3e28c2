"""``ivr-auth systemd-units``: the service's systemd units, written out for
this installation. The templates ship in ``ivr_auth/data/systemd``; this
fills in the installed executable's absolute path, the service user, the
config and environment files, and stop timeouts long enough for the
controller's drain and the SMS sender's."""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr_auth import config, data, errors
from ivr_auth.sms import sender as sms_sender

UNITS = ("ivr-auth-api.service", "ivr-auth-controller.service", "ivr-auth-sms.service", "ivr-auth.target")
ENV_FILE = "ivr-auth.env"
HARDENING = "hardening.conf"
DEFAULT_USER = "ivr-auth"
DEFAULT_CONFIG_FILE = "/etc/ivr-auth/ivr-auth.yaml"
DEFAULT_ENV_FILE = "/etc/ivr-auth/ivr-auth.env"
# What runtime.Runtime.stop may take beside the controller's drain, each
# step bounded: its HTTP (10 s), FastAGI (10), the calls cut off at the end
# of the grace (15), webhooks (10), the HTTP client (5) and the database
# pool (10), and 10 more to spare.
SHUTDOWN_MARGIN_SECONDS = 70
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class Options:
    executable: str
    user: str = DEFAULT_USER
    group: str = DEFAULT_USER
    config_file: str = DEFAULT_CONFIG_FILE
    env_file: str = DEFAULT_ENV_FILE


def stop_timeout(grace: float) -> int:
    """``TimeoutStopSec``: the drain, then the rest of a bounded shutdown."""
    return math.ceil(grace) + SHUTDOWN_MARGIN_SECONDS


def sms_stop_timeout(sms: config.SmsConfig) -> int:
    """The SMS sender's ``TimeoutStopSec``: its own bounded stop, then the rest."""
    return stop_timeout(sms_sender.stop_bound(sms))


def render(options: Options, grace: float, sms: config.SmsConfig | None = None) -> dict[str, str]:
    """Each file's name and text: the units, then the example environment file."""
    _check(options)
    sms = sms or config.SmsConfig()
    values = {
        "bin": _escaped(options.executable),
        "user": options.user,
        "group": options.group,
        "config_file": _escaped(options.config_file),
        "env_file": _escaped(options.env_file),
        "grace": f"{grace:g}",
        "margin": str(SHUTDOWN_MARGIN_SECONDS),
        "stop_timeout": str(stop_timeout(grace)),
        "sms_drain": f"{sms_sender.drain_seconds(sms):g}",
        "sms_stop_timeout": str(sms_stop_timeout(sms)),
        "hardening": _template(HARDENING).rstrip("\n"),
    }
    return {name: _fill(name, _template(name), values) for name in (*UNITS, ENV_FILE)}


def write(out: Path, files: dict[str, str], *, force: bool = False) -> list[Path]:
    """Write ``files`` into ``out`` (made if missing): units 0644, the
    environment file 0600. Nothing is written when a file is already there,
    unless ``force``."""
    targets = [out / name for name in files]
    existing = [str(path) for path in targets if path.exists()]
    if existing and not force:
        raise errors.IvrAuthError(f"already there (--force replaces them): {', '.join(existing)}")
    out.mkdir(parents=True, exist_ok=True)
    for path in targets:
        mode = 0o600 if path.name == ENV_FILE else 0o644
        # Made with its mode, so the secrets file is never readable by others.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(files[path.name])
        os.chmod(path, mode)
    return targets


def installed_executable() -> str | None:
    """The ``ivr-auth`` beside this Python (a venv's bin/), else the one on PATH."""
    beside = Path(sys.executable).parent / "ivr-auth"
    if os.access(beside, os.X_OK):
        return str(beside.absolute())
    found = shutil.which("ivr-auth")
    return str(Path(found).absolute()) if found else None


def register(sub: Any) -> None:
    p_units = sub.add_parser(
        "systemd-units",
        help="write the systemd units (API, controller, SMS sender, ivr-auth.target) and an example environment file",
    )
    p_units.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory to write them into")
    p_units.add_argument("--user", default=DEFAULT_USER, help=f"the user the services run as (default {DEFAULT_USER})")
    p_units.add_argument("--group", help="their group (default: the same as --user)")
    p_units.add_argument(
        "--bin", metavar="PATH", help="absolute path of ivr-auth (default: the one running this command)"
    )
    p_units.add_argument(
        "--config-file",
        default=DEFAULT_CONFIG_FILE,
        metavar="PATH",
        help=f"the config file the services read (default {DEFAULT_CONFIG_FILE})",
    )
    p_units.add_argument(
        "--env-file",
        default=DEFAULT_ENV_FILE,
        metavar="PATH",
        help=f"the root-only file of secrets systemd reads for them (default {DEFAULT_ENV_FILE})",
    )
    p_units.add_argument("--force", action="store_true", help="replace files already there")
    p_units.set_defaults(func=_command)


async def _command(cfg: config.Config, args: argparse.Namespace) -> int:
    executable = args.bin or installed_executable()
    if executable is None:
        raise errors.IvrAuthError("cannot find the ivr-auth executable; name it with --bin")
    options = Options(
        executable=executable,
        user=args.user,
        group=args.group or args.user,
        config_file=args.config_file,
        env_file=args.env_file,
    )
    grace = cfg.dialer.shutdown_grace_seconds
    for path in write(args.out, render(options, grace, cfg.sms), force=args.force):
        print(path)
    print(
        f"TimeoutStopSec={stop_timeout(grace)}: dialer.shutdown_grace_seconds ({grace:g} s) "
        f"plus {SHUTDOWN_MARGIN_SECONDS} s; write the units again after raising the grace",
        file=sys.stderr,
    )
    print(
        f"ivr-auth-sms.service: TimeoutStopSec={sms_stop_timeout(cfg.sms)}, from sms.lease_seconds "
        f"({cfg.sms.lease_seconds:g} s); enable it only with sms.carriers set",
        file=sys.stderr,
    )
    return 0


def _check(options: Options) -> None:
    for flag, name in (("--user", options.user), ("--group", options.group)):
        if not _USER.fullmatch(name):
            raise errors.IvrAuthError(f"{flag}: {name!r} is not a user or group name systemd accepts")
    for flag, path in (
        ("--bin", options.executable),
        ("--config-file", options.config_file),
        ("--env-file", options.env_file),
    ):
        if not os.path.isabs(path):
            raise errors.IvrAuthError(f"{flag}: {path!r} is not an absolute path")
        if any(c.isspace() or not c.isprintable() for c in path):
            raise errors.IvrAuthError(f"{flag}: {path!r} holds a space or a control character")


def _escaped(path: str) -> str:
    # systemd expands %-specifiers in these settings.
    return path.replace("%", "%%")


def _template(name: str) -> str:
    return (data.SYSTEMD_DIR / name).read_text(encoding="utf-8")


def _fill(name: str, template: str, values: dict[str, str]) -> str:
    unknown = sorted({key for key in _PLACEHOLDER.findall(template) if key not in values})
    if unknown:
        raise errors.IvrAuthError(f"data/systemd/{name}: no value for {unknown}")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
