"""Named SQL blocks from queries.sql, read once at import."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


QUERIES = parse(resources.files("ivr_auth.store").joinpath("queries.sql").read_text(encoding="utf-8"))


def query(name: str) -> str:
    return QUERIES[name]
