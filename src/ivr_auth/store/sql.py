"""Named SQL blocks: each of the store's ``.sql`` files holds queries that
start with ``-- name: NAME``, parameters written ``%(name)s``. A repository
loads its file once, at import."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


class Queries(dict[str, str]):
    """The named queries of one file; an unknown name is a ``KeyError`` naming the file."""

    def __init__(self, filename: str, queries: dict[str, str]) -> None:
        super().__init__(queries)
        self.filename = filename

    def __missing__(self, name: str) -> str:
        raise KeyError(f"no query named {name!r} in {self.filename}")


def parse(text: str) -> dict[str, str]:
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


def load(filename: str) -> Queries:
    """The queries of ``filename``, one of the store's ``.sql`` files."""
    text = resources.files("ivr_auth.store").joinpath(filename).read_text(encoding="utf-8")
    return Queries(filename, parse(text))
