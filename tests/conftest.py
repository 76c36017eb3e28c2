"""Shared fixtures. The stack fixtures start a real Postgres and a real
Asterisk from the project's own code, on ports of their own so that a
developer's `ivr-auth-dev stack up` can run beside the suite; they never skip."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr_auth import config, connections, models
from ivr_auth import store as store_mod
from ivr_auth.ari import node as ari_node
from ivr_auth_devkit import stack

ROOT = Path(__file__).resolve().parents[1]
TEST_SETTINGS: dict[str, object] = {
    "base_dir": str(ROOT),
    "trunk": {"port": 5082, "caller_id": "0312345678"},
    "ari": {"app": "ivr-auth-test"},
    # The published numbers of the test stack: one served by the Stasis app,
    # one that its dialplan sends through the FastAGI example context.
    "inbound": {"numbers": ["050-1234-5678"], "agi_numbers": ["050-1234-0000"], "app": "ivr-auth-test-inbound"},
    "agi": {"listen": "127.0.0.1:45773"},
    # The tests' webhook receivers listen on loopback.
    "webhooks": {"allow_private_networks": True},
    "stack": {
        "run_dir": ".run/test-stack",
        "postgres_port": 55442,
        "sip_port": 5072,
        "ari_port": 58098,
        "rtp_start": 31000,
        "rtp_end": 31999,
    },
}


# Which Asterisk the suite runs against (docs/testing.md): by default the
# stack's own choice (Asterisk 22 from the tree `make setup` builds on Debian
# 12); `make test-e2e-host` sets IVR_AUTH_TEST_ASTERISK_ROOT=host for the
# host's Asterisk 16. IVR_AUTH_TEST_ARI_URL (with _USERNAME, _PASSWORD) points
# the suite at an Asterisk run elsewhere, configured from `ivr-auth
# asterisk-config` for the test ports above; tests that drive the stack's own
# Asterisk through its console then fail, saying so.
TEST_ENV = {
    "IVR_AUTH_TEST_ASTERISK_ROOT": ("stack", "asterisk_root"),
    "IVR_AUTH_TEST_ASTERISK_BINARY": ("stack", "asterisk_binary"),
    "IVR_AUTH_TEST_ARI_URL": ("ari", "url"),
    "IVR_AUTH_TEST_ARI_USERNAME": ("ari", "username"),
    "IVR_AUTH_TEST_ARI_PASSWORD": ("ari", "password"),
}


def _env_choices(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(section, key, value) for each IVR_AUTH_TEST_* variable set in ``environ``."""
    return [(section, key, environ[variable]) for variable, (section, key) in TEST_ENV.items() if environ.get(variable)]


def settings_from_env(environ: Mapping[str, str]) -> dict[str, object]:
    """TEST_SETTINGS with the IVR_AUTH_TEST_* choices of ``environ`` applied."""
    settings: dict[str, Any] = {
        key: dict(value) if isinstance(value, dict) else value for key, value in TEST_SETTINGS.items()
    }
    for section, key, value in _env_choices(environ):
        settings.setdefault(section, {})[key] = value
    return settings


def with_test_asterisk(cfg: config.Config, environ: Mapping[str, str]) -> config.Config:
    """``cfg`` (the demo's, say) on the Asterisk the IVR_AUTH_TEST_* choices name."""
    stack_keys = {key: value for section, key, value in _env_choices(environ) if section == "stack"}
    return config.with_overrides(cfg, stack=stack_keys) if stack_keys else cfg


@pytest.fixture(scope="session")
def stack_config() -> config.Config:
    return config.from_mapping(settings_from_env(os.environ))


def stack_for_session(cfg: config.Config) -> Iterator[connections.Connections]:
    """Bring a stack up for a test session; stop it at the end if this
    session started it (a developer's running stack is left alone)."""
    before = asyncio.run(stack.status(cfg))
    was_running = all(state.startswith("running") for state in before.values())
    endpoints = asyncio.run(stack.up(cfg))
    yield endpoints
    if not was_running:
        asyncio.run(stack.down(cfg))


@pytest.fixture(scope="session")
def local_stack(stack_config: config.Config) -> Iterator[connections.Connections]:
    """The embedded test stack, up for the whole session."""
    yield from stack_for_session(stack_config)


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def ari(
    local_stack: connections.Connections, http_session: aiohttp.ClientSession, request: pytest.FixtureRequest
) -> AsyncIterator[ari_node.AriNode]:
    """A connected ARI node with an app name of this test's own."""
    app = f"ivr-auth-test-{abs(hash(request.node.nodeid)) % 10**8}"
    node = ari_node.AriNode(http_session, local_stack.ari_url, local_stack.ari_username, local_stack.ari_password, app)
    await node.start()
    yield node
    await asyncio.wait_for(node.close(), 15)


@pytest.fixture
async def store(local_stack: connections.Connections) -> AsyncIterator[store_mod.Store]:
    """The real Postgres of the local stack, through the project's Store."""
    async with store_mod.Store.from_url(local_stack.database_url, local_stack.server_secret) as opened:
        yield opened


@pytest.fixture
async def tenant(store: store_mod.Store) -> tuple[models.Tenant, str]:
    """A fresh tenant (unique name) and its API key."""
    return await store.tenants.create(f"tenant-{uuid.uuid4().hex[:12]}")
