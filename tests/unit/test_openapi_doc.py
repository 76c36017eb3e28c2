"""The committed OpenAPI document: valid OpenAPI 3.1, every schema in it a
valid JSON Schema, and exactly the routes the application serves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from aiohttp import hdrs

from ivr_auth import config, phone, states
from ivr_auth import store as store_mod
from ivr_auth.api import app as api_app
from ivr_auth.api import openapi

DOC_PATH = Path(openapi.__file__).with_name(openapi.DOCUMENT)
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
DIALECT = "https://json-schema.org/draft/2020-12/schema"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi.document()


def test_served_bytes_are_the_committed_file() -> None:
    assert openapi.raw() == DOC_PATH.read_bytes()


def test_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1.")
    # The OpenAPI 3.1 meta-schema (structure; Schema Objects are checked below).
    schemathesis.openapi.from_dict(doc).validate()


def _schemas(node: object, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Schema Object in the document, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}/{key}"
            if key == "schema" and isinstance(value, dict):
                yield here, value
            elif key == "schemas" and where == "#/components" and isinstance(value, dict):
                yield from ((f"{here}/{name}", schema) for name, schema in value.items())
            else:
                yield from _schemas(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _schemas(value, f"{where}/{i}")


def test_every_schema_is_valid_json_schema(doc: dict[str, Any]) -> None:
    found = dict(_schemas(doc))
    assert "#/components/schemas/Verification" in found
    for where, schema in found.items():
        try:
            jsonschema_rs.meta.validate({"$schema": DIALECT, **schema})
        except jsonschema_rs.ValidationError as exc:
            pytest.fail(f"{where}: {exc}")


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    for ref in set(_refs(doc)):
        assert ref.startswith("#/"), ref
        target: Any = doc
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        assert isinstance(target, dict), ref


def test_every_operation_has_a_unique_id(doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for item in doc["paths"].values() for m, op in item.items() if m in HTTP_METHODS]
    assert len(ids) == len(set(ids))


def test_statuses_are_the_state_machine_s(doc: dict[str, Any]) -> None:
    assert doc["components"]["schemas"]["Status"]["enum"] == [s.value for s in states.Status]


def test_line_types_are_the_phone_module_s(doc: dict[str, Any]) -> None:
    properties = doc["components"]["schemas"]["Verification"]["properties"]
    assert properties["line_type"]["enum"] == list(phone.LINE_TYPES)


def test_paths_and_methods_are_the_app_routes(doc: dict[str, Any]) -> None:
    # Routes are only registered at build time: the store is never opened.
    never_opened = store_mod.Store.from_url("postgresql://db.invalid/ivr_auth", "x" * 40)
    app = api_app.make_app(config.Config(), never_opened, {})
    served = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None
        and route.method != hdrs.METH_HEAD
        # The operators' page and the JSON it reads are not the tenants'
        # API contract (docs/operating.md, "Dashboard").
        and not route.resource.canonical.startswith("/dashboard")
    }
    documented = {(path, method) for path, item in doc["paths"].items() for method in item if method in HTTP_METHODS}
    assert documented == served
