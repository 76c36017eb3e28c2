"""A project-local Postgres cluster in the run directory.

Postgres refuses to run as root, so when we are root the cluster belongs to
the ``postgres`` system user and every server command runs as that user. It
listens on TCP only (no Unix socket), on the configured address and port.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from ivr_auth import config, errors, ports
from ivr_auth_devkit.stack import proc

logger = logging.getLogger(__name__)

SUPERUSER = "ivr_auth"
DATABASE = "ivr_auth"
PG_USER = "postgres"


def find_bin_dir(cfg: config.StackConfig) -> Path:
    if cfg.postgres_bin_dir:
        path = Path(cfg.postgres_bin_dir)
        if not (path / "pg_ctl").exists():
            raise errors.NotInstalled(f"stack.postgres_bin_dir: no pg_ctl in {path}")
        return path
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise errors.NotInstalled(
        "PostgreSQL server programs are not installed (no pg_ctl found); run `make setup`, "
        "or set stack.postgres_bin_dir, or point database_url at an existing database"
    )


def database_url(cfg: config.StackConfig, password: str, database: str = DATABASE) -> str:
    return f"postgresql://{SUPERUSER}:{quote(password, safe='')}@{cfg.bind}:{cfg.postgres_port}/{database}"


@dataclass
class Cluster:
    cfg: config.StackConfig
    run_dir: Path
    password: str

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    @property
    def home(self) -> Path:
        """Where the cluster lives: the run directory, unless the postgres user
        cannot reach it (a checkout under /root, say); then a directory of its
        own under /var/tmp, named after the run directory."""
        inside = self.run_dir / "postgres"
        if not self.as_root or _reachable_by(inside.parent, PG_USER):
            return inside
        digest = hashlib.sha256(str(self.run_dir).encode()).hexdigest()[:12]
        return Path("/var/tmp") / f"ivr-auth-{digest}" / "postgres"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def url(self) -> str:
        return database_url(self.cfg, self.password)

    async def _run(self, *argv: str, timeout: float = 60.0) -> proc.Result:
        bin_dir = find_bin_dir(self.cfg)
        return await proc.run([str(bin_dir / argv[0]), *argv[1:]], timeout=timeout, user=PG_USER)

    async def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        result = await self._run("pg_ctl", "status", "-D", str(self.data_dir))
        return result.returncode == 0

    def _prepare_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            os.chown(self.home, *proc.user_ids(PG_USER))

    async def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._prepare_home()
        pwfile = self.home / "initdb.pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.password + "\n")
        if self.as_root:
            os.chown(pwfile, *proc.user_ids(PG_USER))
        try:
            result = await self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-locale",
                timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise errors.StackError(f"initdb failed for {self.data_dir}:\n{result.output}")
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write("\ninclude_if_exists = 'ivr-auth.conf'\n")

    def _write_settings(self) -> None:
        settings = (
            "# Written by ivr-auth on every start from ivr-auth.yaml (stack section).\n"
            f"listen_addresses = '{self.cfg.bind}'\n"
            f"port = {self.cfg.postgres_port}\n"
            "unix_socket_directories = ''\n"
            "max_connections = 200\n"
            "logging_collector = off\n"
            "log_min_messages = warning\n"
        )
        # The bench counts statements per call with pg_stat_statements: a
        # hash per statement, loaded where the server has it (contrib is in
        # Debian's server package); CREATE EXTENSION is left to who reads it.
        if (find_bin_dir(self.cfg).parent / "lib" / "pg_stat_statements.so").exists():
            settings += "shared_preload_libraries = 'pg_stat_statements'\n"
        path = self.data_dir / "ivr-auth.conf"
        path.write_text(settings)
        if self.as_root:
            os.chown(path, *proc.user_ids(PG_USER))

    async def start(self) -> None:
        if await self.is_running():
            await self.wait_ready(self.cfg.start_timeout)
            return
        ports.require_free(self.cfg.bind, self.cfg.postgres_port, "tcp", "stack.postgres_port", "Postgres")
        await self.init()
        self._write_settings()
        result = await self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(self.cfg.start_timeout)),
            timeout=self.cfg.start_timeout + 10,
        )
        if result.returncode != 0:
            raise errors.StackError(
                f"Postgres did not start (pg_ctl said: {result.output or 'nothing'}); "
                f"its log is {self.log_file}:\n{proc.tail(self.log_file)}"
            )
        await self.wait_ready(self.cfg.start_timeout)
        logger.info("postgres up on %s:%s", self.cfg.bind, self.cfg.postgres_port)

    async def wait_ready(self, timeout: float) -> None:
        """Ready means a query answers; then the project database exists."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    database_url(self.cfg, self.password, "postgres"), autocommit=True, connect_timeout=3
                )
            except psycopg.OperationalError as exc:
                last = exc
                await asyncio.sleep(0.2)
                continue
            async with conn:
                await conn.execute("SELECT 1")
                cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if await cur.fetchone() is None:
                    await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
            return
        raise errors.StackError(
            f"Postgres on {self.cfg.bind}:{self.cfg.postgres_port} did not answer a query within "
            f"{timeout:.0f}s ({last}); its log is {self.log_file}"
        )

    async def stop(self) -> bool:
        if not await self.is_running():
            return False
        result = await self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", timeout=90)
        if result.returncode != 0:
            raise errors.StackError(f"pg_ctl stop failed: {result.output}")
        return True


def _reachable_by(path: Path, user: str) -> bool:
    """Can ``user`` walk down to ``path``? (Every ancestor searchable by others.)"""
    try:
        uid, _gid = proc.user_ids(user)
    except errors.NotInstalled:
        return True  # reported when the cluster is started
    probe = path
    while not probe.exists():
        probe = probe.parent
    for part in (probe, *probe.parents):
        st = part.stat()
        if st.st_uid == uid:
            continue
        if not st.st_mode & 0o001:
            return False
    return True
