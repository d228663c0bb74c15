"""`/openapi.json` as this server answers: the models it runs, and no status code it never sends.

The request schemas name every known model; a server runs those it has (core/catalog.py: the
embedded default only `tiny` until `mochi-1-preview` is synced), so the document is built per
request from the catalog. FastAPI adds a 422 to every operation with parameters; our validation
errors are 400s (webapp/api/responses.py), so it goes, with the schemas only it used.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from core.catalog import KNOWN_MODELS, available_models
from core.settings import Settings


def _set_models(node: Any, models: list[str]) -> None:
    """Every enum of the known models (core/catalog.py) becomes this server's models."""
    if isinstance(node, dict):
        if node.get("enum") == list(KNOWN_MODELS):
            node["enum"] = list(models)
        for value in node.values():
            _set_models(value, models)
    elif isinstance(node, list):
        for value in node:
            _set_models(value, models)


def _drop_null(operation: dict[str, Any]) -> None:
    """A header or query parameter is absent or a string: `Optional[str]` makes FastAPI say it may also
    be null, which a header or query string cannot carry ("null" would be a value), so drop that."""
    for param in operation.get("parameters", []):
        variants = param.get("schema", {}).get("anyOf")
        if isinstance(variants, list):
            kept = [v for v in variants if v.get("type") != "null"]
            if len(kept) == 1:
                param["schema"] = {**{k: v for k, v in param["schema"].items() if k != "anyOf"}, **kept[0]}


# What a created object's id opens: OpenAPI links, so clients and schemathesis's stateful tests
# follow a create to the operations on the new object. create path -> (path parameter, links).
_LINKS = {
    "/v1/videos": ("video_id", {"Retrieve": ("/v1/videos/{video_id}", "get"),
                                "Delete": ("/v1/videos/{video_id}", "delete"),
                                "Content": ("/v1/videos/{video_id}/content", "get"),
                                "Cancel": ("/v1/videos/{video_id}/cancel", "post"),
                                "Events": ("/v1/videos/{video_id}/events", "get")}),
    "/v1/batches": ("batch_id", {"Retrieve": ("/v1/batches/{batch_id}", "get"),
                                 "Content": ("/v1/batches/{batch_id}/content", "get"),
                                 "Cancel": ("/v1/batches/{batch_id}/cancel", "post")}),
}


def _add_links(paths: dict[str, Any]) -> None:
    for create, (param, links) in _LINKS.items():
        response = paths.get(create, {}).get("post", {}).get("responses", {}).get("200")
        if response is not None:
            response["links"] = {name: {"operationRef": f"#/paths/{path.replace('/', '~1')}/{method}",
                                        "parameters": {param: "$response.body#/id"}}
                                 for name, (path, method) in links.items() if method in paths.get(path, {})}


def install(app: FastAPI, settings: Settings) -> None:
    """Replace `app.openapi` with the truthful document (built on each call: models can appear)."""

    def openapi() -> dict[str, Any]:
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for item in doc.get("paths", {}).values():
            for operation in item.values():
                operation.get("responses", {}).pop("422", None)
                _drop_null(operation)
        schemas = doc.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        _set_models(doc.get("paths", {}), available_models(settings))
        _add_links(doc.get("paths", {}))
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
