"""``ivr-auth systemd-units``: the units it writes pass ``systemd-analyze
verify`` with nothing to say, carry the hardening and the ordering
docs/deploy.md promises, give the controller's drain time to finish, and
are never written over unasked. The service's libraries run inside the
units' system call filter and MemoryDenyWriteExecute, rebuilt without
systemd (tests/support/sandbox.py): nothing here boots a unit.

``systemd-analyze verify`` (systemd 252) exits 0 on an unknown key or a
value it cannot parse and only prints a warning, so any line it prints
fails the test. It checks that ExecStart's binary exists (hence ``--bin``
is this venv's ``ivr-auth``), but not that ``User=`` exists, nor the units
named in ``After=`` and ``Wants=`` (``postgresql.service`` and
``asterisk.service`` need not be installed here)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ivr_auth import cli, config, connections, errors, systemd_units
from tests.support import sandbox, systemd

VENV_BIN = Path(sys.executable).parent / "ivr-auth"
GRACE = 45.0
SERVICES = ("ivr-auth-api.service", "ivr-auth-controller.service")
SECRETS = ("IVR_AUTH_DATABASE_URL", "IVR_AUTH_ARI_URL", "IVR_AUTH_ARI_PASSWORD", "IVR_AUTH_SERVER_SECRET")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "ivr-auth.yaml"
    path.write_text(f"dialer:\n  shutdown_grace_seconds: {GRACE}\n", encoding="utf-8")
    return path


def write_units(config_file: Path, out: Path, *extra: str) -> int:
    return cli.main(["-c", str(config_file), "systemd-units", "--out", str(out), "--bin", str(VENV_BIN), *extra])


@pytest.fixture
def units(config_file: Path, tmp_path: Path) -> Path:
    out = tmp_path / "units"
    assert write_units(config_file, out) == 0
    return out


def test_the_written_units_pass_systemd_analyze_verify(units: Path) -> None:
    written = sorted(p.name for p in units.iterdir())
    assert written == sorted([*systemd_units.UNITS, systemd_units.ENV_FILE])
    assert systemd.verify(*(units / name for name in systemd_units.UNITS)) == []


def test_verify_catches_what_it_is_for(units: Path, tmp_path: Path) -> None:
    text = (units / "ivr-auth-api.service").read_text(encoding="utf-8")
    broken = tmp_path / "broken" / "ivr-auth-api.service"
    broken.parent.mkdir()
    broken.write_text(text.replace("RestartSec=5", "RestartSec=five\nProtectEverything=yes"), encoding="utf-8")
    said = "\n".join(systemd.verify(broken))
    assert "five" in said
    assert "ProtectEverything" in said
    broken.write_text(text.replace(str(VENV_BIN), "/nonexistent/ivr-auth"), encoding="utf-8")
    assert "exit status 1" in systemd.verify(broken)


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_is_hardened(units: Path, name: str) -> None:
    service = systemd.section((units / name).read_text(encoding="utf-8"), "Service")
    expected = {
        "User": ["ivr-auth"],
        "Group": ["ivr-auth"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "PrivateDevices": ["yes"],
        "ProtectKernelTunables": ["yes"],
        "ProtectKernelModules": ["yes"],
        "ProtectKernelLogs": ["yes"],
        "ProtectControlGroups": ["yes"],
        "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
        "CapabilityBoundingSet": [""],
        "AmbientCapabilities": [""],
        "MemoryDenyWriteExecute": ["yes"],
        "UMask": ["0077"],
        "EnvironmentFile": [systemd_units.DEFAULT_ENV_FILE],
        "Restart": ["on-failure"],
        "KillSignal": ["SIGTERM"],
    }
    assert {key: service.get(key) for key in expected} == expected
    assert service["SystemCallFilter"][0] == "@system-service"
    command = name.removeprefix("ivr-auth-").removesuffix(".service")
    assert service["ExecStart"] == [f"{VENV_BIN} -c {systemd_units.DEFAULT_CONFIG_FILE} --log-level info {command}"]


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_rates_ok_in_systemd_analyze_security(units: Path, name: str) -> None:
    """``systemd-analyze security`` rates a unit's exposure 0 to 10; these
    are 1.4 ("OK"), what is left being the network a phone service needs
    and the host's root directory. ``--threshold`` counts tenths."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None
    done = subprocess.run(
        [analyze, "security", "--offline=true", "--threshold=20", "--no-pager", str(units / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_comes_after_postgres_and_asterisk_without_requiring_them(units: Path, name: str) -> None:
    unit = systemd.section((units / name).read_text(encoding="utf-8"), "Unit")
    after = " ".join(unit["After"]).split()
    wants = " ".join(unit["Wants"]).split()
    assert {"network-online.target", "postgresql.service", "asterisk.service"} <= set(after)
    assert {"network-online.target", "postgresql.service"} <= set(wants)
    assert "Requires" not in unit
    assert "BindsTo" not in unit
    assert unit["PartOf"] == ["ivr-auth.target"]


@pytest.mark.parametrize("name", SERVICES)
def test_the_stop_timeout_outlasts_the_configured_drain(units: Path, name: str) -> None:
    service = systemd.section((units / name).read_text(encoding="utf-8"), "Service")
    timeout = int(service["TimeoutStopSec"][0])
    # The controller's own bound on its drain is the grace plus 15 s (runtime.Runtime.stop).
    assert timeout > GRACE + 15
    assert timeout == systemd_units.stop_timeout(GRACE)


def test_the_stop_timeout_follows_the_config_it_was_written_from(tmp_path: Path) -> None:
    grace_file = tmp_path / "long.yaml"
    grace_file.write_text("dialer:\n  shutdown_grace_seconds: 300.5\n", encoding="utf-8")
    assert write_units(grace_file, tmp_path / "out") == 0
    service = systemd.section((tmp_path / "out" / "ivr-auth-controller.service").read_text(encoding="utf-8"), "Service")
    assert int(service["TimeoutStopSec"][0]) == 301 + systemd_units.SHUTDOWN_MARGIN_SECONDS


def test_existing_files_are_not_written_over_without_force(
    units: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = units / "ivr-auth-api.service"
    api.write_text("# the operator's own\n", encoding="utf-8")
    (units / "ivr-auth.target").unlink()
    capsys.readouterr()
    assert write_units(config_file, units) == 1
    assert "--force" in capsys.readouterr().err
    assert api.read_text(encoding="utf-8") == "# the operator's own\n"
    assert not (units / "ivr-auth.target").exists(), "nothing is written when anything is refused"
    assert write_units(config_file, units, "--force") == 0
    assert api.read_text(encoding="utf-8").startswith("# The ivr-auth HTTP API")
    assert (units / "ivr-auth.target").exists()


def test_the_environment_file_is_private_and_names_the_secrets_the_code_reads(units: Path) -> None:
    env_file = units / systemd_units.ENV_FILE
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = {}
    for line in env_file.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value.strip("'")
    assert sorted(values) == sorted(SECRETS)
    # Left as shipped, the placeholder secret is refused at start-up ...
    with pytest.raises(errors.ConfigError, match="server_secret"):
        config.load(os.devnull, environ=values)
    # ... and once filled in, these are exactly the connections the service needs.
    values["IVR_AUTH_SERVER_SECRET"] = "s" * 48
    endpoints = connections.from_config(config.load(os.devnull, environ=values))
    assert endpoints.database_url == "postgresql://ivr_auth:CHANGE-ME@127.0.0.1:5432/ivr_auth"
    assert endpoints.ari_url == "http://127.0.0.1:8088/ari"


def test_options_go_into_the_units(config_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        write_units(
            config_file,
            out,
            "--user",
            "verifier",
            "--config-file",
            "/srv/ivr/100%.yaml",
            "--env-file",
            "/srv/ivr/secrets.env",
        )
        == 0
    )
    service = systemd.section((out / "ivr-auth-controller.service").read_text(encoding="utf-8"), "Service")
    assert service["User"] == service["Group"] == ["verifier"]
    assert service["EnvironmentFile"] == ["/srv/ivr/secrets.env"]
    # systemd would read %. as a specifier
    assert service["ExecStart"] == [f"{VENV_BIN} -c /srv/ivr/100%%.yaml --log-level info controller"]
    assert "/srv/ivr/secrets.env" in (out / systemd_units.ENV_FILE).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("flag", "value", "problem"),
    [
        ("--user", "Ivr Auth", "not a user or group name"),
        ("--group", "root\nExecStartPre=/bin/sh", "not a user or group name"),
        ("--bin", "venv/bin/ivr-auth", "not an absolute path"),
        ("--config-file", "/etc/my config.yaml", "a space"),
    ],
)
def test_bad_options_are_refused(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, problem: str
) -> None:
    out = tmp_path / "out"
    assert write_units(config_file, out, flag, value) == 1
    assert problem in capsys.readouterr().err
    assert not out.exists()


def test_without_bin_the_installed_executable_is_used() -> None:
    assert systemd_units.installed_executable() == str(VENV_BIN)


ROOT = Path(__file__).resolve().parents[2]
# Run in a process of its own: put itself in the sandbox of the unit named
# by argv[1] (with PR_SET_MDWE when argv[2] is "mdwe"), check that the
# sandbox holds, then do what the service's processes do at the system call
# level: import everything, seal a secret, resolve a name, serve and fetch
# HTTP, take SIGTERM on the event loop, reach for Postgres.
IN_SANDBOX = textwrap.dedent(
    """
    import asyncio, errno, mmap, os, signal, socket, sys, uuid
    from pathlib import Path
    from tests.support import sandbox, systemd

    allow, families, error = sandbox.from_unit(Path(sys.argv[1]).read_text())
    if sys.argv[2] == "mdwe" and not sandbox.deny_write_execute():
        sys.exit("PR_SET_MDWE failed")
    sandbox.enter(allow, families, error=error)

    try:
        os.chroot("/")
    except PermissionError:
        pass
    else:
        sys.exit("chroot() was allowed: the filter is not in force")
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)
    except OSError as exc:
        assert exc.errno == errno.EAFNOSUPPORT, exc
    else:
        sys.exit("an AF_NETLINK socket was allowed")
    if sys.argv[2] == "mdwe":
        try:
            mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        except OSError:
            pass
        else:
            sys.exit("a writable and executable mapping was allowed")

    import aiohttp, psycopg
    from aiohttp import web
    from ivr_auth import cli, config, crypto, runtime

    keys = crypto.Keys.from_secret("s" * 48)
    owner = uuid.uuid4()
    assert keys.unseal(owner, keys.seal(owner, "webhook secret")) == "webhook secret"
    config.from_mapping({"dialer": {"shutdown_grace_seconds": 5}})

    async def main():
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        app = web.Application()
        app.router.add_get("/", lambda request: web.json_response({"ok": True}))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://localhost:{port}/") as resp:
                assert (await resp.json()) == {"ok": True}
        await runner.cleanup()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 5)
        for url in ("postgresql://ivr_auth@127.0.0.1:1/ivr_auth", "postgresql://ivr_auth@/ivr_auth?host=/nonexistent"):
            try:
                await psycopg.AsyncConnection.connect(url, connect_timeout=5)
            except psycopg.OperationalError as exc:
                assert "refused" in str(exc) or "No such file" in str(exc), exc
            else:
                raise AssertionError(url)

    asyncio.run(main())
    print("ok")
    """
)


def in_sandbox(unit: Path, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", IN_SANDBOX, str(unit), mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("name", SERVICES)
def test_the_service_runs_inside_the_units_system_call_filter(units: Path, name: str) -> None:
    """SystemCallFilter=, SystemCallErrorNumber= and RestrictAddressFamilies=
    as the unit sets them, loaded with libseccomp as systemd would: a call
    the service needs and the filter refuses fails here."""
    done = in_sandbox(units / name, "seccomp")
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


def test_the_service_runs_with_memory_deny_write_execute(units: Path) -> None:
    """MemoryDenyWriteExecute=yes refuses memory mapped writable and
    executable (a JIT, some FFI closures). Linux's PR_SET_MDWE (6.3+)
    refuses the same, so the service's libraries run under it here, inside
    the system call filter too."""
    probe = f"import ctypes, sys; sys.exit(ctypes.CDLL(None).prctl({sandbox.PR_SET_MDWE}, 1, 0, 0, 0))"
    if subprocess.run([sys.executable, "-c", probe], check=False).returncode != 0:
        pytest.skip(f"this kernel ({os.uname().release}) has no PR_SET_MDWE")
    done = in_sandbox(units / "ivr-auth-controller.service", "mdwe")
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr
