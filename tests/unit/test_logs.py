from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from ivr_auth import config, errors, logs


def record(msg: str = "hello", *args: object, exc: bool = False, **extra: Any) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad number +819012345678")
        except ValueError:
            exc_info = sys.exc_info()
    out = logging.LogRecord("ivr_auth.flows", logging.INFO, __file__, 1, msg, args, exc_info)
    out.__dict__.update(extra)
    return out


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("+819012345678", "+81********78"),
        ("called +819012345678.", "called +81********78."),
        ("+81-90-1234-5678", "+81********78"),
        ("+14155550123", "+1********23"),
        ("09012345678", "0********78"),
        ("0312345678", "0*******78"),
        ("090-1234-5678", "0********78"),
        ("03-1234-5678", "0*******78"),
        ("PJSIP/+819012345678@trunk", "PJSIP/+81********78@trunk"),
        ("sip:09012345678@carrier", "sip:0********78@carrier"),
        ("from (09012345678)", "from (0********78)"),
    ],
)
def test_phone_numbers_are_masked(text: str, masked: str) -> None:
    assert logs.mask_phones(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "0b8e7a52-1c8d-4e0f-9a51-7d3c2b1a0f9e",
        "01234567-0123-4567-8901-012345678901",
        "00000000-0000-0000-0000-000000000000",
        "ivrauth-0901234567ab-1",
        "ivrauth-09012345678-12",
        "ivrauth-1732404139.123-3",
        "2026-11-23T23:22:19.123Z",
        "2026-11-23T23:22:19+09:00",
        "1732404139.4521",
        "127.0.0.1:5080",
        "[::1]:58088",
        "postgresql://ivr:secret@db:55432/ivr",
        "09-12-2026",
        "0123-4567-8901",
        "+81",
        "+819",
        "012345678",
        "090123456789",
        "prompts/ja/09012345678.wav",
        "already +81********78 and 0********78",
        "cause 16 after 12.5s",
    ],
)
def test_other_numbers_are_left_alone(text: str) -> None:
    assert logs.mask_phones(text) == text


def test_json_line_parses_and_carries_the_fields() -> None:
    rec = record(
        "dialling %s",
        "+819012345678",
        verification_id="0b8e7a52-1c8d-4e0f-9a51-7d3c2b1a0f9e",
        channel_id="ivrauth-1f2e-1",
        node="127.0.0.1:58088",
        trunk="trunk",
        tenant_id="5d0c1c1e-0000-4000-8000-000000000001",
        state="calling",
        attempt=2,
    )
    line = logs.JsonFormatter().format(rec)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["ts"].endswith("Z")
    assert len(entry["ts"]) == len("2026-11-23T23:22:19.123Z")
    assert entry["level"] == "INFO"
    assert entry["logger"] == "ivr_auth.flows"
    assert entry["message"] == "dialling +81********78"
    assert entry["verification_id"] == "0b8e7a52-1c8d-4e0f-9a51-7d3c2b1a0f9e"
    assert entry["channel_id"] == "ivrauth-1f2e-1"
    assert entry["node"] == "127.0.0.1:58088"
    assert (entry["trunk"], entry["state"], entry["attempt"]) == ("trunk", "calling", 2)
    assert "exc_info" not in entry


def test_string_extras_are_masked() -> None:
    entry = json.loads(logs.JsonFormatter().format(record(number="09012345678", to="+819012345678")))
    assert entry["number"] == "0********78"
    assert entry["to"] == "+81********78"


def test_exception_is_one_string_and_masked() -> None:
    line = logs.JsonFormatter().format(record("call failed", exc=True))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["exc_info"].startswith("Traceback")
    assert "ValueError: bad number +81********78" in entry["exc_info"]
    assert "9012345678" not in line


def test_values_json_cannot_encode_become_strings() -> None:
    entry = json.loads(logs.JsonFormatter().format(record(path=io.StringIO)))
    assert entry["path"] == str(io.StringIO)


def test_formatters_add_no_code_or_key() -> None:
    secrets: dict[str, Any] = {"code": "482913", "api_key": "ivr_live_abc123", "password": "hunter2", "token": "t0k3n"}
    plain = record("verified", verification_id="v1")
    for formatter in (logs.JsonFormatter(), logs.TextFormatter()):
        out = formatter.format(plain)
        assert not any(name in out for name in secrets)
        leaked = formatter.format(record("verified", **secrets))
        assert not any(value in leaked for value in secrets.values())
        assert leaked.count(logs.REDACTED) == len(secrets)
    entry = json.loads(logs.JsonFormatter().format(plain))
    assert set(entry) == {"ts", "level", "logger", "message", "verification_id"}


def test_text_line_has_extras_as_key_value() -> None:
    out = logs.TextFormatter().format(
        record("callee hung up", channel_id="ivrauth-1f2e-1", status="no answer", number="090-1234-5678")
    )
    assert out.endswith(
        'ivr_auth.flows: callee hung up channel_id=ivrauth-1f2e-1 status="no answer" number=0********78'
    )


def test_text_puts_the_traceback_below() -> None:
    first, *rest = logs.TextFormatter().format(record("call failed", exc=True)).splitlines()
    assert first.endswith("call failed")
    assert rest[0].startswith("Traceback")
    assert rest[-1] == "ValueError: bad number +81********78"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("log_format", "stream", "formatter"),
    [
        ("json", Tty(), logs.JsonFormatter),
        ("text", io.StringIO(), logs.TextFormatter),
        ("auto", Tty(), logs.TextFormatter),
        ("auto", io.StringIO(), logs.JsonFormatter),
    ],
)
def test_handler_picks_the_format(log_format: str, stream: io.StringIO, formatter: type[logging.Formatter]) -> None:
    assert isinstance(logs.handler(log_format, stream).formatter, formatter)


def test_config_key_and_its_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert config.load(None, {}).logging.format == "auto"
    assert config.load(None, {"IVR_AUTH_LOGGING_FORMAT": "json"}).logging.format == "json"
    with pytest.raises(errors.ConfigError, match=r"logging\.format: 'xml' is not one of auto, json, text"):
        config.load(None, {"IVR_AUTH_LOGGING_FORMAT": "xml"})
