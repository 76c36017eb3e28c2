"""The SMS sender as a process: ``ivr-auth sms`` refuses to start without
carriers, ``ivr-auth run`` takes the sender in only with carriers, and the
``ivr-auth-sms.service`` unit ``ivr-auth systemd-units`` writes passes
``systemd-analyze verify``, is hardened like the others, runs ``sms`` and
gives the sender's bounded stop its time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ivr_auth import cli, config, connections, errors, runtime, systemd_units
from ivr_auth.sms import sender
from ivr_auth.store import migrate
from tests.support import systemd

VENV_BIN = Path(sys.executable).parent / "ivr-auth"
UNIT = "ivr-auth-sms.service"
CARRIER = "sms:\n  carriers:\n    - name: main\n      password: secret\n"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ivr-auth.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def unit_text(tmp_path: Path, config_text: str = "") -> str:
    out = tmp_path / "units"
    assert (
        cli.main(
            ["-c", str(write_config(tmp_path, config_text)), "systemd-units", "--out", str(out), "--bin", str(VENV_BIN)]
        )
        == 0
    )
    return (out / UNIT).read_text(encoding="utf-8")


# --- the commands ---------------------------------------------------------------------


def test_ivr_auth_sms_refuses_to_start_without_carriers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-c", str(write_config(tmp_path, "")), "sms"]) == 2
    said = capsys.readouterr().err
    assert "configuration error" in said
    assert "sms.carriers is empty" in said


def test_a_runtime_with_the_sender_and_no_carriers_is_refused() -> None:
    endpoints = connections.Connections(
        database_url="postgresql://nobody@127.0.0.1:1/none",
        ari_url="http://127.0.0.1:1/ari",
        ari_username="ivr-auth",
        ari_password="x",
        server_secret="s" * 48,
    )
    with pytest.raises(errors.ConfigError, match=r"sms\.carriers is empty"):
        runtime.Runtime(config.from_mapping({}), endpoints, api=False, dialer=False, sms=True)


Served = tuple[connections.Connections, bool, bool, bool]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Served]:
    """What ``runtime.serve`` was asked to run (it runs nothing here: what
    runs is the e2e tests'), with the database settings given and the
    migration skipped."""
    calls: list[Served] = []

    async def serve(
        cfg: config.Config, endpoints: connections.Connections, *, api: bool, dialer: bool, sms: bool
    ) -> None:
        calls.append((endpoints, api, dialer, sms))

    async def migrated(db: object) -> None:
        return None

    monkeypatch.setattr(runtime, "serve", serve)
    monkeypatch.setattr(migrate, "migrate", migrated)
    monkeypatch.setenv("IVR_AUTH_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("IVR_AUTH_SERVER_SECRET", "s" * 48)
    return calls


@pytest.mark.parametrize(
    ("command", "config_text", "expected"),
    [
        ("run", "", (True, True, False)),
        ("run", CARRIER, (True, True, True)),
        ("sms", CARRIER, (False, False, True)),
        ("controller", CARRIER, (False, True, False)),
        ("api", CARRIER, (True, False, False)),
    ],
)
def test_which_parts_each_command_runs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    served: list[Served],
    command: str,
    config_text: str,
    expected: tuple[bool, bool, bool],
) -> None:
    monkeypatch.setenv("IVR_AUTH_ARI_URL", "http://127.0.0.1:1/ari")
    monkeypatch.setenv("IVR_AUTH_ARI_PASSWORD", "x")
    assert cli.main(["-c", str(write_config(tmp_path, config_text)), command]) == 0
    assert [parts for _, *parts in served] == [list(expected)]


def test_the_sms_sender_alone_needs_no_asterisk_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[Served], capsys: pytest.CaptureFixture[str]
) -> None:
    for variable in ("IVR_AUTH_ARI_URL", "IVR_AUTH_ARI_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    config_file = str(write_config(tmp_path, CARRIER))
    assert cli.main(["-c", config_file, "sms"]) == 0
    assert [(endpoints.ari_url, endpoints.ari_password) for endpoints, *_ in served] == [("", "")]
    # A process that dials (or reports Asterisk on /readyz) still needs them.
    assert cli.main(["-c", config_file, "run"]) == 2
    assert "ari.url ($IVR_AUTH_ARI_URL)" in capsys.readouterr().err


# --- the systemd unit ---------------------------------------------------------------


def test_the_sms_unit_is_written_and_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit_text(tmp_path)
    assert UNIT in systemd_units.UNITS
    assert systemd.verify(tmp_path / "units" / UNIT) == []


def test_the_sms_unit_runs_the_sender_with_the_other_units_hardening(tmp_path: Path) -> None:
    text = unit_text(tmp_path)
    service = systemd.section(text, "Service")
    controller = systemd.section(
        (tmp_path / "units" / "ivr-auth-controller.service").read_text(encoding="utf-8"), "Service"
    )
    assert service["ExecStart"] == [f"{VENV_BIN} -c {systemd_units.DEFAULT_CONFIG_FILE} --log-level info sms"]
    different = {"ExecStart", "TimeoutStopSec"}
    assert {k: v for k, v in service.items() if k not in different} == {
        k: v for k, v in controller.items() if k not in different
    }
    assert service["RestartPreventExitStatus"] == ["2"]  # no carriers: a config error, not restarted


def test_the_sms_unit_needs_postgres_but_not_asterisk(tmp_path: Path) -> None:
    text = unit_text(tmp_path)
    unit = systemd.section(text, "Unit")
    after = " ".join(unit["After"]).split()
    wants = " ".join(unit["Wants"]).split()
    assert {"network-online.target", "postgresql.service"} <= set(after)
    assert {"network-online.target", "postgresql.service"} <= set(wants)
    assert "asterisk.service" not in after + wants
    assert "Requires" not in unit
    assert unit["PartOf"] == ["ivr-auth.target"]
    assert systemd.section(text, "Install")["WantedBy"] == ["ivr-auth.target"]


@pytest.mark.parametrize("lease", [30.0, 120.0])
def test_the_sms_units_stop_timeout_outlasts_the_senders_bounded_stop(tmp_path: Path, lease: float) -> None:
    service = systemd.section(unit_text(tmp_path, f"sms:\n  lease_seconds: {lease}\n"), "Service")
    timeout = int(service["TimeoutStopSec"][0])
    sms = config.SmsConfig(lease_seconds=lease)
    # Runtime.stop bounds the sender's stop by this, and its own other steps by the margin.
    assert timeout >= sender.stop_bound(sms) + systemd_units.SHUTDOWN_MARGIN_SECONDS
    assert timeout == systemd_units.sms_stop_timeout(sms)
    assert sender.drain_seconds(sms) == lease * sender.SUBMIT_SHARE_OF_LEASE
