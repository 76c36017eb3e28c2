"""``ivr-auth doctor`` against the real test stack: all ok when healthy, and
each fault named in plain words."""

from __future__ import annotations

import copy
import shutil
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from ivr_auth import cli, config, doctor, prompts, stack
from tests.conftest import TEST_SETTINGS

pytestmark = pytest.mark.e2e


def settings_with(**overrides: Any) -> config.Config:
    settings = copy.deepcopy(TEST_SETTINGS)
    for section, values in overrides.items():
        if isinstance(values, dict):
            current = settings.setdefault(section, {})
            assert isinstance(current, dict)
            current.update(values)
        else:
            settings[section] = values
    return config.from_mapping(settings)


async def results_of(cfg: config.Config, library: prompts.Library | None = None) -> dict[str, doctor.Result]:
    return {r.check: r for r in await doctor.run(cfg, library=library)}


def failures(results: dict[str, doctor.Result]) -> dict[str, str]:
    return {name: r.detail for name, r in results.items() if not r.ok}


async def test_all_ok_on_the_healthy_stack(local_stack: stack.Endpoints, stack_config: config.Config) -> None:
    results = await results_of(stack_config)
    assert failures(results) == {}
    assert set(results) == {"database", "clock", "ari", "trunk trunk", "prompts", "fastagi"}


async def test_wrong_ari_password(local_stack: stack.Endpoints) -> None:
    cfg = settings_with(ari={"url": local_stack.ari_url, "password": "not-the-password"})
    problems = failures(await results_of(cfg))
    assert "wrong ARI username or password" in problems["ari"]
    assert "not-the-password" not in " ".join(problems.values())
    assert set(problems) == {"ari", "trunk trunk"}


async def test_missing_trunk_endpoint(local_stack: stack.Endpoints) -> None:
    cfg = settings_with(trunks=[{"name": "trunk", "port": 5082}, {"name": "no-such-trunk", "port": 5084}])
    problems = failures(await results_of(cfg))
    assert problems == {"trunk no-such-trunk": problems["trunk no-such-trunk"]}
    assert "trunk endpoint no-such-trunk missing" in problems["trunk no-such-trunk"]


async def test_missing_prompt(local_stack: stack.Endpoints, stack_config: config.Config, tmp_path: Path) -> None:
    copied = tmp_path / "prompts"
    shutil.copytree(prompts.SHIPPED_DIR, copied)
    (copied / "ja" / "goodbye.wav").unlink()
    problems = failures(await results_of(stack_config, prompts.Library(shipped_dir=copied)))
    assert set(problems) == {"prompts"}
    assert "ja/goodbye.wav" in problems["prompts"]


@pytest.fixture
async def empty_database_url(local_stack: stack.Endpoints) -> AsyncIterator[str]:
    name = f"doctor_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(local_stack.database_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield urllib.parse.urlsplit(local_stack.database_url)._replace(path=f"/{name}").geturl()
    finally:
        async with await psycopg.AsyncConnection.connect(local_stack.database_url, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


async def test_database_not_migrated(local_stack: stack.Endpoints, empty_database_url: str) -> None:
    cfg = settings_with(database_url=empty_database_url, server_secret=local_stack.server_secret)
    problems = failures(await results_of(cfg))
    assert set(problems) == {"database"}
    assert "not migrated" in problems["database"]
    assert "ivr-auth migrate" in problems["database"]


def test_the_command(
    local_stack: stack.Endpoints, stack_config: config.Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ivr-auth.yaml"
    settings = copy.deepcopy(TEST_SETTINGS)
    settings["stack"] = {**TEST_SETTINGS["stack"], "run_dir": str(stack_config.run_dir)}  # type: ignore[dict-item]
    settings["ari"] = {"app": "ivr-auth-test", "url": local_stack.ari_url, "password": "wrong-password"}
    path.write_text(yaml.safe_dump(settings))
    assert cli.main(["-c", str(path), "doctor"]) == 1
    out = capsys.readouterr().out
    assert "ok    database: reachable, schema up to date" in out
    assert "FAIL  ari: wrong ARI username or password" in out
    for secret in ("wrong-password", local_stack.server_secret, local_stack.ari_password):
        assert secret not in out
