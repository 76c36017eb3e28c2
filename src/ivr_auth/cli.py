"""The ``ivr-auth`` command. Logging is configured here and nowhere else."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from ivr_auth import (
    asterisk_config,
    cli_operator,
    cli_tenant,
    config,
    connections,
    doctor,
    errors,
    limits,
    logs,
    phone,
    probe,
    runtime,
    systemd_units,
)
from ivr_auth import store as store_mod
from ivr_auth.ari import node as ari_node
from ivr_auth.store import database, migrate, tenants

logger = logging.getLogger(__name__)

T = TypeVar("T")
SECRET_KEYS = ("password", "server_secret")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        cfg = config.load(args.config)
        logging.basicConfig(
            level=getattr(logging, args.log_level.upper()),
            handlers=[logs.handler(args.log_format or cfg.logging.format, sys.stderr)],
        )
        result: int = asyncio.run(args.func(cfg, args))
        return result
    except errors.ConfigError as exc:
        print(f"ivr-auth: configuration error: {exc}", file=sys.stderr)
        return 2
    except errors.IvrAuthError as exc:
        print(f"ivr-auth: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr-auth", description="Phone-call identity verification on Asterisk.")
    parser.add_argument("-c", "--config", help=f"YAML config file (default: ${config.CONFIG_ENV} or ./ivr-auth.yaml)")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        help="json (a line per record), text, or auto: text on a terminal, json otherwise (default: logging.format)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_config = sub.add_parser("config", help="print the effective configuration (passwords masked)")
    p_config.set_defaults(func=cmd_config)

    p_call = sub.add_parser("call", help="place a test call: play a prompt, collect keys, report the outcome")
    p_call.add_argument("number", help="E.164 or national number (default country from the config)")
    p_call.add_argument("--digits", type=int, default=6, help="keys to collect (default 6)")
    p_call.add_argument("--ring-timeout", type=int, default=30, help="seconds to ring before giving up")
    p_call.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p_call.set_defaults(func=cmd_call)

    p_migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    p_migrate.set_defaults(func=cmd_migrate)

    p_tenant = sub.add_parser("tenant", help="manage tenants")
    tenant_sub = p_tenant.add_subparsers(dest="tenant_command", required=True)
    p_tcreate = tenant_sub.add_parser("create", help="create a tenant and print its first API key (once)")
    p_tcreate.add_argument("name")
    p_tcreate.add_argument("--caller-id", help="number presented on this tenant's calls (default: the trunk's)")
    p_tcreate.add_argument("--language", choices=config.LANGUAGES, help="default prompt language")
    p_tcreate.set_defaults(func=cmd_tenant_create)
    p_tset = tenant_sub.add_parser("set", help="change a tenant's settings")
    p_tset.add_argument("name")
    p_tset.add_argument("--caller-id", help="number presented on this tenant's calls ('' for the trunk's)")
    p_tset.add_argument(
        "--caller-id-pool",
        metavar="N,N,...",
        help="numbers presented in turn on this tenant's calls, comma-separated ('' for none); wins over --caller-id",
    )
    p_tset.add_argument("--language", choices=config.LANGUAGES, help="default prompt language")
    p_tset.add_argument(
        "--inbound-number",
        action="append",
        metavar="NUMBER",
        help="published number this tenant's users call for method 'inbound' (repeat for several; '' for none)",
    )
    p_tset.add_argument(
        "--voice-key",
        choices=("required", "off"),
        help="voice: the callee presses a key before the code is read out (default required)",
    )
    p_tset.add_argument(
        "--missed-call",
        choices=("on", "off"),
        help="inbound: reject a matched call unanswered, so the caller pays nothing",
    )
    p_tset.set_defaults(func=cmd_tenant_set)
    p_twh = tenant_sub.add_parser(
        "webhook-secret", help="give a tenant a new webhook signing secret and print it (once; the old one stops)"
    )
    p_twh.add_argument("name")
    p_twh.set_defaults(func=cmd_tenant_webhook_secret)
    cli_tenant.register(tenant_sub, with_store_value)
    p_tkey = tenant_sub.add_parser("add-key", help="add an API key to a tenant and print it (once)")
    p_tkey.add_argument("name")
    p_tkey.set_defaults(func=cmd_tenant_add_key)

    cli_operator.register(sub, with_store_value)
    systemd_units.register(sub)

    p_api = sub.add_parser("api", help="serve the HTTP API (foreground)")
    p_api.set_defaults(func=cmd_serve, api=True, dialer=False, sms=False)
    p_ctl = sub.add_parser("controller", help="run a controller: dial queued requests (foreground)")
    p_ctl.set_defaults(func=cmd_serve, api=False, dialer=True, sms=False)
    p_sms = sub.add_parser("sms", help="run the SMS sender: submit due SMS codes, record receipts (foreground)")
    p_sms.set_defaults(func=cmd_serve, api=False, dialer=False, sms=True)
    p_run = sub.add_parser(
        "run", help="the API and a controller in one process, and the SMS sender when sms.carriers is set (foreground)"
    )
    # None: the SMS sender too when there are carriers to send through.
    p_run.set_defaults(func=cmd_serve, api=True, dialer=True, sms=None)

    p_doctor = sub.add_parser("doctor", help="check the config and the live environment, one line per check")
    p_doctor.add_argument("--timeout", type=float, default=doctor.DEFAULT_TIMEOUT, help="seconds per check")
    p_doctor.add_argument(
        "--max-clock-skew",
        type=positive_seconds,
        default=doctor.MAX_CLOCK_SKEW,
        metavar="SECONDS",
        help=f"largest clock difference with Postgres that passes (default {doctor.MAX_CLOCK_SKEW:g})",
    )
    p_doctor.set_defaults(func=cmd_doctor)

    p_ast = sub.add_parser(
        "asterisk-config",
        help="write the files to #include from your own /etc/asterisk (ARI user, trunks, dialplan, modules)",
    )
    p_ast.add_argument("--out", required=True, help="directory to write them to (made if missing)")
    p_ast.add_argument("--force", action="store_true", help="overwrite files of the same names in --out")
    p_ast.add_argument(
        "--asterisk-version",
        type=asterisk_version,
        default=asterisk_config.DEFAULT_VERSION,
        metavar="X.Y",
        help="the Asterisk the files are for, e.g. 20.13 or 22.10 (default 22); it decides the modules to load",
    )
    p_ast.set_defaults(func=cmd_asterisk_config)
    return parser


async def cmd_migrate(cfg: config.Config, args: argparse.Namespace) -> int:
    endpoints = connections.from_config(cfg)
    applied = await migrate.migrate(database.Database(endpoints.database_url))
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
    print(f"applied: {names}" if applied else f"schema up to date (version {migrate.latest_version()})")
    return 0


def _caller_id_arg(cfg: config.Config, given: str | None) -> str | None:
    if not given:
        return None
    try:
        return phone.caller_id_e164(given, cfg.default_country)
    except phone.InvalidPhone as exc:
        raise errors.IvrAuthError(f"--caller-id: {exc}") from exc


def caller_id_pool_arg(cfg: config.Config, given: str | None) -> tuple[str, ...] | None:
    """``--caller-id-pool``: None when not given, () for '', else the numbers in E.164, each once."""
    if given is None:
        return None
    pool: dict[str, None] = {}
    for number in (n.strip() for n in given.split(",")):
        if not number:
            continue
        try:
            pool[phone.caller_id_e164(number, cfg.default_country)] = None
        except phone.InvalidPhone as exc:
            raise errors.IvrAuthError(f"--caller-id-pool: {exc}") from exc
    return tuple(pool)


async def cmd_tenant_create(cfg: config.Config, args: argparse.Namespace) -> int:
    caller_id = _caller_id_arg(cfg, args.caller_id)

    async def create(store: store_mod.Store) -> int:
        tenant, key = await store.tenants.create(args.name, caller_id=caller_id, default_language=args.language)
        print(f"tenant  {tenant.name} ({tenant.id})", file=sys.stderr)
        secret = await store.tenants.webhook_secret(tenant.id)
        print(f"webhook secret (shown once; `tenant webhook-secret` makes a new one): {secret}", file=sys.stderr)
        print("api key (shown once; store it now):", file=sys.stderr)
        print(key)
        return 0

    return await with_store_value(cfg, create)


async def cmd_tenant_set(cfg: config.Config, args: argparse.Namespace) -> int:
    caller_id = _caller_id_arg(cfg, args.caller_id)
    numbers: tuple[str, ...] | None = None
    if args.inbound_number is not None:
        numbers = ()
        for given in (n for n in args.inbound_number if n):
            try:
                numbers += (phone.normalize(given, cfg.default_country),)
            except phone.InvalidPhone as exc:
                raise errors.IvrAuthError(f"--inbound-number: {exc}".replace(": phone: ", ": ")) from exc
    changes = tenants.TenantChanges(
        caller_id=caller_id,
        clear_caller_id=args.caller_id == "",
        default_language=args.language,
        voice_require_key=None if args.voice_key is None else args.voice_key == "required",
        inbound_numbers=numbers,
        missed_call=None if args.missed_call is None else args.missed_call == "on",
        caller_id_pool=caller_id_pool_arg(cfg, args.caller_id_pool),
    )

    async def update(store: store_mod.Store) -> int:
        tenant = await store.tenants.update(args.name, changes)
        print(f"tenant          {tenant.name} ({tenant.id})")
        print("caller id       " + (tenant.caller_id or "(the trunk's)"))
        print(
            "caller id pool  "
            + (", ".join(tenant.caller_id_pool) + " (in turn)" if tenant.caller_id_pool else "(none)")
        )
        print(f"language        {tenant.default_language or '(by destination)'}")
        print(f"voice key       {'required' if tenant.voice_require_key else 'off'}")
        print("inbound numbers " + (", ".join(tenant.inbound_numbers) or "(the config's inbound.numbers)"))
        print(f"missed call     {'on' if tenant.missed_call else 'off'}")
        return 0

    return await with_store_value(cfg, update)


async def cmd_tenant_webhook_secret(cfg: config.Config, args: argparse.Namespace) -> int:
    async def rotate(store: store_mod.Store) -> int:
        secret = await store.tenants.rotate_webhook_secret(args.name)
        print("webhook secret (shown once; receivers verify IVR-Auth-Signature with it):", file=sys.stderr)
        print(secret)
        return 0

    return await with_store_value(cfg, rotate)


async def cmd_tenant_add_key(cfg: config.Config, args: argparse.Namespace) -> int:
    async def add(store: store_mod.Store) -> int:
        key = await store.tenants.add_api_key(args.name)
        print("api key (shown once; store it now):", file=sys.stderr)
        print(key)
        return 0

    return await with_store_value(cfg, add)


async def cmd_serve(cfg: config.Config, args: argparse.Namespace) -> int:
    sms = bool(cfg.sms.carriers) if args.sms is None else args.sms
    if sms and not cfg.sms.carriers:
        raise errors.ConfigError(
            "sms.carriers is empty: the SMS sender has no carrier to send through (docs/configuration.md, sms)"
        )
    # The API reports Asterisk on /readyz; the SMS sender alone never reaches it.
    endpoints = connections.from_config(cfg, asterisk=args.api or args.dialer)
    await migrate.migrate(database.Database(endpoints.database_url))
    await runtime.serve(cfg, endpoints, api=args.api, dialer=args.dialer, sms=sms)
    return 0


async def cmd_config(cfg: config.Config, args: argparse.Namespace) -> int:
    print(json.dumps(_masked(cfg.model_dump()), indent=2, ensure_ascii=False))
    return 0


async def cmd_call(cfg: config.Config, args: argparse.Namespace) -> int:
    try:
        number = phone.normalize(args.number, cfg.default_country)
        # The operator's test call goes nowhere a tenant's could not by default.
        limits.check_destination(limits.Policy.for_config(cfg), number)
    except (phone.InvalidPhone, limits.Refused) as exc:
        raise errors.IvrAuthError(str(exc)) from exc
    endpoints = connections.from_config(cfg)
    options = probe.ProbeOptions(max_digits=args.digits, ring_timeout=args.ring_timeout)
    async with aiohttp.ClientSession() as session:
        node = _node(session, cfg, endpoints)
        try:
            await node.start()
            result = await probe.call(node, cfg, number, options)
        finally:
            await node.close()
    _report([("test call", result)], as_json=args.json)
    return 0


async def cmd_doctor(cfg: config.Config, args: argparse.Namespace) -> int:
    results = await doctor.run(cfg, timeout=args.timeout, max_clock_skew=args.max_clock_skew)
    for result in results:
        print(result.line())
    return 1 if doctor.failed(results) else 0


async def cmd_asterisk_config(cfg: config.Config, args: argparse.Namespace) -> int:
    if not cfg.ari.password:
        raise errors.ConfigError(
            "ari.password: required to write the ARI user (set it, or IVR_AUTH_ARI_PASSWORD); "
            "ivr-auth logs in to your Asterisk with it"
        )
    files = asterisk_config.generate(cfg, cfg.ari.password, args.asterisk_version)
    out = Path(args.out)
    asterisk_config.write(files, out, force=args.force)
    for f in files:
        print(f"{out / f.name}{' (0600)' if f.secret else ''}: in /etc/asterisk/{f.into} add  {f.include_line}")
    print(f"{out / asterisk_config.INSTALL_NAME}: how to install them; then run `ivr-auth doctor`")
    return 0


def asterisk_version(text: str) -> tuple[int, ...]:
    try:
        return asterisk_config.parse_version(text)
    except errors.ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def positive_seconds(text: str) -> float:
    """``doctor --max-clock-skew``: a limit of zero or less is one no clock can meet."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


async def with_store_value(cfg: config.Config, action: Callable[[store_mod.Store], Awaitable[T]]) -> T:
    endpoints = connections.from_config(cfg)
    async with store_mod.Store.from_url(endpoints.database_url, endpoints.server_secret, max_size=2) as store:
        return await action(store)


def _node(session: aiohttp.ClientSession, cfg: config.Config, endpoints: connections.Connections) -> ari_node.AriNode:
    # Every process gets an app name of its own: a second websocket for the
    # same name would take the first one's calls away.
    app = f"{cfg.ari.app}-{socket.gethostname()}-{os.getpid()}"
    return ari_node.AriNode(session, endpoints.ari_url, endpoints.ari_username, endpoints.ari_password, app)


def _report(outcomes: list[tuple[str, probe.ProbeResult]], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"call": label, **result.as_dict()} for label, result in outcomes], indent=2))
        return
    for label, result in outcomes:
        print(f"\n{label}")
        print(f"  number     {phone.mask(result.number)}")
        print(f"  outcome    {result.outcome.value}")
        if result.setup_seconds is not None:
            print(f"  answered   after {result.setup_seconds:.2f}s")
            print(f"  keys heard {result.digits or '(none)'} (entry ended: {result.entry_ended})")
        print(
            f"  hangup     cause {result.cause} ({result.cause_txt})"
            + (" by callee" if result.hung_up_by_callee else "")
        )
        print(f"  duration   {result.duration_seconds:.2f}s")


def _masked(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _masked(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    if key in SECRET_KEYS and value:
        return "********"
    if key == "database_url" and isinstance(value, str):
        return mask_url(value)
    return value


def mask_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:********@{host}"


if __name__ == "__main__":
    raise SystemExit(main())
