"""The embedded local stack: one Postgres cluster, one Asterisk instance and
a test SMSC, run from the project's run directory, started and stopped
without touching system services. ``ivr-auth-dev stack up|down|status`` and
the test fixtures both use it. Parts that the config points elsewhere
(``database_url``, ``ari.url``, ``sms.carriers``) are left alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ivr_auth import config, connections, errors
from ivr_auth.store import database, migrate
from ivr_auth_devkit.stack import asterisk, postgres, secrets, smsc

# What the service reads the connections from (config.py's environment overrides).
ENVIRONMENT = {
    "database_url": "IVR_AUTH_DATABASE_URL",
    "ari_url": "IVR_AUTH_ARI_URL",
    "ari_username": "IVR_AUTH_ARI_USERNAME",
    "ari_password": "IVR_AUTH_ARI_PASSWORD",
    "server_secret": "IVR_AUTH_SERVER_SECRET",
}


def completed(cfg: config.Config, found: connections.Connections) -> config.Config:
    """``cfg`` with the stack's connections written in, as the service wants
    them. Keep ``cfg`` itself for the stack: the completed one no longer
    says which parts are embedded. The stack's SMSC, when it runs, becomes
    the one SMS carrier of a config that names none."""
    completed_cfg = config.with_overrides(
        cfg,
        database_url=found.database_url,
        server_secret=found.server_secret,
        ari={"url": found.ari_url, "username": found.ari_username, "password": found.ari_password},
    )
    carrier = smsc_carrier(cfg)
    if carrier is not None:
        completed_cfg = config.with_overrides(completed_cfg, sms={"carriers": [carrier]})
    return completed_cfg


def smsc_carrier(cfg: config.Config) -> dict[str, Any] | None:
    """The ``sms.carriers`` entry of the stack's SMSC; None when the config
    names carriers of its own (the stack runs none then) or it is not running."""
    if not smsc.embedded(cfg):
        return None
    stack_secrets = secrets.load(cfg.run_dir)
    return None if stack_secrets is None else smsc.carrier(cfg, stack_secrets)


def environment(found: connections.Connections) -> dict[str, str]:
    """The environment variables that point the ``ivr-auth`` command at ``found``."""
    return {variable: str(getattr(found, field)) for field, variable in ENVIRONMENT.items()}


def endpoints(cfg: config.Config) -> connections.Connections:
    stack_secrets = None
    if cfg.embedded_database or cfg.embedded_asterisk:
        stack_secrets = secrets.load(cfg.run_dir)
        if stack_secrets is None:
            raise errors.StackError(
                f"the local stack has never been started in {cfg.run_dir}: run `ivr-auth-dev stack up` first "
                "(or set database_url and ari.url to services you run yourself)"
            )
    if cfg.database_url is not None:
        db = cfg.database_url
    else:
        assert stack_secrets is not None
        db = postgres.database_url(cfg.stack, stack_secrets.postgres_password)
    if cfg.ari.url is not None and cfg.ari.password is not None:
        ari_url, ari_password = cfg.ari.url.rstrip("/"), cfg.ari.password
    else:
        assert stack_secrets is not None
        ari_url, ari_password = asterisk.ari_url(cfg.stack), stack_secrets.ari_password
    if cfg.server_secret is not None:
        server_secret = cfg.server_secret
    elif stack_secrets is not None and cfg.embedded_database:
        server_secret = stack_secrets.server_secret
    else:
        raise errors.ConfigError(
            "server_secret: required when database_url is set (at least 32 characters; "
            "every process sharing the database needs the same one)"
        )
    return connections.Connections(db, ari_url, cfg.ari.username, ari_password, server_secret)


def _parts(cfg: config.Config) -> tuple[postgres.Cluster | None, asterisk.Instance | None]:
    stack_secrets = secrets.load_or_create(cfg.run_dir)
    cluster = (
        postgres.Cluster(cfg.stack, cfg.run_dir, stack_secrets.postgres_password) if cfg.embedded_database else None
    )
    instance = asterisk.Instance(cfg, cfg.run_dir, stack_secrets.ari_password) if cfg.embedded_asterisk else None
    return cluster, instance


async def up(cfg: config.Config) -> connections.Connections:
    """Start what is embedded, wait until it is really ready, and bring the
    database schema up to date. Idempotent."""
    cluster, instance = _parts(cfg)
    if cluster is not None:
        await cluster.start()
    if instance is not None:
        await instance.start()
    if smsc.embedded(cfg):
        await smsc.start(cfg, secrets.load_or_create(cfg.run_dir))
    found = endpoints(cfg)
    await migrate.migrate(database.Database(found.database_url))
    return found


async def down(cfg: config.Config) -> list[str]:
    """Stop what is embedded; return what was stopped."""
    cluster, instance = _parts(cfg)
    stopped = []
    if smsc.embedded(cfg) and await smsc.stop(cfg):
        stopped.append("smsc")
    if instance is not None and await instance.stop():
        stopped.append("asterisk")
    if cluster is not None and await cluster.stop():
        stopped.append("postgres")
    return stopped


async def status(cfg: config.Config) -> dict[str, str]:
    cluster, instance = _parts(cfg)
    out: dict[str, str] = {}
    if cluster is None:
        out["postgres"] = "external (database_url)"
    else:
        running = await cluster.is_running()
        out["postgres"] = (
            f"running on {cfg.stack.bind}:{cfg.stack.postgres_port}, data {cluster.data_dir}" if running else "stopped"
        )
    if instance is None:
        out["asterisk"] = f"external ({cfg.ari.url})"
    else:
        running = await instance.is_running()
        sip = f"{cfg.stack.bind}:{cfg.stack.sip_port}"
        version = ".".join(map(str, instance.version or ())) or "(version unknown)"
        which = f"Asterisk {version} from {instance.install.description}"
        out["asterisk"] = (
            f"running (pid {instance.pid()}), {which}, SIP {sip}, ARI {asterisk.ari_url(cfg.stack)}"
            if running
            else f"stopped ({which})"
        )
    out["smsc"] = await asyncio.to_thread(smsc.status, cfg)
    return out
