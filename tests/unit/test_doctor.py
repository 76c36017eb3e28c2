"""The pure parts of ``ivr-auth doctor``: how a result reads, the migration
and clock comparisons, redaction, the Stasis-app and timer-B reasoning, what
the trunk reachability check says, and a run with no stack to check."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ivr_auth import cli, config, doctor, prompts
from ivr_auth.store import migrate

SHIPPED = [migrate.Migration(1, "init", ""), migrate.Migration(2, "tenants", ""), migrate.Migration(3, "outbox", "")]


def test_a_result_reads_as_one_line() -> None:
    assert doctor.Result("ari", "ok", "Asterisk 16 answers").line() == "ok    ari: Asterisk 16 answers"
    assert doctor.Result("ari", "fail", "wrong").line() == "FAIL  ari: wrong"
    assert doctor.Result("ari apps", "warn", "none").line() == "WARN  ari apps: none"


def test_only_a_failure_fails_the_run() -> None:
    assert doctor.failed([doctor.Result("a", "ok", ""), doctor.Result("b", "fail", "")])
    assert not doctor.failed([doctor.Result("a", "ok", ""), doctor.Result("b", "warn", "")])


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
    assert doctor.skew_problem(3.0, limit=5) is None
    lenient = doctor.skew_problem(6.0, limit=5)
    assert lenient is not None
    assert "more than 5s" in lenient


def test_max_clock_skew_option() -> None:
    assert cli._parser().parse_args(["doctor", "--max-clock-skew", "0.5"]).max_clock_skew == 0.5
    assert cli._parser().parse_args(["doctor"]).max_clock_skew == doctor.MAX_CLOCK_SKEW


@pytest.mark.parametrize("given", ["0", "-1", "-0.5", "nan", "inf", "soon"])
def test_max_clock_skew_must_be_positive(given: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli._parser().parse_args(["doctor", f"--max-clock-skew={given}"])
    assert exit_.value.code == 2
    assert f"argument --max-clock-skew: expected a positive number of seconds, got {given!r}" in capsys.readouterr().err


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


async def test_a_config_without_its_connections_is_a_failure_not_a_crash() -> None:
    cfg = config.from_mapping({"database_url": "postgresql://db.invalid/x", "agi": {"listen": ""}})
    results = {r.check: r for r in await doctor.run(cfg, timeout=2)}
    assert results["connections"].status == "fail"
    # Each missing key is named, with its environment variable; the one set is not.
    detail = results["connections"].detail
    assert "ari.url ($IVR_AUTH_ARI_URL)" in detail
    assert "server_secret ($IVR_AUTH_SERVER_SECRET)" in detail
    assert "database_url" not in detail
    for name in ("database", "clock", "ari", "asterisk modules", "ari apps", "sip timers", "trunk trunk"):
        assert results[name].status == "fail"
    assert "trunk trunk sip" in results
    assert results["prompts"].status == "ok"
    assert results["fastagi"].status == "ok"


APPS = {"ari_app": "ivr-auth", "inbound_app": "ivr-auth-inbound", "node": "pbx1:8088"}


def test_no_controller_connected_is_a_warning_in_plain_words() -> None:
    status, detail = doctor.app_finding([], inbound_needed=True, **APPS)
    assert status == "warn"
    assert detail == (
        "no controller is connected to ARI node pbx1:8088: apps ivr-auth-*, ivr-auth-inbound-<n> not registered "
        "(is `ivr-auth run` or `ivr-auth controller` running?)"
    )
    status, detail = doctor.app_finding(["someone-else"], inbound_needed=False, **APPS)
    assert status == "warn"
    assert "apps ivr-auth-* not registered" in detail


def test_the_inbound_slots_are_not_taken_for_controllers() -> None:
    # "ivr-auth-inbound-1" starts with "ivr-auth-" too.
    status, detail = doctor.app_finding(["ivr-auth-inbound-1"], inbound_needed=True, **APPS)
    assert status == "warn"
    assert "another ari.app" in detail


def test_connected_controllers() -> None:
    status, detail = doctor.app_finding(
        ["ivr-auth-host-1", "ivr-auth-host-2", "ivr-auth-inbound-1", "ivr-auth-inbound-2"], inbound_needed=True, **APPS
    )
    assert status == "ok"
    assert detail == (
        "2 controller(s) connected to ARI node pbx1:8088 (ivr-auth-host-1, ivr-auth-host-2);"
        " inbound slots held: ivr-auth-inbound-1, ivr-auth-inbound-2"
    )
    assert doctor.app_finding(["ivr-auth-host-1"], inbound_needed=False, **APPS)[0] == "ok"


def test_controllers_without_an_inbound_slot_fail_only_when_inbound_numbers_are_set() -> None:
    status, detail = doctor.app_finding(["ivr-auth-host-1", "ivr-auth-inbound"], inbound_needed=True, **APPS)
    assert status == "fail"
    assert "none holds an inbound slot ivr-auth-inbound-<n>" in detail


def test_a_controller_without_a_slot_is_a_warning() -> None:
    status, detail = doctor.app_finding(
        ["ivr-auth-host-1", "ivr-auth-host-2", "ivr-auth-inbound-1"], inbound_needed=True, **APPS
    )
    assert status == "warn"
    assert "1 controller(s) take no inbound call" in detail
    assert "raise inbound.slots" in detail


def system(timer_b: str, timer_t1: str = "500") -> list[dict[str, str]]:
    return [
        {"attribute": "threadpool_max_size", "value": "50"},
        {"attribute": "timer_b", "value": timer_b},
        {"attribute": "timer_t1", "value": timer_t1},
    ]


def test_timer_b_as_the_stack_renders_it() -> None:
    assert doctor.timer_b_problem(system("8000", "125"), 8.0, "n") is None
    assert doctor.timer_b_problem(system("10048", "157"), 10.0, "n") is None  # T1 rounded up


def test_timer_b_left_at_asterisks_default() -> None:
    problem = doctor.timer_b_problem(system("32000"), 8.0, "pbx1")
    assert problem is not None
    assert "32000 ms" in problem
    assert "ARI node pbx1" in problem
    assert "timer_t1 = 125 and timer_b = 8000" in problem


def test_timer_b_under_64_t1_is_raised_by_pjsip() -> None:
    problem = doctor.timer_b_problem(system("8000", "500"), 8.0, "n")
    assert problem is not None
    assert "32000 ms (timer_b 8000, timer_t1 500)" in problem


def test_timer_b_missing() -> None:
    problem = doctor.timer_b_problem([], 8.0, "n")
    assert problem is not None
    assert "no usable timer_b" in problem


async def test_nothing_listening_fails_naming_the_trunk(unused_udp_port: int) -> None:
    trunk = config.TrunkConfig(name="carrier-a", host="127.0.0.1", port=unused_udp_port)
    check = doctor._reach_check(trunk, 1.0)
    with pytest.raises(doctor.Problem, match=f"trunk carrier-a at 127.0.0.1:{unused_udp_port} \\(udp\\)"):
        await check()


async def test_over_tcp() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        call_id = next(line for line in head.split("\r\n") if line.startswith("Call-ID:"))
        writer.write(f"SIP/2.0 501 Not Implemented\r\n{call_id}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    for handler, expected in ((answer, "answered a SIP OPTIONS with 501 Not Implemented"), (hang_up, None)):
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        check = doctor._reach_check(config.TrunkConfig(name="t", port=port, transport="tcp"), 2.0)
        try:
            if expected:
                assert expected in await check()
            else:
                with pytest.raises(doctor.Problem, match="closed the connection without answering"):
                    await check()
        finally:
            server.close()
            await server.wait_closed()


def test_a_ring_timer_that_outlasts_timer_b_is_fine() -> None:
    assert doctor.ring_timer_concern(30, 8) is None


@pytest.mark.parametrize(("ring", "timer_b"), [(8, 8), (6, 8)])
def test_a_ring_timer_within_timer_b_hides_a_dead_trunk(ring: float, timer_b: float) -> None:
    concern = doctor.ring_timer_concern(ring, timer_b)
    assert concern is not None
    assert "verification.ring_timeout_seconds" in concern
    assert "no_answer" in concern
