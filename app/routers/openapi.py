"""What ``/openapi.json`` (and so ``/docs``) tells an ATS admin about each route.

The routes read their raw bodies themselves (signatures cover the bytes as sent), so FastAPI
sees no body parameter and would document none. This module supplies, from the same typed
wire models the routes parse with and the same sample builders ``hirehook send`` posts:

* the request body schema of each event route, its ``$defs`` hoisted into
  ``components/schemas`` under a per-ATS prefix (two ATSs may both have a ``Link``);
* one example per event type;
* every answer the route can give, with its exact body shape and headers;
* the authentication each route needs, as OpenAPI security schemes.

The shapes are each ATS's and live beside its router; this module holds what they share.

:func:`build` then removes FastAPI's automatic 422, which no route ever sends: a request
FastAPI itself refuses is answered 400 in the route's own error shape (``common.error_route``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field, TypeAdapter
from pydantic.json_schema import SkipJsonSchema

Responses = dict[int | str, dict[str, Any]]

# Schemas referenced by the routes' openapi_extra, merged into components by build().
_COMPONENTS: dict[str, dict[str, Any]] = {}


def _register(name: str, schema: dict[str, Any]) -> None:
    if _COMPONENTS.get(name, schema) != schema:
        raise ValueError(f"two different schemas are named {name}")
    _COMPONENTS[name] = schema


def hoisted(prefix: str, adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """``adapter``'s validation schema, its ``$defs`` moved to components as ``<prefix><Name>``."""
    schema = adapter.json_schema(
        mode="validation", ref_template=f"#/components/schemas/{prefix}{{model}}"
    )
    for name, sub in schema.pop("$defs", {}).items():
        _register(prefix + name, sub)
    return schema


def component(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A reference to ``schema``, registered as the component ``name``."""
    _register(name, schema)
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(
    schema: Mapping[str, Any],
    examples: Mapping[str, Any],
    description: str,
    *,
    required: bool = True,
) -> dict[str, Any]:
    """``openapi_extra`` for a JSON request body with one named example per event type."""
    return {
        "requestBody": {
            "required": required,
            "description": description,
            "content": {
                "application/json": {
                    "schema": dict(schema),
                    "examples": {
                        name: {"summary": name, "value": value} for name, value in examples.items()
                    },
                }
            },
        }
    }


# --- Answers ------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable reason, e.g. `unauthorized`, `bad_json`.")
    message: str = Field(description="What went wrong and what to do, for a person.")
    detail: str | SkipJsonSchema[None] = Field(
        default=None, description="More detail, present only when it differs from `message`."
    )


class DefaultError(BaseModel):
    """Every refusal of the routes whose sender expects no shape of its own."""

    error: ErrorDetail


RECORD_HEADERS: dict[str, Any] = {
    "hirehook-record-id": {
        "description": "The stored record's id (comma-separated for several).",
        "schema": {"type": "string"},
    },
    "hirehook-duplicate": {
        "description": "`true` when this is a repeat of an event already recorded; the first "
        "answer is replayed.",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
_RETRY_AFTER: dict[str, Any] = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    }
}

# What each status means, worded once for the routes answering in the default error shape.
_DEFAULT_MEANINGS: dict[int, str] = {
    400: "Malformed JSON, invalid UTF-8, not a JSON object, nested too deep, or a corrupt "
    "gzip/deflate body; the message says what.",
    401: "Missing, wrong or stale signature, or an unknown tenant (the same answer for all).",
    408: "The body did not finish arriving within the request budget; retry.",
    413: "Body over the size limit, or decompressed body over its limit or ratio.",
    415: "A Content-Encoding other than gzip, deflate or identity.",
    429: "Too many failed authentications from this address; retry after Retry-After.",
    503: "The event could not be committed; nothing was accepted; retry after Retry-After.",
}


def accepted(status: int, model: type[BaseModel], description: str) -> Responses:
    """A success answer with the record headers every event answer carries."""
    return {status: {"model": model, "description": description, "headers": RECORD_HEADERS}}


def refusals(
    statuses: Iterable[int],
    model: type[BaseModel] = DefaultError,
    meanings: Mapping[int, str] | None = None,
) -> Responses:
    """The refusals a route can send, each in ``model``'s shape (429 and 503 with Retry-After)."""
    words = {**_DEFAULT_MEANINGS, **(meanings or {})}
    out: Responses = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": model, "description": words[status]}
        if status in (429, 503):
            entry["headers"] = _RETRY_AFTER
        out[status] = entry
    return out


def event_answers(
    model: type[BaseModel],
    description: str,
    meanings: Mapping[int, str] | None = None,
    *,
    status: int = 200,
) -> Responses:
    """The answers of an event route that answers in the default error shape: ``model`` on
    success and every refusal such a route can send."""
    return {
        **accepted(status, model, description),
        **refusals((400, 401, 408, 413, 415, 429, 503), meanings=meanings),
    }


def hoisted_model(prefix: str, model: type[BaseModel]) -> dict[str, Any]:
    """A reference to ``model``'s schema, registered as ``<prefix><Model>``."""
    schema = hoisted(prefix, TypeAdapter(model))
    return component(prefix + model.__name__, schema)


# --- Security schemes ---------------------------------------------------------------------

# Each router registers the schemes its routes name (security_schemes), as the models above.
_SCHEMES: dict[str, dict[str, Any]] = {
    "adminKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An admin API key (`hh_admin_...`), made with `hirehook admin-keys create`.",
    },
}


def header_scheme(name: str, description: str) -> dict[str, Any]:
    """A security scheme carried in the request header ``name``."""
    return {"type": "apiKey", "in": "header", "name": name, "description": description}


def security_schemes(**schemes: dict[str, Any]) -> None:
    """Register the security schemes a router's routes name, for :func:`build`."""
    for name, scheme in schemes.items():
        if _SCHEMES.get(name, scheme) != scheme:
            raise ValueError(f"two different security schemes are named {name}")
        _SCHEMES[name] = scheme


def security(*alternatives: Iterable[str]) -> dict[str, Any]:
    """``openapi_extra`` requiring any one of ``alternatives`` (each a set of schemes)."""
    return {"security": [{name: [] for name in names} for names in alternatives]}


# --- The document -------------------------------------------------------------------------

# The sources' tags come first, from the registry (app.main passes them to build).
TAGS: list[dict[str, str]] = [
    {"name": "Operations", "description": "Health checks for load balancers; not for senders."},
    {
        "name": "admin",
        "description": "Operators: tenants, connections, records, replay, dead "
        "letters and statistics, behind admin API keys.",
    },
]


def build(app: FastAPI, source_tags: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """The app's OpenAPI document (built once): no 422, hoisted models, security schemes."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=[{"name": n, "description": d} for n, d in source_tags] + TAGS,
    )
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            # FastAPI documents a 422 for every route with parameters; none sends it.
            operation.get("responses", {}).pop("422", None)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for name, schema in _COMPONENTS.items():
        if schemas.get(name, schema) != schema:
            raise ValueError(f"two different schemas are named {name}")
        schemas[name] = schema
    components["securitySchemes"] = dict(_SCHEMES)
    app.openapi_schema = doc
    return doc
