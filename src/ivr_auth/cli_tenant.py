"""``ivr-auth tenant limits|keys|revoke-key|log``: a tenant's abuse limits,
its API keys, and the operator's log of what was refused or alarmed."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any

import phonenumbers

from ivr_auth import config, errors, limits, models, phone
from ivr_auth import store as store_mod
from ivr_auth.store import controls

WithStore = Callable[[config.Config, Callable[[store_mod.Store], Awaitable[int]]], Awaitable[int]]


def register(tenant_sub: Any, with_store: WithStore) -> None:
    p_limits = tenant_sub.add_parser(
        "limits", help="show or change a tenant's limits (numbers; 'default' goes back to the config's)"
    )
    p_limits.add_argument("name")
    p_limits.add_argument(
        "--allow-country", action="append", metavar="CC", help="only call these countries (repeat; '' for any)"
    )
    p_limits.add_argument(
        "--allow-prefix", action="append", metavar="+PREFIX", help="only call numbers with these E.164 prefixes"
    )
    p_limits.add_argument(
        "--allow-line-type",
        action="append",
        metavar="TYPE",
        help=f"only call these line types (repeat; 'default' for the config's): {', '.join(phone.LINE_TYPES)}",
    )
    for key in controls.INT_LIMITS:
        p_limits.add_argument(f"--{key.replace('_', '-')}", metavar="N")
    p_limits.set_defaults(func=_run(with_store, _limits))

    p_keys = tenant_sub.add_parser("keys", help="list a tenant's API keys (prefixes only)")
    p_keys.add_argument("name")
    p_keys.set_defaults(func=_run(with_store, _keys))

    p_revoke = tenant_sub.add_parser("revoke-key", help="revoke one of a tenant's API keys by its prefix")
    p_revoke.add_argument("name")
    p_revoke.add_argument("prefix", help="the 8 characters after 'ivra_' in the key")
    p_revoke.set_defaults(func=_run(with_store, _revoke))

    p_log = tenant_sub.add_parser("log", help="refused requests, alarms and purges concerning a tenant, newest first")
    p_log.add_argument("name")
    p_log.add_argument("--limit", type=int, default=50)
    p_log.set_defaults(func=_run(with_store, _log))


Command = Callable[[config.Config, argparse.Namespace, store_mod.Store], Awaitable[int]]


def _run(with_store: WithStore, command: Command) -> Callable[[config.Config, argparse.Namespace], Awaitable[int]]:
    async def run(cfg: config.Config, args: argparse.Namespace) -> int:
        return await with_store(cfg, lambda store: command(cfg, args, store))

    return run


def limit_changes(args: argparse.Namespace) -> controls.LimitChanges:
    values: dict[str, Any] = {}
    for key in controls.INT_LIMITS:
        given = getattr(args, key)
        if given is None:
            continue
        if given == "default":
            values[key] = controls.DEFAULT
        elif given.isdigit():
            values[key] = int(given)
        else:
            raise errors.IvrAuthError(f"--{key.replace('_', '-')}: expected a whole number or 'default'")
    if args.allow_country is not None:
        countries = tuple(c.strip().upper() for c in args.allow_country if c.strip())
        for country in countries:
            if country not in phonenumbers.SUPPORTED_REGIONS:
                raise errors.IvrAuthError(f"--allow-country: {country!r} is not an ISO 3166 region code such as JP")
        values["allowed_countries"] = countries
    if args.allow_prefix is not None:
        prefixes = tuple(p.strip() for p in args.allow_prefix if p.strip())
        for prefix in prefixes:
            if not (prefix.startswith("+") and prefix[1:].isdigit()):
                raise errors.IvrAuthError(f"--allow-prefix: {prefix!r} is not an E.164 prefix such as +8190")
        values["allowed_prefixes"] = prefixes
    if args.allow_line_type is not None:
        values["allowed_line_types"] = _line_types(args.allow_line_type)
    return controls.LimitChanges(**values)


def _line_types(given: list[str]) -> tuple[str, ...]:
    """``--allow-line-type``: the names, each once; () for 'default'."""
    names = tuple(dict.fromkeys(n.strip() for n in given if n.strip()))
    if not names:
        raise errors.IvrAuthError("--allow-line-type: name at least one line type, or 'default' for the config's")
    if "default" in names:
        if len(names) > 1:
            raise errors.IvrAuthError("--allow-line-type: 'default' stands alone (it means the config's line types)")
        return ()
    for name in names:
        if name not in phone.LINE_TYPES:
            raise errors.IvrAuthError(f"--allow-line-type: {name!r} is not one of {', '.join(phone.LINE_TYPES)}")
    return names


async def _limits(cfg: config.Config, args: argparse.Namespace, store: store_mod.Store) -> int:
    changes = limit_changes(args)
    tenant = await store.controls.set_limits(args.name, changes) if changes != controls.LimitChanges() else None
    tenant = tenant or await store.tenants.by_name(args.name)
    _print_limits(cfg, tenant)
    return 0


def _print_limits(cfg: config.Config, tenant: models.Tenant) -> None:
    policy = limits.Policy.for_tenant(cfg, tenant)
    print(f"tenant                          {tenant.name} ({tenant.id})")
    print("allowed countries               " + (", ".join(policy.allowed_countries) or "any"))
    print("allowed prefixes                " + (", ".join(policy.allowed_prefixes) or "any"))
    print(
        "allowed line types              "
        + ", ".join(policy.allowed_line_types)
        + ("" if tenant.allowed_line_types is not None else "  (default)")
    )
    print("never called (config)           " + (", ".join(policy.denied_prefixes) or "-"))
    for key in controls.INT_LIMITS:
        own = getattr(tenant, key)
        shown = getattr(policy, key)
        print(f"{key.replace('_', ' '):32}{shown}{'' if own is not None else '  (default)'}")


async def _keys(cfg: config.Config, args: argparse.Namespace, store: store_mod.Store) -> int:
    for key in await store.controls.api_keys(args.name):
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        print(f"ivra_{key.prefix}_...  created {key.created_at:%Y-%m-%d %H:%M}  {state}")
    return 0


async def _revoke(cfg: config.Config, args: argparse.Namespace, store: store_mod.Store) -> int:
    await store.controls.revoke_api_key(args.name, args.prefix)
    print(f"revoked ivra_{args.prefix}_...")
    return 0


async def _log(cfg: config.Config, args: argparse.Namespace, store: store_mod.Store) -> int:
    tenant = await store.tenants.by_name(args.name)
    for event in await store.controls.events(tenant.id, limit=args.limit):
        print(f"{event.at:%Y-%m-%d %H:%M:%S}  {event.type:16} {json.dumps(event.detail, ensure_ascii=False)}")
    return 0
