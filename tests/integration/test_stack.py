"""The embedded stack itself: ready means ready, it is idempotent, and bad
setup is named plainly."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import aiohttp
import psycopg
import pytest

from ivr_auth import config, connections, errors
from ivr_auth.ari import client as ari_client
from ivr_auth_devkit import stack
from ivr_auth_devkit.stack import install, postgres

pytestmark = pytest.mark.integration


async def test_postgres_answers_a_query(local_stack: connections.Connections) -> None:
    async with await psycopg.AsyncConnection.connect(local_stack.database_url) as conn:
        cur = await conn.execute("SELECT current_database(), current_setting('server_version_num')::int")
        row = await cur.fetchone()
    assert row is not None
    assert row[0] == "ivr_auth"
    assert row[1] >= 130000


async def test_asterisk_answers_ari(local_stack: connections.Connections, http_session: aiohttp.ClientSession) -> None:
    client = ari_client.AriClient(http_session, local_stack.ari_url, local_stack.ari_username, local_stack.ari_password)
    info = await client.asterisk_info()
    assert "version" in info["system"]


async def test_wrong_ari_password_is_named(
    local_stack: connections.Connections, http_session: aiohttp.ClientSession
) -> None:
    client = ari_client.AriClient(http_session, local_stack.ari_url, local_stack.ari_username, "wrong")
    with pytest.raises(errors.AriError, match="credentials") as info:
        await client.asterisk_info()
    assert info.value.status == 401


async def test_up_is_idempotent_and_status_reports_running(
    local_stack: connections.Connections, stack_config: config.Config
) -> None:
    again = await stack.up(stack_config)
    assert again == local_stack
    states = await stack.status(stack_config)
    assert states["postgres"].startswith("running")
    assert states["asterisk"].startswith("running")


async def test_rendered_config_keeps_passwords_private(
    local_stack: connections.Connections, stack_config: config.Config
) -> None:
    etc = stack_config.run_dir / "asterisk" / "etc"
    # The ARI user is in the include file an operator installs too; no other file has the password.
    holding = [p for p in sorted(etc.iterdir()) if p.is_file() and local_stack.ari_password in p.read_text()]
    assert [p.name for p in holding] == ["ivr-auth-ari.conf"]
    assert all(p.stat().st_mode & 0o077 == 0 for p in holding)
    assert (stack_config.run_dir / "secrets.json").stat().st_mode & 0o077 == 0


def _busy_port(kind: socket.SocketKind) -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        sock.listen()
    return sock, sock.getsockname()[1]


def _isolated(tmp_path: Path, **stack_keys: object) -> config.Config:
    keys: dict[str, object] = {
        "run_dir": str(tmp_path / "run"),
        "postgres_port": 55452,
        "sip_port": 5074,
        "ari_port": 58108,
        "rtp_start": 32000,
        "rtp_end": 32099,
    }
    keys.update(stack_keys)
    return config.from_mapping({"base_dir": str(tmp_path), "stack": keys})


async def test_postgres_port_in_use_is_named(tmp_path: Path) -> None:
    sock, port = _busy_port(socket.SOCK_STREAM)
    with sock:
        cfg = _isolated(tmp_path, postgres_port=port)
        with pytest.raises(errors.PortInUse) as info:
            await stack.up(cfg)
    message = str(info.value)
    assert str(port) in message
    assert "stack.postgres_port" in message
    assert "IVR_AUTH_STACK_POSTGRES_PORT" in message
    assert f"(pid {os.getpid()})" in message  # the holder of the port, read from /proc
    assert not (cfg.run_dir / "postgres" / "data").exists()


async def test_sip_port_in_use_is_named(tmp_path: Path, local_stack: connections.Connections) -> None:
    sock, port = _busy_port(socket.SOCK_DGRAM)
    with sock:
        cfg = config.with_overrides(_isolated(tmp_path, sip_port=port), database_url=local_stack.database_url)
        with pytest.raises(errors.PortInUse, match=rf"UDP port {port}.*stack\.sip_port"):
            await stack.up(cfg)


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("host", r"Asterisk is not installed.*make setup"),
        ("auto", r"there is no Asterisk at /nonexistent/asterisk in .*make setup"),
        ("/nonexistent-tree", r"there is no Asterisk at /usr/sbin/asterisk in /nonexistent-tree.*make setup"),
    ],
)
async def test_missing_asterisk_is_named(
    tmp_path: Path, local_stack: connections.Connections, root: str, message: str
) -> None:
    binary = "asterisk" if root.startswith("/") else "/nonexistent/asterisk"
    if root == "auto" and install.resolve(config.StackConfig()).root is None:
        message = r"Asterisk is not installed.*make setup"
    cfg = config.with_overrides(
        _isolated(tmp_path, asterisk_root=root, asterisk_binary=binary), database_url=local_stack.database_url
    )
    with pytest.raises(errors.NotInstalled, match=message):
        await stack.up(cfg)


async def test_stack_runs_the_asterisk_it_was_asked_for(
    local_stack: connections.Connections, stack_config: config.Config, http_session: aiohttp.ClientSession
) -> None:
    """The version ARI reports is the one the stack's installation says it
    has: the tree's Asterisk 22 by default where make setup built it."""
    chosen = install.resolve(stack_config.stack)
    expected = chosen.version()
    assert expected is not None
    client = ari_client.AriClient(http_session, local_stack.ari_url, local_stack.ari_username, local_stack.ari_password)
    reported = install.parse_version("Asterisk " + (await client.asterisk_info())["system"]["version"])
    assert reported == expected
    if os.environ.get("IVR_AUTH_STACK_ASTERISK_ROOT", "auto") == "auto" and chosen.root is not None:
        assert expected >= (22, 0, 0)


def test_a_tree_sees_a_host_directory_made_anew(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A run directory removed and made again (``make clean``) is mounted
    again, not left showing the deleted one inside the tree."""
    chosen = install.resolve(config.StackConfig())
    if chosen.root is None:
        pytest.fail("no Asterisk tree here: make setup builds it (this test is about the tree)")
    host = Path("/var/tmp") / f"ivr-auth-expose-{os.getpid()}"
    host.mkdir()
    try:
        (host / "first").write_text("1")
        chosen.expose([host])
        assert (chosen.outside(host) / "first").read_text() == "1"
        (host / "first").unlink()
        host.rmdir()
        host.mkdir()
        (host / "second").write_text("2")
        chosen.expose([host])
        assert (chosen.outside(host) / "second").read_text() == "2"
    finally:
        chosen.release(host)
        assert not install.mounted(chosen.outside(host))
        chosen.outside(host).rmdir()
        for leftover in (host / "second", host):
            leftover.unlink() if leftover.is_file() else leftover.rmdir()


async def test_endpoints_before_first_start_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(errors.StackError, match="ivr-auth-dev stack up"):
        stack.endpoints(_isolated(tmp_path))


async def test_unreachable_database_is_named(tmp_path: Path) -> None:
    cfg = _isolated(tmp_path)
    cluster = postgres.Cluster(cfg.stack, cfg.run_dir, "x")
    with pytest.raises(errors.StackError, match=r"did not answer a query within 1s"):
        await cluster.wait_ready(1.0)


async def test_changed_config_reaches_a_running_asterisk(
    local_stack: connections.Connections, stack_config: config.Config
) -> None:
    changed = config.with_overrides(stack_config, trunk={"port": 5099})
    instance = stack.asterisk.Instance(changed, changed.run_dir, local_stack.ari_password)
    try:
        await instance.start()
        shown = await instance.cli("pjsip show aor trunk")
        assert "sip:127.0.0.1:5099" in shown.stdout
    finally:
        await stack.asterisk.Instance(stack_config, stack_config.run_dir, local_stack.ari_password).start()
    shown = await instance.cli("pjsip show aor trunk")
    assert f"sip:127.0.0.1:{stack_config.trunk.port}" in shown.stdout
