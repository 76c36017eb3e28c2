"""The committed ivr-auth.yaml says it lists every key with its default:
hold it to that, key by key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ivr_auth import config

ROOT = Path(__file__).resolve().parents[2]
# Shown commented out in the file: a list of trunks replaces the single
# `trunk` section, and the base directory is where the file itself lies.
NOT_LISTED = {"trunks", "base_dir"}


def _committed() -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "ivr-auth.yaml").read_text())
    assert isinstance(raw, dict)
    return raw


def _differences(found: Any, default: Any, path: str) -> list[str]:
    if isinstance(default, config.Section):
        return [
            line
            for name in type(default).model_fields
            for line in _differences(getattr(found, name), getattr(default, name), f"{path}.{name}".lstrip("."))
        ]
    return [] if found == default else [f"{path}: the file says {found!r}, the code's default is {default!r}"]


def _missing(raw: dict[str, Any], default: Any, path: str) -> list[str]:
    out = []
    for name in type(default).model_fields:
        key = f"{path}.{name}".lstrip(".")
        if key in NOT_LISTED:
            continue
        if name not in raw:
            out.append(key)
            continue
        value = getattr(default, name)
        if isinstance(value, config.Section):
            out += _missing(raw[name] or {}, value, key)
    return out


def test_every_value_in_the_committed_file_is_the_codes_default() -> None:
    assert _differences(config.from_mapping(_committed()), config.Config(), "") == []


def test_the_committed_file_lists_every_key() -> None:
    assert _missing(_committed(), config.Config(), "") == []
