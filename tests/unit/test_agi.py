"""The FastAGI server against AGI transcripts as Asterisk sends them. The
match and check logic is replaced here (it is tested against Postgres in
tests/integration/test_inbound.py): what is under test is reading the
request, the variables set, and that no peer can hang or crash the server."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import pytest

from ivr_auth import agi, config, errors, inbound_match, models, states
from ivr_auth import store as store_mod

REQUEST_ID = uuid.UUID("6f1c1c1e-8d5e-4a43-9c36-0d7a3a1b2c3d")
HEADERS = {
    "agi_network": "yes",
    "agi_network_script": "inbound",
    "agi_request": "agi://127.0.0.1/inbound",
    "agi_channel": "PJSIP/trunk-00000001",
    "agi_language": "en",
    "agi_type": "PJSIP",
    "agi_uniqueid": "1700000000.42",
    "agi_callerid": "09012345678",
    "agi_calleridname": "unknown",
    "agi_dnid": "0501234567",
    "agi_context": "ivr-auth-agi",
    "agi_extension": "0501234567",
    "agi_priority": "2",
    "agi_arg_1": "0501234567",
}
SET_VARIABLE = re.compile(r'^SET VARIABLE (\w+) "((?:[^"\\]|\\.)*)"$')


def verification(**changes: Any) -> models.Verification:
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    values: dict[str, Any] = {
        "id": REQUEST_ID,
        "tenant_id": uuid.uuid4(),
        "method": "inbound",
        "phone": "+819012345678",
        "line_type": "mobile",
        "code_hash": b"",
        "code_sealed": None,
        "code_length": 6,
        "language": "ja",
        "reference": None,
        "callback_url": None,
        "status": states.Status.QUEUED,
        "reason": None,
        "code_attempts": 0,
        "max_code_attempts": 3,
        "call_attempts": 0,
        "max_call_attempts": 1,
        "idempotency_key": None,
        "request_hash": None,
        "created_at": now,
        "updated_at": now,
        "expires_at": now,
        "next_attempt_at": now,
        "lease_owner": None,
        "lease_expires_at": None,
        "node": None,
        "channel_id": None,
        "answered_at": None,
        "finished_at": None,
        "last_cause": None,
        "last_cause_txt": None,
    }
    values.update(changes)
    return models.Verification(**values)


class Logic:
    """Stands in for inbound_match.match_call / check_code and records their calls."""

    def __init__(self) -> None:
        self.match: inbound_match.Match | Exception = inbound_match.Match(inbound_match.Result.NOT_FOUND, "ja")
        self.check: tuple[inbound_match.CheckResult, models.Verification | None] | Exception = (
            inbound_match.CheckResult.WRONG_CODE,
            verification(code_attempts=1),
        )
        self.calls: list[dict[str, Any]] = []

    async def match_call(self, store: object, cfg: object, **kwargs: Any) -> inbound_match.Match:
        self.calls.append(kwargs)
        if isinstance(self.match, Exception):
            raise self.match
        return self.match

    async def check_code(
        self, store: object, verification_id: uuid.UUID, code: str, *, source: str
    ) -> tuple[inbound_match.CheckResult, models.Verification | None]:
        self.calls.append({"verification_id": verification_id, "code": code, "source": source})
        if isinstance(self.check, Exception):
            raise self.check
        return self.check


@pytest.fixture
def logic(monkeypatch: pytest.MonkeyPatch) -> Logic:
    fake = Logic()
    monkeypatch.setattr(inbound_match, "match_call", fake.match_call)
    monkeypatch.setattr(inbound_match, "check_code", fake.check_code)
    return fake


@pytest.fixture
def read_timeout() -> float:
    return 10.0


@pytest.fixture
async def server(read_timeout: float) -> AsyncIterator[agi.AgiServer]:
    cfg = config.with_overrides(
        config.from_mapping({"server_secret": "x" * 40}), agi={"read_timeout_seconds": read_timeout}
    )
    srv = agi.AgiServer(cfg, cast(store_mod.Store, object()), port=0)
    await srv.start()
    yield srv
    await srv.stop()


def request_block(headers: Mapping[str, str]) -> bytes:
    return "".join(f"{name}: {value}\n" for name, value in headers.items()).encode() + b"\n"


def variables(commands: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for command in commands:
        m = SET_VARIABLE.match(command)
        assert m, command
        out[m[1]] = re.sub(r"\\(.)", r"\1", m[2])
    return out


async def converse(port: int, headers: Mapping[str, str], answers: tuple[str, ...] = ()) -> list[str]:
    """Play Asterisk: send the request, answer each command (``answers`` in
    turn, then ``200 result=1``) until the server closes; the commands."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_block(headers))
    commands: list[str] = []
    try:
        while line := await asyncio.wait_for(reader.readline(), 2):
            commands.append(line.decode().rstrip("\n"))
            answer = answers[len(commands) - 1] if len(commands) <= len(answers) else "200 result=1"
            writer.write(answer.encode() + b"\n")
    finally:
        writer.close()
        await writer.wait_closed()
    return commands


async def until_idle(server: agi.AgiServer, within: float = 1.0) -> None:
    async with asyncio.timeout(within):
        while server._clients:
            await asyncio.sleep(0.01)


# --- inbound -----------------------------------------------------------------


async def test_inbound_verified(server: agi.AgiServer, logic: Logic) -> None:
    logic.match = inbound_match.Match(
        inbound_match.Result.VERIFIED, "en", verification(language="en"), reject_unanswered=True
    )

    commands = await converse(server.port, HEADERS)

    assert variables(commands) == {
        "IVRAUTH_ID": str(REQUEST_ID),
        "IVRAUTH_LANGUAGE": "en",
        "IVRAUTH_CODE_LENGTH": "",
        "IVRAUTH_MISSED_CALL": "1",
        "IVRAUTH_RESULT": "verified",
    }
    assert logic.calls == [
        {
            "did": "0501234567",
            "caller": "09012345678",
            "source": "agi",
            "channel_id": "1700000000.42",
        }
    ]


async def test_inbound_code_required_gives_the_code_length_and_sets_the_result_last(
    server: agi.AgiServer, logic: Logic
) -> None:
    logic.match = inbound_match.Match(inbound_match.Result.CODE_REQUIRED, "ja", verification(code_length=8))

    commands = await converse(server.port, HEADERS)

    assert variables(commands) == {
        "IVRAUTH_ID": str(REQUEST_ID),
        "IVRAUTH_LANGUAGE": "ja",
        "IVRAUTH_CODE_LENGTH": "8",
        "IVRAUTH_MISSED_CALL": "0",
        "IVRAUTH_RESULT": "code_required",
    }
    assert commands[-1].startswith("SET VARIABLE IVRAUTH_RESULT ")


@pytest.mark.parametrize("result", [inbound_match.Result.ANONYMOUS, inbound_match.Result.NOT_FOUND])
async def test_inbound_without_a_request(server: agi.AgiServer, logic: Logic, result: inbound_match.Result) -> None:
    logic.match = inbound_match.Match(result, "ja")

    commands = await converse(server.port, {**HEADERS, "agi_callerid": "unknown"})

    assert variables(commands) == {
        "IVRAUTH_ID": "",
        "IVRAUTH_LANGUAGE": "ja",
        "IVRAUTH_CODE_LENGTH": "",
        "IVRAUTH_MISSED_CALL": "0",
        "IVRAUTH_RESULT": result.value,
    }
    # Asterisk's "unknown" goes to the logic as it is: it reads it as withheld.
    assert logic.calls[0]["caller"] == "unknown"


@pytest.mark.parametrize(
    ("changes", "did"),
    [
        ({"agi_arg_1": "0312345678"}, "0312345678"),
        ({"agi_arg_1": ""}, "0501234567"),
        ({"agi_arg_1": None}, "0501234567"),
        ({"agi_arg_1": None, "agi_dnid": "unknown", "agi_extension": "0509999999"}, "0509999999"),
    ],
)
async def test_inbound_did_is_the_argument_else_dnid_else_extension(
    server: agi.AgiServer, logic: Logic, changes: dict[str, str | None], did: str
) -> None:
    headers = {k: v for k, v in {**HEADERS, **changes}.items() if v is not None}

    await converse(server.port, headers)

    assert logic.calls[0]["did"] == did


# --- check -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "found", "left"),
    [
        (inbound_match.CheckResult.VERIFIED, verification(status=states.Status.VERIFIED, code_attempts=1), "2"),
        (inbound_match.CheckResult.WRONG_CODE, verification(code_attempts=2), "1"),
        (inbound_match.CheckResult.FAILED, verification(status=states.Status.FAILED, code_attempts=3), "0"),
        (inbound_match.CheckResult.CLOSED, None, ""),
        (inbound_match.CheckResult.NOT_FOUND, None, ""),
    ],
)
async def test_check(
    server: agi.AgiServer,
    logic: Logic,
    result: inbound_match.CheckResult,
    found: models.Verification | None,
    left: str,
) -> None:
    logic.check = (result, found)
    headers = {**HEADERS, "agi_network_script": "check", "agi_arg_1": str(REQUEST_ID), "agi_arg_2": "123456"}

    commands = await converse(server.port, headers)

    assert variables(commands) == {"IVRAUTH_ATTEMPTS_LEFT": left, "IVRAUTH_RESULT": result.value}
    assert logic.calls == [{"verification_id": REQUEST_ID, "code": "123456", "source": "agi"}]


async def test_check_with_nothing_keyed_checks_an_empty_code(server: agi.AgiServer, logic: Logic) -> None:
    # Read() timed out: Asterisk still sends the argument, empty.
    block = request_block({**HEADERS, "agi_network_script": "check", "agi_arg_1": str(REQUEST_ID)})
    block = block.replace(b"\n\n", b"\nagi_arg_2: \n\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(block)
    while await asyncio.wait_for(reader.readline(), 2):
        writer.write(b"200 result=1\n")
    writer.close()
    await writer.wait_closed()

    assert logic.calls == [{"verification_id": REQUEST_ID, "code": "", "source": "agi"}]


@pytest.mark.parametrize("raw_id", ["not-a-uuid", "", "6f1c1c1e-8d5e-4a43-9c36"])
async def test_check_with_a_malformed_id_is_not_found(server: agi.AgiServer, logic: Logic, raw_id: str) -> None:
    headers = {**HEADERS, "agi_network_script": "check", "agi_arg_1": raw_id, "agi_arg_2": "123456"}

    commands = await converse(server.port, headers)

    assert variables(commands) == {"IVRAUTH_ATTEMPTS_LEFT": "", "IVRAUTH_RESULT": "not_found"}
    assert logic.calls == []


# --- failures ----------------------------------------------------------------


async def test_unknown_route_is_an_error(server: agi.AgiServer, logic: Logic, caplog: pytest.LogCaptureFixture) -> None:
    commands = await converse(server.port, {**HEADERS, "agi_network_script": "verify"})

    assert variables(commands) == {"IVRAUTH_RESULT": "error"}
    assert logic.calls == []
    assert "unknown route 'verify'" in caplog.text


async def test_an_exception_in_the_logic_sets_error_and_touches_no_other_request(
    server: agi.AgiServer, logic: Logic, caplog: pytest.LogCaptureFixture
) -> None:
    logic.match = errors.StoreUnavailable()

    failed = await converse(server.port, HEADERS)
    logic.match = inbound_match.Match(inbound_match.Result.NOT_FOUND, "ja")
    after = await converse(server.port, HEADERS)

    assert variables(failed) == {"IVRAUTH_RESULT": "error"}
    assert variables(after)["IVRAUTH_RESULT"] == "not_found"
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "PJSIP/trunk-00000001" in record.getMessage()
    assert record.__dict__["channel_id"] == "1700000000.42"
    assert record.exc_info is not None


async def test_the_code_is_never_logged(server: agi.AgiServer, logic: Logic, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {**HEADERS, "agi_network_script": "check", "agi_arg_1": str(REQUEST_ID), "agi_arg_2": "918273"}

    await converse(server.port, headers)

    assert caplog.records
    assert "918273" not in caplog.text


@pytest.mark.parametrize("answer", ["HANGUP", "200 result=1 (hangup)", "511 Command Not Permitted on a dead channel"])
async def test_a_hangup_answer_stops_the_request(
    server: agi.AgiServer, logic: Logic, caplog: pytest.LogCaptureFixture, answer: str
) -> None:
    caplog.set_level(logging.INFO)
    logic.match = inbound_match.Match(inbound_match.Result.VERIFIED, "ja", verification())

    commands = await converse(server.port, HEADERS, answers=("200 result=1", answer))

    assert len(commands) == 2
    assert "hung up" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_refused_command_stops_the_request(
    server: agi.AgiServer, logic: Logic, caplog: pytest.LogCaptureFixture
) -> None:
    commands = await converse(server.port, HEADERS, answers=("510 Invalid or unknown command",))

    assert len(commands) == 1
    assert "SET VARIABLE IVRAUTH_ID" in caplog.text


async def test_a_connection_closed_mid_request_touches_no_other(server: agi.AgiServer, logic: Logic) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request_block(HEADERS))
    assert (await asyncio.wait_for(reader.readline(), 2)).startswith(b"SET VARIABLE IVRAUTH_ID ")
    writer.close()
    await writer.wait_closed()
    await until_idle(server)

    assert variables(await converse(server.port, HEADERS))["IVRAUTH_RESULT"] == "not_found"


async def test_a_peer_closing_before_the_blank_line_is_dropped_at_once(server: agi.AgiServer, logic: Logic) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network: yes\nagi_network_script: inbound\n")
    writer.write_eof()

    # The read timeout is 10 s: only seeing the end of file ends it this soon.
    assert await asyncio.wait_for(reader.read(), 1) == b""
    await until_idle(server)
    writer.close()
    await writer.wait_closed()
    assert logic.calls == []


@pytest.mark.parametrize("read_timeout", [0.2])
async def test_a_silent_peer_is_closed_after_the_read_timeout(
    server: agi.AgiServer, logic: Logic, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)

    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()
    await writer.wait_closed()
    assert "sent no request within 0.2s" in caplog.text


async def test_an_oversized_request_is_refused(server: agi.AgiServer, logic: Logic) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_arg_1: " + b"9" * (agi.MAX_REQUEST_BYTES + 1))

    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()
    await writer.wait_closed()
    assert logic.calls == []


async def test_stop_closes_open_connections_promptly(server: agi.AgiServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network: yes\n")
    await asyncio.sleep(0.05)

    async with asyncio.timeout(1):
        await server.stop()
        assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


async def test_stop_lets_a_request_being_answered_finish_then_cuts_it(
    server: agi.AgiServer, logic: Logic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agi, "STOP_GRACE_SECONDS", 0.2)
    stuck = asyncio.Event()

    async def never_answers(store: object, cfg: object, **kwargs: Any) -> inbound_match.Match:
        stuck.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(inbound_match, "match_call", never_answers)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request_block(HEADERS))
    await asyncio.wait_for(stuck.wait(), 1)

    async with asyncio.timeout(2):
        await server.stop()
        assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


def test_values_are_quoted_for_the_agi_parser() -> None:
    assert agi.quote("ja") == '"ja"'
    assert agi.quote('a "b" c\\d') == '"a \\"b\\" c\\\\d"'
    assert agi.quote("line\nbreak\r") == '"line break "'


def test_headers_keep_empty_values_and_colons() -> None:
    headers = agi.parse_headers(b"agi_arg_1: \nagi_request: agi://127.0.0.1:4573/check\nnoise\n\n")

    assert headers == {"agi_arg_1": "", "agi_request": "agi://127.0.0.1:4573/check"}
