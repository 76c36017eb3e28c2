"""Log formats: one JSON object per line for production, ``key=value`` text
for a terminal. The CLI installs one of them; nothing else configures logging.

Both formatters mask anything that looks like a phone number in the message,
string ``extra=`` fields and tracebacks, as a safety net behind the
``phone.mask`` calls at the places that log numbers.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from typing import Any, TextIO

from ivr_auth import config, phone

FORMATS = config.LOG_FORMATS

# ``extra=`` keys whose values are never written, whatever a caller passes.
SECRET_FIELDS = frozenset(
    {"code", "api_key", "authorization", "password", "secret", "server_secret", "token", "webhook_secret"}
)
REDACTED = "[redacted]"

# Attributes every LogRecord has; the rest came in through ``extra=``.
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

# E.164 (+819012345678, +81-90-1234-5678) or a Japanese national number
# (09012345678, 090-1234-5678, 03-1234-5678). Not inside a longer token:
# a number glued to letters, dashes or dots is part of a UUID, a channel id
# (ivrauth-<hex>-N), an address or a file name.
_PHONE = re.compile(
    r"(?<![\w+\-.])"
    r"(?:\+[1-9](?:-?\d){7,14}|0\d{9,10}|0\d{1,4}-\d{1,4}-\d{3,4})"
    r"(?![\w+]|[-.]\w)"
)


def _mask_match(match: re.Match[str]) -> str:
    text = match.group()
    compact = text.replace("-", "")
    if text.startswith("+"):
        return phone.mask(compact)
    digits = len(compact)
    if not 10 <= digits <= 11:
        return text  # 0-something with dashes but not a phone number's length
    return "0" + "*" * (digits - 3) + compact[-2:]


def mask_phones(text: str) -> str:
    """``text`` with every phone-number-looking run masked in ``phone.mask``'s style."""
    return _PHONE.sub(_mask_match, text)


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of ``record``: strings masked, secrets redacted."""
    out: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if key in _RECORD_FIELDS or key.startswith("_"):
            continue
        if key.lower() in SECRET_FIELDS:
            out[key] = REDACTED
        elif isinstance(value, str):
            out[key] = mask_phones(value)
        else:
            out[key] = value
    return out


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    parts = []
    if record.exc_info:
        parts.append(formatter.formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return mask_phones("\n".join(parts)) if parts else None


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, the extras, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_phones(record.getMessage()),
        }
        for key, value in extras(record).items():
            entry.setdefault(key, value)
        exc = _exception_text(self, record)
        if exc is not None:
            entry["exc_info"] = exc
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger: message key=value ...`` with the traceback below."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {mask_phones(record.getMessage())}"
        fields = " ".join(f"{key}={_text_value(value)}" for key, value in extras(record).items())
        if fields:
            line = f"{line} {fields}"
        exc = _exception_text(self, record)
        return f"{line}\n{exc}" if exc is not None else line


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if not text or any(c.isspace() or c in "\"'=" for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def handler(log_format: str, stream: TextIO) -> logging.Handler:
    """A handler writing to ``stream`` in ``log_format``; ``auto`` is text on
    a terminal and JSON otherwise."""
    if log_format == "auto":
        log_format = "text" if stream.isatty() else "json"
    out = logging.StreamHandler(stream)
    out.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    return out
