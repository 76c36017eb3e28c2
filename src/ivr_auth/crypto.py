"""Codes and API keys: made at random, kept only as keyed hashes.

Every key is derived from the one server secret (config ``server_secret``)
with HMAC-SHA256 and a purpose label, so a leaked hash of one kind says
nothing about another. A code is also kept sealed (AES-GCM, bound to its
request id) while its request is open, because the create response must be
replayable under the same Idempotency-Key and the voice flow reads the code
aloud; the seal is wiped when the request ends. Nothing here logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ivr_auth import errors

API_KEY_PREFIX = "ivra"
# Operators' dashboard tokens: the same shape, another marker and table.
OPERATOR_TOKEN_PREFIX = "ivrop"
MIN_SECRET_LENGTH = 32


def _derive(secret: bytes, purpose: str) -> bytes:
    return hmac.new(secret, f"ivr-auth/{purpose}".encode(), hashlib.sha256).digest()


@dataclass(frozen=True, repr=False)
class Keys:
    code_key: bytes
    seal_key: bytes
    api_key_key: bytes
    request_key: bytes
    session_key: bytes

    @classmethod
    def from_secret(cls, secret: str) -> Keys:
        if len(secret) < MIN_SECRET_LENGTH:
            raise errors.ConfigError(f"server_secret: must be at least {MIN_SECRET_LENGTH} characters")
        raw = secret.encode()
        return cls(
            _derive(raw, "code"),
            _derive(raw, "seal"),
            _derive(raw, "api-key"),
            _derive(raw, "request"),
            _derive(raw, "dashboard-session"),
        )

    def __repr__(self) -> str:
        return "Keys(<hidden>)"

    def code_hash(self, verification_id: uuid.UUID, code: str) -> bytes:
        return hmac.new(self.code_key, f"{verification_id}:{code}".encode(), hashlib.sha256).digest()

    def code_matches(self, verification_id: uuid.UUID, code: str, stored: bytes) -> bool:
        return hmac.compare_digest(self.code_hash(verification_id, code), bytes(stored))

    def seal(self, owner: uuid.UUID, text: str) -> bytes:
        """``text`` encrypted and bound to ``owner`` (a request's code, a
        tenant's webhook secret): it opens only for the same owner."""
        nonce = os.urandom(12)
        return nonce + AESGCM(self.seal_key).encrypt(nonce, text.encode(), owner.bytes)

    def unseal(self, owner: uuid.UUID, sealed: bytes) -> str:
        blob = bytes(sealed)
        try:
            return AESGCM(self.seal_key).decrypt(blob[:12], blob[12:], owner.bytes).decode()
        except (InvalidTag, ValueError) as exc:  # ValueError: too short to hold a nonce
            raise errors.IvrAuthError("a sealed secret did not open (server_secret changed?)") from exc

    def seal_code(self, verification_id: uuid.UUID, code: str) -> bytes:
        return self.seal(verification_id, code)

    def open_code(self, verification_id: uuid.UUID, sealed: bytes) -> str:
        return self.unseal(verification_id, sealed)

    def api_key_hash(self, api_key: str) -> bytes:
        return hmac.new(self.api_key_key, api_key.encode(), hashlib.sha256).digest()

    def session_tag(self, payload: str) -> str:
        """The signature of a dashboard session cookie's payload."""
        digest = hmac.new(self.session_key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def request_hash(self, body: bytes) -> bytes:
        # Keyed: a body may carry the client's own code, and a plain hash of a
        # short code next to a stored phone number could be searched out.
        return hmac.new(self.request_key, body, hashlib.sha256).digest()


def new_api_key(marker: str = API_KEY_PREFIX) -> tuple[str, str]:
    """A new key and its lookup prefix: ``ivra_<prefix>_<secret>`` (or
    ``ivrop_...`` for an operator's token)."""
    prefix = base64.b32encode(os.urandom(5)).decode().lower()
    return f"{marker}_{prefix}_{secrets.token_urlsafe(32)}", prefix


_PREFIX = re.compile(r"[a-z2-7]{8}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{32,64}")


def api_key_prefix(api_key: str, marker: str = API_KEY_PREFIX) -> str | None:
    """The lookup prefix of a key shaped like ``new_api_key(marker)``'s, else None."""
    parts = api_key.split("_", 2)
    if len(parts) != 3 or parts[0] != marker:
        return None
    if not _PREFIX.fullmatch(parts[1]) or not _SECRET.fullmatch(parts[2]):
        return None
    return parts[1]


def generate_code(length: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(length))


def generate_secret() -> str:
    return secrets.token_urlsafe(48)
