"""Webhook signatures: ``IVR-Auth-Signature: t=<unix>,v1=<hex>``, the hex
HMAC-SHA256 of ``"<t>.<body>"`` under the tenant's webhook secret.

``verify`` is the helper a receiver uses: it needs the raw body bytes as
they arrived (not re-serialised JSON), and refuses a timestamp further than
``tolerance`` seconds from its own clock, so a captured request cannot be
replayed later. Pure functions, no I/O::

    from ivr_auth import signature
    signature.verify(secret, request.headers["IVR-Auth-Signature"], await request.read())
"""

from __future__ import annotations

import hashlib
import hmac
import time

from ivr_auth import errors

HEADER = "IVR-Auth-Signature"
EVENT_ID_HEADER = "IVR-Auth-Event-Id"
DEFAULT_TOLERANCE_SECONDS = 300
SCHEME = "v1"


class InvalidSignature(errors.IvrAuthError):
    """The webhook signature does not verify."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},{SCHEME}={_digest(secret, body, timestamp)}"


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check a received webhook; returns its timestamp, raises
    ``InvalidSignature`` saying why not. Several ``v1=`` values (sent while a
    secret is being rotated) verify when any one matches."""
    if not header:
        raise InvalidSignature(f"no {HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == SCHEME:
            candidates.append(value)
    if timestamp is None:
        raise InvalidSignature("the signature has no timestamp (t=)")
    if not candidates:
        raise InvalidSignature(f"the signature has no {SCHEME}= value")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature(f"the timestamp is {abs(current - timestamp):.0f} s off (tolerance {tolerance:.0f} s)")
    expected = _digest(secret, body, timestamp)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise InvalidSignature("the signature does not match the body")
    return timestamp


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
