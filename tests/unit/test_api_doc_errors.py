"""The error table of the API's documentation (docs/api.md) names every
error code the API can answer with, under the status it comes with: read
off the code that raises them."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import http_exceptions

from ivr_auth import limits
from ivr_auth.api import app as api_app

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "src" / "ivr_auth"
API_DOC = ROOT / "docs" / "api.md"
SOURCES = [*sorted((SERVICE / "api").glob("*.py")), SERVICE / "limits.py"]
# ApiError(422, "invalid_phone", ...), error_response(503, "unavailable", ...)
RAISED = re.compile(r"(?:ApiError|error_response)\(\s*(\d{3}),\s*\"([a-z_]+)\"")
# _invalid("code", "...", "invalid_code"): schemas' 422s
INVALID = re.compile(r"_invalid\((?:[^\"()]|\"[^\"]*\")*?,\s*\"([a-z_]+)\"\)")


def _table() -> set[tuple[int, str]]:
    text = API_DOC.read_text(encoding="utf-8")
    table = text[text.index("| status | code | when |") :]
    table = table[: table.index("\n\n")]
    pairs = set()
    for status, codes in re.findall(r"^\| (\d{3}) \| ([^|]+) \|", table, re.MULTILINE):
        pairs |= {(int(status), code) for code in re.findall(r"`([a-z_]+)`", codes)}
    return pairs


def _answered() -> set[tuple[int, str]]:
    found: set[tuple[int, str]] = set()
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        found |= {(int(status), code) for status, code in RAISED.findall(text)}
        found |= {(422, code) for code in INVALID.findall(text)}
    found |= set(api_app.HTTP_ERROR_CODES.items())
    found |= {(r.status, r.code) for r in (limits.RateLimited, limits.DestinationNotAllowed)}
    found |= {(e.status, e.code) for e in (api_app.parse_error(exc) for exc in _parser_errors())}
    return found


def _parser_errors() -> list[http_exceptions.HttpProcessingError]:
    errors = http_exceptions
    return [
        errors.LineTooLong("GET /...", api_app.MAX_REQUEST_LINE_BYTES),
        errors.LineTooLong("X-A: ...", api_app.MAX_HEADER_FIELD_BYTES),
        errors.BadHttpMessage("Too many headers received"),
        errors.BadHttpMessage("not HTTP"),
    ]


def test_the_scan_finds_the_codes_it_is_meant_to() -> None:
    answered = _answered()
    for pair in [
        (422, "invalid_phone"),
        (422, "invalid_code"),
        (415, "unsupported_media_type"),
        (431, "headers_too_large"),
    ]:
        assert pair in answered


def test_every_error_the_api_answers_is_in_the_api_doc_table() -> None:
    missing = sorted(_answered() - _table())
    assert missing == [], f"not in the error table of {API_DOC.relative_to(ROOT)}: {missing}"
