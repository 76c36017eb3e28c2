"""Passwords of the embedded stack: made once, kept in the run directory
(mode 0600), reused on every start so that the cluster and Asterisk agree."""

from __future__ import annotations

import json
import os
import secrets as _secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from ivr_auth import errors


@dataclass(frozen=True)
class StackSecrets:
    postgres_password: str
    ari_password: str


def load_or_create(run_dir: Path) -> StackSecrets:
    path = run_dir / "secrets.json"
    if path.exists():
        try:
            return StackSecrets(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise errors.StackError(f"{path} is damaged; remove the run directory {run_dir} to start afresh") from exc
    run_dir.mkdir(parents=True, exist_ok=True)
    made = StackSecrets(_secrets.token_urlsafe(24), _secrets.token_urlsafe(24))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(made), fh)
    return made


def load(run_dir: Path) -> StackSecrets | None:
    path = run_dir / "secrets.json"
    return load_or_create(run_dir) if path.exists() else None
