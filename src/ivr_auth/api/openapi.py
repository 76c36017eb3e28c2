"""The API's OpenAPI 3.1 description: written by hand in ``openapi.json``
beside this module, checked against the routes and the live API by the
tests, and served as it is at ``GET /openapi.json``."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from aiohttp import hdrs, web

DOCUMENT = "openapi.json"
# The document changes only with a release; an hour is stale enough.
CACHE_CONTROL = "public, max-age=3600"


@functools.cache
def raw() -> bytes:
    """The document's bytes, read from the package once."""
    return resources.files("ivr_auth.api").joinpath(DOCUMENT).read_bytes()


def document() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(raw())
    return parsed


async def serve(request: web.Request) -> web.Response:
    return web.Response(body=raw(), content_type="application/json", headers={hdrs.CACHE_CONTROL: CACHE_CONTROL})
