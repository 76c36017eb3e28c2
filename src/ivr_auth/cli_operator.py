"""``ivr-auth operator add|list|revoke``: the people who may open the
dashboard. Tokens are shown once and kept as keyed hashes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ivr_auth import config
from ivr_auth import store as store_mod

WithStore = Callable[[config.Config, Callable[[store_mod.Store], Awaitable[int]]], Awaitable[int]]


def register(sub: Any, with_store: WithStore) -> None:
    p_operator = sub.add_parser("operator", help="the operators who may open /dashboard")
    operator_sub = p_operator.add_subparsers(dest="operator_command", required=True)

    p_add = operator_sub.add_parser("add", help="add an operator and print their dashboard token (once)")
    p_add.add_argument("name")
    p_add.add_argument(
        "--new-token", action="store_true", help="give an existing operator a new token (ends their logins)"
    )
    p_add.set_defaults(func=_run(with_store, _add))

    p_list = operator_sub.add_parser("list", help="list operators (token prefixes only)")
    p_list.set_defaults(func=_run(with_store, _list))

    p_revoke = operator_sub.add_parser("revoke", help="revoke an operator's token (ends their logins)")
    p_revoke.add_argument("name")
    p_revoke.set_defaults(func=_run(with_store, _revoke))


Command = Callable[[argparse.Namespace, store_mod.Store], Awaitable[int]]


def _run(with_store: WithStore, command: Command) -> Callable[[config.Config, argparse.Namespace], Awaitable[int]]:
    async def run(cfg: config.Config, args: argparse.Namespace) -> int:
        return await with_store(cfg, lambda store: command(args, store))

    return run


async def _add(args: argparse.Namespace, store: store_mod.Store) -> int:
    token = await store.operators.add(args.name, replace=args.new_token)
    print(f"operator {args.name}: dashboard token (shown once; log in at /dashboard):", file=sys.stderr)
    print(token)
    return 0


async def _list(args: argparse.Namespace, store: store_mod.Store) -> int:
    for operator in await store.operators.all():
        state = f"revoked {operator.revoked_at:%Y-%m-%d %H:%M}" if operator.revoked_at else "active"
        print(f"{operator.name:<24} ivrop_{operator.prefix}_…  added {operator.created_at:%Y-%m-%d %H:%M}  {state}")
    return 0


async def _revoke(args: argparse.Namespace, store: store_mod.Store) -> int:
    await store.operators.revoke(args.name)
    print(f"operator {args.name}: token revoked", file=sys.stderr)
    return 0
