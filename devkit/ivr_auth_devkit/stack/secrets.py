"""Secrets of the embedded stack: made once, kept in the run directory (mode
0600), reused on every start so that the cluster, Asterisk and the stored
hashes keep agreeing."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets as _secrets
from pathlib import Path
from typing import Any

from ivr_auth import errors


@dataclasses.dataclass(frozen=True, repr=False)
class StackSecrets:
    postgres_password: str
    ari_password: str
    # Keys code and API-key hashes when the config sets no server_secret.
    server_secret: str
    # The test SMSC's bind; SMPP 3.4 allows 15 characters of system_id and 8 of password.
    smsc_system_id: str
    smsc_password: str

    def __repr__(self) -> str:
        return "StackSecrets(<hidden>)"


def _fresh() -> dict[str, str]:
    return {
        "postgres_password": _secrets.token_urlsafe(24),
        "ari_password": _secrets.token_urlsafe(24),
        "server_secret": _secrets.token_urlsafe(48),
        "smsc_system_id": "ivr-auth-dev",
        "smsc_password": _secrets.token_hex(4),
    }


def _write(path: Path, values: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(values, fh)
    tmp.replace(path)


def load_or_create(run_dir: Path) -> StackSecrets:
    path = run_dir / "secrets.json"
    run_dir.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {}
    if path.exists():
        try:
            values = json.loads(path.read_text())
        except ValueError as exc:
            raise errors.StackError(f"{path} is damaged; remove the run directory {run_dir} to start afresh") from exc
        if not isinstance(values, dict):
            raise errors.StackError(f"{path} is damaged; remove the run directory {run_dir} to start afresh")
    missing = {k: v for k, v in _fresh().items() if k not in values}
    if missing:
        # A run directory from an older version gains the secrets it lacks.
        values.update(missing)
        _write(path, values)
    names = {f.name for f in dataclasses.fields(StackSecrets)}
    return StackSecrets(**{k: v for k, v in values.items() if k in names})


def load(run_dir: Path) -> StackSecrets | None:
    path = run_dir / "secrets.json"
    return load_or_create(run_dir) if path.exists() else None
