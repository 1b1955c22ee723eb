"""What ``/openapi.json`` (and so ``/docs``) tells an ATS admin about each route.

The routes read their raw bodies themselves (signatures cover the bytes as sent), so FastAPI
sees no body parameter and would document none. This module supplies, from the same typed
wire models the routes parse with and the same sample builders ``hirehook send`` posts:

* the request body schema of each event route, its ``$defs`` hoisted into
  ``components/schemas`` under a per-ATS prefix (two ATSs may both have a ``Link``);
* one example per event type;
* every answer the route can give, with its exact body shape and headers, and an example of
  each refusal rendered from the same errors (and renderer) the route sends;
* the authentication each route needs, as OpenAPI security schemes;
* a readable, stable ``operationId`` per operation (:func:`operation_id`).

The shapes are each ATS's and live beside its router; this module holds what they share.

:func:`build` then removes FastAPI's automatic 422, which no route ever sends: a request
FastAPI itself refuses is answered 400 in the route's own error shape (``common.error_route``).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.json_schema import SkipJsonSchema

from app.intake.payload import decode_content, parse_json, too_large
from app.platform.errors import AppError, unauthorized, unavailable
from app.routers.common import default_body, too_many_failures, too_slow

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
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Machine-readable reason, e.g. `unauthorized`, `bad_json`.")
    message: str = Field(description="What went wrong and what to do, for a person.")


class DefaultError(BaseModel):
    """Every refusal of the routes whose sender expects no shape of its own."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


class ErrorDetailWithCause(ErrorDetail):
    detail: str | SkipJsonSchema[None] = Field(
        default=None,
        description="The cause, for whoever runs Hirehook (e.g. `database: TimeoutError`); "
        "present when there is one.",
    )


class DetailedError(BaseModel):
    """A refusal in the default shape that may name its cause: only 409 and 503 answers carry
    ``detail`` (``app.routers.common.default_body`` adds it when the error has one)."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetailWithCause


# The statuses whose default-shape answers can carry ``detail``: the errors raised with a
# debug message (app.platform.errors.unavailable, the store's conflicts) are all 409s and 503s.
_DETAILED = frozenset({409, 503})


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


def _raised(call: Callable[[], object]) -> AppError:
    """The AppError ``call`` raises: an example is the refusal the code really makes."""
    try:
        call()
    except AppError as exc:
        return exc
    raise AssertionError("expected an AppError")


# One real refusal per status, for the examples of the routes answering in the default shape.
DEFAULT_ERRORS: dict[int, Sequence[AppError]] = {
    400: (
        _raised(lambda: parse_json(b'{"type": "applicant.hired", ')),
        _raised(lambda: decode_content(b"\x1f\x8b\x08\x00", "gzip", 1024)),
    ),
    401: (unauthorized(),),
    408: (too_slow(10),),
    413: (too_large(1_048_576, "request body"),),
    415: (_raised(lambda: decode_content(b"{}", "br", 1024)),),
    429: (too_many_failures(30),),
    503: (unavailable("database: TimeoutError"),),
}


def examples_of(
    errors: Sequence[AppError], render: Callable[[AppError], Any]
) -> dict[str, dict[str, Any]]:
    """Named examples (by each error's code) of ``errors`` as ``render`` puts them on the wire."""
    out: dict[str, dict[str, Any]] = {}
    for error in errors:
        name = error.code if error.code not in out else f"{error.code}_{len(out) + 1}"
        summary = textwrap.shorten(error.user_message, 80, placeholder="...")
        out[name] = {"summary": summary, "value": render(error)}
    return out


def accepted(status: int, model: type[BaseModel], description: str) -> Responses:
    """A success answer with the record headers every event answer carries."""
    return {status: {"model": model, "description": description, "headers": RECORD_HEADERS}}


def refusals(
    statuses: Iterable[int],
    model: type[BaseModel] | None = None,
    meanings: Mapping[int, str] | None = None,
    *,
    errors: Mapping[int, Sequence[AppError]] | None = None,
    render: Callable[[AppError], Any] = default_body,
    bodies: Mapping[int, Mapping[str, Any]] | None = None,
) -> Responses:
    """The refusals a route can send, each in ``model``'s shape (by default the default shape,
    :class:`DetailedError` where it can carry a cause), 429 and 503 with Retry-After, and an
    example per error of ``errors`` (by default :data:`DEFAULT_ERRORS`) as ``render`` renders
    it, or the named example ``bodies`` of a status answered without an AppError (a library's
    own answer). A status with no example is a mistake, raised here."""
    words = {**_DEFAULT_MEANINGS, **(meanings or {})}
    samples = {**DEFAULT_ERRORS, **(errors or {})}
    out: Responses = {}
    for status in statuses:
        shape = model or (DetailedError if status in _DETAILED else DefaultError)
        if bodies and status in bodies:
            named = {name: {"summary": name, "value": v} for name, v in bodies[status].items()}
        elif samples.get(status):
            named = examples_of(samples[status], render)
        else:
            raise ValueError(f"no example for a documented {status}")
        entry: dict[str, Any] = {
            "model": shape,
            "description": words[status],
            "content": {"application/json": {"examples": named}},
        }
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


# --- Operation ids ------------------------------------------------------------------------


def _identifier(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def operation_id(route: APIRoute) -> str:
    """``<tag>_<route name>`` (``keldairhr_receive_event``, ``admin_list_records``): the app's
    ``generate_unique_id_function``, so a new route gets a readable id without anyone
    choosing one. The route's name is its function's unless the decorator gives ``name=``;
    :func:`build` refuses two operations with the same id."""
    tag = str(route.tags[0]) if route.tags else ""
    prefix = _identifier(tag)
    name = _identifier(route.name)
    return f"{prefix}_{name}" if prefix else name


# --- The document -------------------------------------------------------------------------

# The sources' tags come first, from the registry (app.main passes them to build).
TAGS: list[dict[str, str]] = [
    {"name": "Operations", "description": "Health checks for load balancers; not for senders."},
    {
        "name": "Admin",
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
    seen: dict[str, str] = {}
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            # FastAPI documents a 422 for every route with parameters; none sends it.
            operation.get("responses", {}).pop("422", None)
            where = f"{method.upper()} {path}"
            if (other := seen.setdefault(operation["operationId"], where)) != where:
                raise ValueError(f"{where} and {other} have one operationId; give one a name=")
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
