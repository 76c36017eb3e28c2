"""The ``ivr-auth`` command as a user runs it, and ``ivr-auth-dev``, which
runs it on the embedded stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from ivr_auth import cli, config, connections
from ivr_auth_devkit import cli as dev_cli
from ivr_auth_devkit import sipp, stack
from ivr_auth_devkit.stack import install
from tests.conftest import settings_from_env

BIN = Path(sys.executable).parent

pytestmark = pytest.mark.e2e


@pytest.fixture
def config_file(tmp_path: Path, stack_config: config.Config) -> Path:
    path = tmp_path / "ivr-auth.yaml"
    settings = settings_from_env(os.environ)
    settings.pop("base_dir")
    settings["stack"] = {**settings["stack"], "run_dir": str(stack_config.run_dir)}  # type: ignore[dict-item]
    path.write_text(yaml.safe_dump(settings))
    return path


def test_stack_status(
    local_stack: connections.Connections,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    stack_config: config.Config,
) -> None:
    assert dev_cli.main(["-c", str(config_file), "stack", "status"]) == 0
    out = capsys.readouterr().out
    assert "postgres  running" in out
    assert "asterisk  running" in out
    # It says which Asterisk: by default the tree's 22 where make setup built one.
    chosen = install.resolve(stack_config.stack)
    version = chosen.version()
    assert version is not None
    assert f"Asterisk {'.'.join(map(str, version))} from {chosen.description}" in out


def test_the_service_command_needs_its_connections(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing of the embedded stack is found by the service itself: it names what to set.
    assert cli.main(["-c", str(config_file), "migrate"]) == 2
    err = capsys.readouterr().err
    assert "database_url ($IVR_AUTH_DATABASE_URL)" in err
    assert "ivr-auth-dev" in err


def test_the_dev_command_runs_the_service_command_on_the_stack(
    local_stack: connections.Connections, config_file: Path
) -> None:
    done = subprocess.run(
        [BIN / "ivr-auth-dev", "-c", str(config_file), "config"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["ari"]["url"] == local_stack.ari_url
    assert shown["database_url"].startswith("postgresql://")
    assert local_stack.server_secret not in done.stdout  # masked
    env = subprocess.run(
        [BIN / "ivr-auth-dev", "-c", str(config_file), "env"], capture_output=True, text=True, timeout=60
    )
    assert env.returncode == 0, env.stderr
    assert f"export IVR_AUTH_ARI_URL={local_stack.ari_url}" in env.stdout.splitlines()


def test_call_prints_the_outcome(
    local_stack: connections.Connections,
    config_file: Path,
    stack_config: config.Config,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    for variable, value in stack.environment(local_stack).items():
        monkeypatch.setenv(variable, value)

    async def run() -> int:
        async with sipp.Handset(port=stack_config.trunk.port, keys="5150"):
            return await asyncio.to_thread(
                cli.main, ["-c", str(config_file), "call", "090-1234-5678", "--digits", "4", "--json"]
            )

    assert asyncio.run(run()) == 0
    (outcome,) = json.loads(capsys.readouterr().out)
    assert outcome["outcome"] == "answered"
    assert outcome["digits"] == "5150"
    assert outcome["number"] == "+81********78"  # masked


def test_bad_config_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("trunk:\n  number_format: international\n")
    assert cli.main(["-c", str(path), "config"]) == 2
    assert "trunk.number_format" in capsys.readouterr().err


def test_invalid_number_is_refused(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-c", str(config_file), "call", "0990-12-3456"]) == 1
    # A valid number, but of a line type limits.allowed_line_types leaves out.
    assert "is a premium_rate number; this service calls" in capsys.readouterr().err


def test_config_masks_passwords(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "database_url: postgresql://u:s3cret@db:5432/x\nari: {url: 'http://127.0.0.1:8088/ari', password: hunter2}\n"
    )
    assert cli.main(["-c", str(path), "config"]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out
    assert "hunter2" not in out
    assert "postgresql://u:********@db:5432/x" in out


def test_demo_verifies_one_request_of_each_method(
    local_stack: connections.Connections,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    stack_config: config.Config,
) -> None:
    # Nothing an earlier test left queued may be dialled into the demo's handsets.
    with psycopg.connect(local_stack.database_url, autocommit=True) as conn:
        conn.execute("UPDATE verifications SET status = 'canceled' WHERE status IN ('queued', 'calling', 'in_call')")

    assert dev_cli.main(["-c", str(config_file), "demo"]) == 0

    out = capsys.readouterr().out
    for scene in ("== dtmf:", "== voice:", "== inbound:", "== sms:", "== sms, then a call:"):
        assert scene in out
    # Two dtmf, one voice, one SMS and one SMS-then-voice checked.
    assert out.count("result: verified (code_matched)") == 5
    assert out.count("the SMSC received from IVRAUTH") == 2
    assert "delivered (voice)" in out
    assert "delivered" in out
    assert "result: verified (caller_id_matched)" in out
    assert "call 050-1234-5678 from your phone" in out
    # The demo says which Asterisk it runs on (22 by default here).
    version = install.resolve(stack_config.stack).version()
    assert version is not None
    assert f"Asterisk {'.'.join(map(str, version))}" in out
