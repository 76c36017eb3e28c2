"""The pure parts of ``ivr-auth doctor``: how a result reads, the migration
and clock comparisons, redaction, and a run with no stack to check."""

from __future__ import annotations

import json
from pathlib import Path

from ivr_auth import config, doctor, prompts
from ivr_auth.store import migrate

SHIPPED = [migrate.Migration(1, "init", ""), migrate.Migration(2, "tenants", ""), migrate.Migration(3, "outbox", "")]


def test_a_result_reads_as_one_line() -> None:
    assert doctor.Result("ari", True, "Asterisk 16 answers").line() == "ok    ari: Asterisk 16 answers"
    assert doctor.Result("ari", False, "wrong").line() == "FAIL  ari: wrong"
    assert doctor.failed([doctor.Result("a", True, ""), doctor.Result("b", False, "")])
    assert not doctor.failed([doctor.Result("a", True, "")])


def test_migrations_all_applied() -> None:
    assert doctor.migration_problem([1, 2, 3], SHIPPED) is None


def test_a_fresh_database_is_not_migrated() -> None:
    problem = doctor.migration_problem([], SHIPPED)
    assert problem is not None
    assert "not migrated" in problem
    assert "ivr-auth migrate" in problem


def test_missing_migrations_are_named() -> None:
    problem = doctor.migration_problem([1], SHIPPED)
    assert problem is not None
    assert "0002_tenants" in problem
    assert "0003_outbox" in problem
    assert "0001" not in problem


def test_a_database_newer_than_the_code() -> None:
    problem = doctor.migration_problem([1, 2, 3, 4], SHIPPED)
    assert problem is not None
    assert "upgrade" in problem
    assert "4" in problem


def test_clock_skew() -> None:
    assert doctor.skew_problem(1.5) is None
    assert doctor.skew_problem(-1.9) is None
    ahead = doctor.skew_problem(3.0)
    assert ahead is not None
    assert "3.0s ahead" in ahead
    behind = doctor.skew_problem(-10.0)
    assert behind is not None
    assert "behind" in behind


def test_redact() -> None:
    assert doctor.redact("user x pw s3cret at s3cret", ["s3cret", None, ""]) == "user x pw ******** at ********"


def test_missing_prompt_files_are_named(tmp_path: Path) -> None:
    root = tmp_path / "prompts"
    index = {"en": {"greeting": {"duration_ms": 1}, "goodbye": {"duration_ms": 1}}}
    (root / "en").mkdir(parents=True)
    (root / "en" / "greeting.wav").write_bytes(b"RIFF")
    (root / prompts.INDEX_FILE).write_text(json.dumps(index))
    library = prompts.Library(shipped_dir=root)
    assert doctor.missing_prompts(library, ["en"]) == ["en/goodbye.wav"]
    assert doctor.missing_prompts(library, ["ja"]) == ["ja/ (no prompts at all)"]


def test_the_shipped_prompts_are_complete() -> None:
    assert doctor.missing_prompts(prompts.Library(), config.LANGUAGES) == []


async def test_a_stack_never_started_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    cfg = config.from_mapping({"stack": {"run_dir": str(tmp_path / "never")}, "agi": {"listen": ""}})
    results = {r.check: r for r in await doctor.run(cfg, timeout=2)}
    assert not results["stack"].ok
    assert "ivr-auth stack up" in results["stack"].detail
    for name in ("database", "clock", "ari", "trunk trunk"):
        assert not results[name].ok
    assert results["prompts"].ok
    assert results["fastagi"].ok
