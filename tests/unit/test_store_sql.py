from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from ivr_auth import errors, states
from ivr_auth.store import migrate, outbox, sql, verifications

STORE = Path(sql.__file__).parent
SQL_FILES = sorted(p.name for p in STORE.glob("*.sql"))
# psycopg's own rule: "%%" is a literal percent, "%(name)s" a named parameter;
# anything else after a percent (%s, %(x), %(x)d, a stray %) is an error or a bug.
PERCENT = re.compile(r"%%|%\((\w+)\)s|%")


def placeholders(body: str) -> list[str]:
    """The parameter names in one query; fails on a malformed percent."""
    names = []
    for match in PERCENT.finditer(body):
        if match.group(0) == "%%":
            continue
        assert match.group(1), f"malformed placeholder at {body[match.start() : match.start() + 20]!r}"
        names.append(match.group(1))
    return names


def test_parse_ignores_what_comes_before_the_first_name() -> None:
    text = "-- a header\n\n-- name: one\nSELECT 1;\n\n-- name: two\nSELECT %(x)s;\n"

    assert sql.parse(text) == {"one": "SELECT 1;", "two": "SELECT %(x)s;"}
    assert sql.parse("-- only a header\n") == {}


def test_parse_refuses_a_name_defined_twice() -> None:
    text = "-- name: one\nSELECT 1;\n-- name: two\nSELECT 2;\n-- name: one\nSELECT 3;\n"

    with pytest.raises(ValueError, match="'one' is defined twice"):
        sql.parse(text)


def test_an_unknown_name_is_a_key_error_naming_the_file() -> None:
    queries = sql.load("database.sql")

    assert queries["ping"] == "SELECT 1;"
    with pytest.raises(KeyError, match=r"no query named 'no_such_query' in database\.sql"):
        queries["no_such_query"]


@pytest.mark.parametrize("filename", SQL_FILES)
def test_each_sql_file_parses_without_duplicates(filename: str) -> None:
    text = (STORE / filename).read_text(encoding="utf-8")
    names = re.findall(r"^--\s*name:\s*(\w+)\s*$", text, re.MULTILINE)

    assert names, f"{filename} has no named query"
    assert len(names) == len(set(names))
    assert sorted(sql.load(filename)) == sorted(names)


NAMED = [(f, name) for f in SQL_FILES for name in sorted(sql.load(f))]


@pytest.mark.parametrize(("filename", "name"), NAMED, ids=[f"{f}:{name}" for f, name in NAMED])
def test_every_placeholder_is_well_formed(filename: str, name: str) -> None:
    for param in placeholders(sql.load(filename)[name]):
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", param), f"{filename} {name}: odd parameter name {param!r}"


@pytest.mark.parametrize("body", ["SELECT %s", "SELECT %(x)d", "SELECT %(x)", "SELECT 5 % 2", "SELECT %()s"])
def test_the_placeholder_check_catches_malformed_ones(body: str) -> None:
    with pytest.raises(AssertionError, match="malformed placeholder"):
        placeholders(body)


def test_the_placeholder_check_accepts_a_literal_percent() -> None:
    assert placeholders("SELECT 'a' LIKE 'b%%' AND x = %(x)s AND y = %(y)s") == ["x", "y"]


def test_every_query_the_store_uses_exists() -> None:
    loaded = {}  # module -> its queries
    for module in STORE.glob("*.py"):
        found = re.search(r"^QUERIES = sql\.load\(\"(\w+\.sql)\"\)", module.read_text(encoding="utf-8"), re.MULTILINE)
        if found:
            loaded[module.stem] = sql.load(found.group(1))
    used: set[tuple[str, str]] = set()
    for module in STORE.glob("*.py"):
        source = module.read_text(encoding="utf-8")
        for owner, name in re.findall(r"(?:\b(\w+)\.)?QUERIES\[\"(\w+)\"\]", source):
            used.add((owner or module.stem, name))

    assert {("database", "ping"), ("verifications", "transition"), ("gauges", "queue")} <= used  # the patterns work
    missing = sorted((owner, name) for owner, name in used if name not in loaded[owner])
    assert not missing, f"queries used but not defined: {missing}"


def test_migrations_are_numbered_one_to_n() -> None:
    found = migrate.available()

    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert migrate.latest_version() == len(found) >= 1
    assert all(m.sql.strip() for m in found)


def test_every_file_in_migrations_is_a_migration() -> None:
    # A file the pattern does not match would be skipped without a word.
    files = [p.name for p in (STORE / "migrations").iterdir() if p.suffix == ".sql"]

    assert sorted(files) == sorted(f"{m.version:04d}_{m.name}.sql" for m in migrate.available())


def test_a_gap_in_the_numbering_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "migrations").mkdir()
    for name in ("0001_first.sql", "0003_third.sql"):
        (tmp_path / "migrations" / name).write_text("SELECT 1;\n", encoding="utf-8")
    monkeypatch.setattr(resources, "files", lambda _package: tmp_path)

    with pytest.raises(errors.StoreError, match=r"\[1, 3\]"):
        migrate.available()


def test_the_schema_allows_exactly_the_statuses() -> None:
    # The last migration that redefines the check (15: sent, for sms).
    schema = (STORE / "migrations" / "0015_sms_channels.sql").read_text(encoding="utf-8")
    match = re.search(r"verifications_status_check CHECK \(status IN \((.*?)\)\)", schema, re.DOTALL)

    assert match is not None
    assert set(re.findall(r"'(\w+)'", match.group(1))) == {s.value for s in states.Status}


def test_every_query_is_run_by_the_module_that_loads_it() -> None:
    for module in STORE.glob("*.py"):
        source = module.read_text(encoding="utf-8")
        found = re.search(r"^QUERIES = sql\.load\(\"(\w+\.sql)\"\)", source, re.MULTILINE)
        for name in sql.load(found.group(1)) if found else ():
            assert f'"{name}"' in source, f"{found and found.group(1)}: {name} is never run"


def test_the_notify_channels_are_those_the_listeners_listen_to() -> None:
    queries = verifications.QUERIES
    for name in ("insert_verification", "transition", "requeue_failover"):
        assert f"pg_notify('{verifications.QUEUE_CHANNEL}'," in queries[name], name
    assert f"pg_notify('{verifications.CANCEL_CHANNEL}'," in queries["transition"]
    assert f"pg_notify('{outbox.WEBHOOK_CHANNEL}'," in queries["transition"]
    trigger = (STORE / "migrations" / "0011_status_notify_lazy_webhooks.sql").read_text(encoding="utf-8")
    assert f"pg_notify('{verifications.STATUS_CHANNEL}'," in trigger
