"""Request bodies and headers of the public API (v1), checked without I/O.

Every failure is an ``ApiError`` whose message starts with the field it is
about, so a client can fix its request without reading our source. Messages
never repeat a code or a key back: they end up in clients' logs.
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import re
import unicodedata
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import Any, NoReturn

from ivr_auth import channels as channel_list
from ivr_auth import config, errors, phone

METHODS = ("dtmf", "voice", "inbound", "sms")
MIN_CODE_LENGTH = 4
MAX_CODE_LENGTH = 10
MIN_TTL_SECONDS = 30
MAX_CODE_ATTEMPTS = 10
MAX_REFERENCE_LENGTH = 128
MAX_URL_LENGTH = 2048
MAX_IDEMPOTENCY_KEY_LENGTH = 255
JSON_MEDIA_TYPE = "application/json"
JSON_CHARSET = "utf-8"
# Longer than any key we issue; keeps junk headers away from the hashing.
MAX_API_KEY_LENGTH = 256
MAX_FIELD_NAME_ECHO = 64
# GET /v1/verifications/{id}?wait=S: 0 < S <= MAX_WAIT_SECONDS, written as
# a JSON number is (1, 2.5, 1e1), at most MAX_WAIT_CHARS characters.
MAX_WAIT_SECONDS = 60
MAX_WAIT_CHARS = 32
_NUMBER = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?", re.ASCII)

CREATE_FIELDS = (
    "phone",
    "method",
    "code",
    "code_length",
    "language",
    "reference",
    "callback_url",
    "ttl_seconds",
    "max_code_attempts",
    "ask_code",
    "channels",
)
CHECK_FIELDS = ("code",)


class ApiError(errors.IvrAuthError):
    """The request was refused."""

    def __init__(self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclasses.dataclass(frozen=True, repr=False)
class CreateRequest:
    phone: str  # E.164
    line_type: str
    method: str
    # None: the server generates one (and shows it in the response).
    code: str | None
    code_length: int
    language: str
    reference: str | None
    callback_url: str | None
    ttl_seconds: int
    max_code_attempts: int
    # inbound: the caller also keys the code on the call.
    ask_code: bool = False
    # The ordered channels asked for (``method`` is the first's); None: ``method`` alone.
    channels: tuple[channel_list.Step, ...] | None = None

    def __repr__(self) -> str:
        # Never print the code or the full number.
        return f"CreateRequest(phone={phone.mask(self.phone)}, method={self.method}, language={self.language})"


@dataclasses.dataclass(frozen=True, repr=False)
class CheckRequest:
    code: str

    def __repr__(self) -> str:
        return "CheckRequest(code=<hidden>)"


def _invalid(field: str, message: str, code: str = "invalid_field") -> NoReturn:
    raise ApiError(422, code, f"{field}: {message}")


def decode_body(raw: bytes) -> dict[str, Any]:
    """The JSON object in a request body."""
    if not raw.strip():
        raise ApiError(400, "invalid_json", "the request body is empty; expected a JSON object")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json", "the request body is not UTF-8") from exc
    except ValueError as exc:  # JSONDecodeError, NaN, integers too long to read
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ApiError(400, "invalid_json", "the request body is nested too deeply") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", f"the request body must be a JSON object, not {_json_type(body)}")
    return body


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def canonical(body: Mapping[str, Any]) -> bytes:
    """The body as bytes that do not depend on key order or spacing (for
    comparing two requests made under one Idempotency-Key)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _reject_unknown(body: Mapping[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(known))
    if unknown:
        # Cut short: the name is the client's text, echoed into its logs.
        name = unknown[0] if len(unknown[0]) <= MAX_FIELD_NAME_ECHO else unknown[0][:MAX_FIELD_NAME_ECHO] + "..."
        _invalid(name, f"unknown field (known fields: {', '.join(known)})", "unknown_field")


def _required_str(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    if value is None:
        raise ApiError(422, "missing_field", f"{field}: required")
    if not isinstance(value, str):
        _invalid(field, f"expected a string, got {_json_type(value)}")
    return value


def _optional_str(body: Mapping[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        _invalid(field, f"expected a string, got {_json_type(value)}")
    return value


def _optional_int(body: Mapping[str, Any], field: str, low: int, high: int) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    # JSON true is a Python int; a client sending it has a bug we should name.
    if isinstance(value, bool) or not isinstance(value, int):
        _invalid(field, f"expected a whole number, got {_json_type(value)}")
    if not low <= value <= high:
        _invalid(field, f"must be between {low} and {high}, got {value}")
    return value


def _is_code(value: str) -> bool:
    # str.isdigit() would let through other scripts' digits and superscripts.
    return MIN_CODE_LENGTH <= len(value) <= MAX_CODE_LENGTH and all(c in "0123456789" for c in value)


def _code(body: Mapping[str, Any], *, required: bool) -> str | None:
    value = _required_str(body, "code") if required else _optional_str(body, "code")
    if value is not None and not _is_code(value):
        _invalid("code", f"expected {MIN_CODE_LENGTH}-{MAX_CODE_LENGTH} digits (0-9)", "invalid_code")
    return value


def _method(body: Mapping[str, Any]) -> str:
    # A null is as if absent, for both: channels alone gives the method.
    if body.get("method") is None and body.get("channels") is not None:
        return ""  # the first channel's
    value = _required_str(body, "method")
    if value in METHODS:
        return value
    _invalid("method", "expected one of 'dtmf', 'voice', 'inbound', 'sms'", "invalid_method")


def _channels(
    body: Mapping[str, Any], method: str, *, ttl_seconds: int, max_call_attempts: int
) -> tuple[channel_list.Step, ...] | None:
    raw = body.get("channels")
    if raw is None:
        return None
    try:
        steps = channel_list.parse(raw, ttl_seconds=ttl_seconds, max_call_attempts=max_call_attempts)
    except channel_list.InvalidChannels as exc:
        raise ApiError(422, "invalid_channels", str(exc)) from exc
    if method and method != steps[0].channel:
        _invalid(
            "method", f"is {method!r} but channels starts with {steps[0].channel!r}: leave method out", "invalid_method"
        )
    return steps


def _ask_code(body: Mapping[str, Any], method: str) -> bool:
    value = body.get("ask_code")
    if value is None:
        return False
    if not isinstance(value, bool):
        _invalid("ask_code", f"expected true or false, got {_json_type(value)}")
    if value and method != "inbound":
        _invalid("ask_code", "applies to method 'inbound' only (dtmf always asks for the code)")
    return value


def _phone(body: Mapping[str, Any], default_country: str) -> str:
    value = _required_str(body, "phone")
    try:
        return phone.normalize(value, default_country)
    except phone.InvalidPhone as exc:
        raise ApiError(422, "invalid_phone", str(exc)) from exc


def _reference(body: Mapping[str, Any]) -> str | None:
    value = _optional_str(body, "reference")
    if value is None:
        return None
    if len(value) > MAX_REFERENCE_LENGTH:
        _invalid("reference", f"longer than {MAX_REFERENCE_LENGTH} characters")
    # Postgres text cannot hold NUL, and a lone surrogate (JSON "\ud800") is
    # not UTF-8 at all: either would fail in the database, after validation.
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        _invalid("reference", "may not contain control characters or unpaired surrogates")
    return value


def _callback_url(body: Mapping[str, Any]) -> str | None:
    value = _optional_str(body, "callback_url")
    if value is None:
        return None
    if len(value) > MAX_URL_LENGTH:
        _invalid("callback_url", f"longer than {MAX_URL_LENGTH} characters")
    # Spaces and control characters would have to be escaped to be sent at all.
    if not value.isascii() or any(c <= " " or c == "\x7f" for c in value):
        _invalid("callback_url", "may not contain spaces, control or non-ASCII characters (percent-encode them)")
    try:
        parts = urllib.parse.urlsplit(value)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ApiError(422, "invalid_field", f"callback_url: not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https"):
        _invalid("callback_url", "expected an http:// or https:// URL")
    if not parts.hostname:
        _invalid("callback_url", "the URL has no host")
    return value


def choose_language(requested: str | None, e164: str, tenant_default: str | None, cfg: config.Config) -> str:
    """The language asked for, else the tenant's default, else Japanese for a
    Japanese number, else English, else the configured default; only
    configured languages are ever chosen."""
    if requested is not None:
        if requested not in cfg.languages:
            _invalid("language", f"expected one of {', '.join(cfg.languages)}")
        return requested
    # A tenant default that the operator no longer serves is passed over
    # rather than producing calls with no prompts.
    if tenant_default is not None and tenant_default in cfg.languages:
        return tenant_default
    if e164.startswith("+81") and "ja" in cfg.languages:
        return "ja"
    if "en" in cfg.languages:
        return "en"
    return cfg.default_language


def parse_create(body: Mapping[str, Any], cfg: config.Config, *, tenant_language: str | None) -> CreateRequest:
    """The body of ``POST /v1/verifications``."""
    _reject_unknown(body, CREATE_FIELDS)
    e164 = _phone(body, cfg.default_country)
    method = _method(body)
    code = _code(body, required=False)
    code_length = _optional_int(body, "code_length", MIN_CODE_LENGTH, MAX_CODE_LENGTH)
    if code is not None and code_length is not None and code_length != len(code):
        _invalid("code", f"has {len(code)} digits but code_length is {code_length}", "invalid_code")
    if code is not None:
        code_length = len(code)
    language = choose_language(_optional_str(body, "language"), e164, tenant_language, cfg)
    reference = _reference(body)
    ttl = _optional_int(body, "ttl_seconds", MIN_TTL_SECONDS, cfg.verification.max_ttl_seconds)
    attempts = _optional_int(body, "max_code_attempts", 1, MAX_CODE_ATTEMPTS)
    ttl_seconds = ttl if ttl is not None else cfg.verification.ttl_seconds
    steps = _channels(body, method, ttl_seconds=ttl_seconds, max_call_attempts=cfg.verification.max_call_attempts)
    if steps is not None:
        method = steps[0].channel
    return CreateRequest(
        phone=e164,
        line_type=phone.line_type(e164),
        method=method,
        channels=steps,
        code=code,
        code_length=code_length if code_length is not None else cfg.verification.code_length,
        language=language,
        reference=reference,
        callback_url=_callback_url(body),
        ttl_seconds=ttl_seconds,
        max_code_attempts=attempts if attempts is not None else cfg.verification.max_code_attempts,
        ask_code=_ask_code(body, method),
    )


def parse_check(body: Mapping[str, Any]) -> CheckRequest:
    """The body of ``POST /v1/verifications/{id}/check``."""
    _reject_unknown(body, CHECK_FIELDS)
    code = _code(body, required=True)
    assert code is not None
    return CheckRequest(code)


def parse_idempotency_key(values: list[str]) -> str | None:
    """The ``Idempotency-Key`` header (all its occurrences): absent, or one
    value of 1-255 printable ASCII characters."""
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key: send the header once")
    (value,) = values
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY_LENGTH or not all(" " <= c <= "~" for c in value):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key: expected 1-{MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters",
        )
    return value


def parse_wait(values: list[str]) -> float | None:
    """The ``wait`` query parameter (all its occurrences): absent, or seconds
    above 0 and at most ``MAX_WAIT_SECONDS``."""
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, "invalid_field", "wait: send the parameter once")
    (text,) = values
    expected = f"expected seconds, more than 0 and at most {MAX_WAIT_SECONDS} (such as 30 or 2.5)"
    if len(text) > MAX_WAIT_CHARS or not _NUMBER.fullmatch(text):
        raise ApiError(400, "invalid_field", f"wait: {expected}")
    # Decimal: exact, so that 60.0000000000000001 is over the limit, and 1e999999999 is no trouble.
    seconds = decimal.Decimal(text)
    if not 0 < seconds <= MAX_WAIT_SECONDS:
        raise ApiError(400, "invalid_field", f"wait: {expected}; got {text}")
    return float(seconds)


# GET /v1/verifications/{id}?wait=S&until=U: what the wait is for.
UNTIL_VALUES = ("change", "end")


def parse_until(values: list[str], wait: float | None) -> str:
    """The ``until`` query parameter: ``change`` (the default: the next change
    of status) or ``end`` (the request's end, through any statuses on the
    way); only with ``wait``."""
    if not values:
        return "change"
    if wait is None:
        raise ApiError(400, "invalid_field", "until: only with wait")
    if len(values) > 1 or values[0] not in UNTIL_VALUES:
        raise ApiError(400, "invalid_field", "until: expected change or end, once")
    return values[0]


def check_json_content_type(values: list[str]) -> None:
    """The ``Content-Type`` of a request body (all its occurrences): one
    ``application/json``, with no charset or ``charset=utf-8``, in any case.
    Other parameters mean nothing for JSON and are ignored."""
    if not values:
        _unsupported_media_type("missing")
    if len(values) > 1:
        _unsupported_media_type("send the header once")
    media_type, *parameters = values[0].split(";")
    if media_type.strip().lower() != JSON_MEDIA_TYPE:
        _unsupported_media_type(f"{_echo(media_type.strip())} is not accepted")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"')
        # JSON is UTF-8 (RFC 8259 section 8.1), which is how decode_body reads it.
        if name.strip().lower() == "charset" and charset.lower() != JSON_CHARSET:
            _unsupported_media_type(f"charset {_echo(charset)} is not accepted")


def _unsupported_media_type(problem: str) -> NoReturn:
    raise ApiError(
        415,
        "unsupported_media_type",
        f"Content-Type: {problem}; send the body as UTF-8 JSON with Content-Type: {JSON_MEDIA_TYPE}",
    )


def _echo(text: str) -> str:
    """Client text quoted in a message: cut short, printable ASCII only."""
    cut = text if len(text) <= MAX_FIELD_NAME_ECHO else text[:MAX_FIELD_NAME_ECHO] + "..."
    return "'" + "".join(c if " " <= c <= "~" else "?" for c in cut) + "'"


def parse_bearer(values: list[str]) -> str | None:
    """The API key in the ``Authorization`` header (all its occurrences), or
    None when there is no single well-formed ``Bearer`` credential."""
    if len(values) != 1:
        return None
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    # The scheme is case-insensitive (RFC 9110); the key is printable ASCII
    # without spaces, which also keeps undecodable header bytes away from it.
    if scheme.lower() != "bearer" or not 0 < len(token) <= MAX_API_KEY_LENGTH:
        return None
    if not all("!" <= c <= "~" for c in token):
        return None
    return token


def parse_verification_id(text: str) -> uuid.UUID | None:
    """A verification id in its canonical form, or None: one resource, one URL."""
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        return None
    return parsed if str(parsed) == text.lower() else None
