"""``ivr-auth-dev``: the service's command on the development kit's embedded
stack. Its own commands bring the stack up and down, run the service on it
and demonstrate it; any other command is the service's own ``ivr-auth``
command, run with the stack's connections in its environment (the
variables a production config would set), so that the service never needs
to know the stack exists:

    ivr-auth-dev stack up                  # Postgres and Asterisk from .run/stack
    ivr-auth-dev tenant create shop        # ivr-auth tenant create, on that stack
    eval "$(ivr-auth-dev env)"             # or point a shell's ivr-auth at it
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys
from collections.abc import Sequence

from ivr_auth import cli as service_cli
from ivr_auth import config, errors, logs, runtime
from ivr_auth_devkit import demo, stack

logger = logging.getLogger(__name__)

OWN_COMMANDS = ("stack", "run", "demo", "env")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if not rest or rest[0].startswith("-"):
        parser.error("a command is needed: " + ", ".join(OWN_COMMANDS) + ", or one of `ivr-auth`'s")
    command, *tail = rest
    try:
        cfg = config.load(args.config)
        if command not in OWN_COMMANDS:
            # The service's command, with the stack's connections in its environment.
            os.environ.update(stack.environment(stack.endpoints(cfg)))
            return service_cli.main([*_global_args(args), command, *tail])
        logging.basicConfig(
            level=getattr(logging, args.log_level.upper()),
            handlers=[logs.handler(args.log_format or cfg.logging.format, sys.stderr)],
        )
        return asyncio.run(_own(cfg, command, tail))
    except errors.ConfigError as exc:
        print(f"ivr-auth-dev: configuration error: {exc}", file=sys.stderr)
        return 2
    except errors.IvrAuthError as exc:
        print(f"ivr-auth-dev: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ivr-auth-dev",
        description="ivr-auth on the development kit's embedded Postgres and Asterisk. "
        "Commands other than these are the service's own (`ivr-auth --help`), run against the embedded stack.",
    )
    parser.add_argument("-c", "--config", help=f"YAML config file (default: ${config.CONFIG_ENV} or ./ivr-auth.yaml)")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=logs.FORMATS)
    parser.epilog = (
        "commands: stack up|down|status; run (the stack, the API and a controller); demo; "
        "env (the variables that point `ivr-auth` at the stack); or any `ivr-auth` command"
    )
    return parser


def _global_args(args: argparse.Namespace) -> list[str]:
    out = ["--log-level", args.log_level]
    if args.config:
        out += ["--config", args.config]
    if args.log_format:
        out += ["--log-format", args.log_format]
    return out


async def _own(cfg: config.Config, command: str, tail: list[str]) -> int:
    if command == "stack":
        return await _stack(cfg, tail)
    if tail:
        raise errors.IvrAuthError(f"{command}: unexpected arguments {' '.join(tail)!r}")
    if command == "env":
        for variable, value in stack.environment(stack.endpoints(cfg)).items():
            print(f"export {variable}={shlex.quote(value)}")
        return 0
    if command == "demo":
        return await demo.run(cfg)
    print("bringing up the local stack (Postgres + Asterisk + test SMSC)...", file=sys.stderr, flush=True)
    found = await stack.up(cfg)
    served = stack.completed(cfg, found)
    await runtime.serve(served, found, api=True, dialer=True, sms=bool(served.sms.carriers))
    return 0


async def _stack(cfg: config.Config, tail: list[str]) -> int:
    action = tail[0] if len(tail) == 1 else None
    if action == "up":
        found = await stack.up(cfg)
        print(f"postgres  {service_cli.mask_url(found.database_url)}")
        print(f"ari       {found.ari_url} (user {found.ari_username})")
        carrier = stack.smsc_carrier(cfg)
        if carrier is not None:
            print(f"smsc      smpp://{carrier['host']}:{carrier['port']} (system_id {carrier['system_id']})")
        print(f"run dir   {cfg.run_dir}")
    elif action == "down":
        stopped = await stack.down(cfg)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    elif action == "status":
        for name, state in (await stack.status(cfg)).items():
            print(f"{name:9} {state}")
    else:
        raise errors.IvrAuthError("stack: expected up, down or status")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
