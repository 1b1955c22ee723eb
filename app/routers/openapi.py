"""What ``/openapi.json`` (and so ``/docs``) tells an ATS admin about each route.

The routes read their raw bodies themselves (signatures cover the bytes as sent), so FastAPI
sees no body parameter and would document none. This module supplies, from the same typed
wire models the routes parse with and the same sample builders ``hirehook send`` posts:

* the request body schema of each event route, its ``$defs`` hoisted into
  ``components/schemas`` under a per-ATS prefix (two ATSs may both have a ``Link``);
* one example per event type;
* every answer the route can give, with its exact body shape and headers;
* the authentication each route needs, as OpenAPI security schemes.

:func:`build` then removes FastAPI's automatic 422, which no route ever sends: a request
FastAPI itself refuses is answered 400 in the route's own error shape (``common.error_route``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.json_schema import SkipJsonSchema

from app.schemas import hrmanager as hrm_schema
from app.schemas.icims import event_adapter as icims_event_adapter
from app.schemas.keldair import APPLICANT_HIRED, ONBOARDING_FILE_COMPLETED
from app.schemas.keldair import known_event_adapter as keldair_event_adapter
from app.schemas.smartrecruiters import KNOWN_EVENTS as SR_EVENTS
from app.schemas.smartrecruiters import ApplicationBody, ResourceBody
from app.sources import cloudelements as ce_source
from app.sources import hrmanager as hrm_source
from app.sources import icims as icims_source
from app.sources import keldair as keldair_source
from app.sources import smartrecruiters as sr_source

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
    """Every refusal of the KeldairHR, HR Manager, SmartRecruiters and Cloud Elements routes."""

    error: ErrorDetail


class IcimsErrorDetail(BaseModel):
    model_config = ConfigDict(title="IcimsErrorDetail")

    userMessage: str = Field(  # noqa: N815 - iCIMS's field name
        description="Shown by iCIMS to whoever triggered the event (recruiter, candidate or "
        "new hire), worded for them."
    )
    debugErrorMessage: str = Field(  # noqa: N815 - iCIMS's field name
        description="For iCIMS support and the vendor; a 500 carries a reference to quote."
    )


class IcimsError(BaseModel):
    """iCIMS's Error Reporting Standard for Vendors."""

    error: IcimsErrorDetail


class OAuthError(BaseModel):
    """RFC 6749 section 5.2."""

    error: Literal[
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "temporarily_unavailable",
        "server_error",
    ]
    # OPTIONAL in RFC 6749: the library's own refusals (an unsupported grant type) carry none.
    error_description: str = ""


class TokenAnswer(BaseModel):
    """RFC 6749 section 5.1."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class KeldairAccepted(BaseModel):
    status: Literal["accepted"]
    record_id: str
    event_id: str


class HRManagerAccepted(BaseModel):
    status: Literal["accepted"]
    record_id: str
    event: str = Field(description="The event's name, from the body or `?event=`.")


class SmartRecruitersAccepted(BaseModel):
    status: Literal["accepted"]
    record_id: str
    event_id: str


class SmartRecruitersActivated(BaseModel):
    status: Literal["activated"]


class CloudElementsRecord(BaseModel):
    record_id: str
    duplicate: bool


class CloudElementsAccepted(BaseModel):
    status: Literal["accepted"]
    records: list[CloudElementsRecord] = Field(description="One per event object, in order.")
    quarantined: int = Field(description="Event objects recorded but not of an expected shape.")


class IcimsAccepted(BaseModel):
    status: Literal["accepted"]
    recordId: str  # noqa: N815 - the wire name


class IcimsLinkAccepted(BaseModel):
    status: Literal["accepted"]
    recordId: str  # noqa: N815 - the wire name
    link: str = Field(description="The same URL as the Location header.")


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


# --- Security schemes ---------------------------------------------------------------------


def _header(name: str, description: str) -> dict[str, Any]:
    return {"type": "apiKey", "in": "header", "name": name, "description": description}


SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "webhookId": _header("webhook-id", "Standard Webhooks: the message id, signed."),
    "webhookTimestamp": _header(
        "webhook-timestamp", "Standard Webhooks: Unix seconds, within 5 minutes of ours."
    ),
    "webhookSignature": _header(
        "webhook-signature",
        "Standard Webhooks: `v1,<base64 HMAC-SHA256 of id.timestamp.body>` with the "
        "connection's `whsec_` secret; several may be space-separated.",
    ),
    "icimsHmac": _header(
        "Authorization",
        "iCIMS HMAC: `x-icims-v1-hmac-sha256 user=...,signedheaders=...,signature=...`, "
        "signing at least x-icims-date and x-icims-content-sha256.",
    ),
    "icimsDate": _header(
        "x-icims-date", "iCIMS HMAC: the signing time, e.g. 2017-10-18T14:53:40+0000."
    ),
    "icimsContentSha256": _header(
        "x-icims-content-sha256", "iCIMS HMAC: hex SHA-256 of the body as sent or inflated."
    ),
    "icimsBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "iCIMS HTTP Basic: the username and password of the customer's connection.",
    },
    "icimsOAuth": {
        "type": "oauth2",
        "description": "iCIMS OAuth 2.0: a Bearer token from /oauth/token (client credentials).",
        "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {}}},
    },
    "oauthClientBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "The OAuth client id and secret (client_secret_basic); they may instead "
        "be sent as client_id and client_secret form fields.",
    },
    "hrmanagerSignature": _header(
        "X-Signature-Base64HmacSha256",
        "HR Manager: Base64(HMAC-SHA256(shared secret, body as sent)). A connection may also "
        "or instead require a User Data key in the body.",
    ),
    "smartrecruitersSignature": _header(
        "smartrecruiters-signature",
        "SmartRecruiters: the signature over the timestamp and body, with the subscription's "
        "or the connection's key.",
    ),
    "smartrecruitersTimestamp": _header(
        "smartrecruiters-timestamp", "SmartRecruiters: Unix seconds of the signature."
    ),
    "adminKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An admin API key (`hh_admin_...`), made with `hirehook admin-keys create`.",
    },
    "cloudElementsSignature": _header(
        "Elements-Webhook-Signature",
        "Cloud Elements: HMAC-SHA256 of the body with the element instance's "
        "event.notification.signature.key (header name configurable per connection).",
    ),
}


def security(*alternatives: Iterable[str]) -> dict[str, Any]:
    """``openapi_extra`` requiring any one of ``alternatives`` (each a set of schemes)."""
    return {"security": [{name: [] for name in names} for names in alternatives]}


# --- Request bodies, from the typed models and the sample builders -----------------------


KELDAIR_EVENT_TYPES = (APPLICANT_HIRED, ONBOARDING_FILE_COMPLETED)


def keldair_body() -> dict[str, Any]:
    examples = {
        t: keldair_source.sample(t, event_id=f"evt_{i}")
        for i, t in enumerate(KELDAIR_EVENT_TYPES, start=1)
    }
    return json_body(
        hoisted("Keldair", keldair_event_adapter),
        examples,
        "A KeldairHR event. These types are typed; an event of any other `type`, or one "
        "that does not fit its model, is recorded and quarantined (answered 200), never refused.",
    )


def icims_body() -> dict[str, Any]:
    examples = {t: icims_source.icims_sample(t) for t in icims_source.ICIMS_EVENT_TYPES}
    return json_body(
        hoisted("Icims", icims_event_adapter),
        examples,
        "One iCIMS Integration Event, possibly gzip'd; `customerId` selects the connection.",
    )


def _hrmanager_event_schema(event_name: str) -> dict[str, Any]:
    """The wire shape of one event: our model's fields under their first guessed wire name."""
    required = hrm_schema.required_ids(event_name)
    properties: dict[str, Any] = {
        hrm_schema.WIRE_NAMES["event"][0]: {
            "const": event_name,
            "description": "The event's name (or in the URL as ?event=); also read from "
            + ", ".join(hrm_schema.WIRE_NAMES["event"][1:4])
            + "...",
        }
    }
    for field in hrm_schema.id_fields(event_name):
        names = hrm_schema.WIRE_NAMES[field]
        properties[names[0]] = {
            "type": ["string", "integer"],
            "description": f"Also read as {', '.join(names[1:])}.",
        }
    return {
        "title": f"HRManager{event_name}",
        "type": "object",
        "properties": properties,
        # The event's name may be in the URL instead; an id missing under every spelling is
        # quarantined, but without it the event cannot be enriched.
        "required": [hrm_schema.WIRE_NAMES[f][0] for f in required],
    }


def hrmanager_body() -> dict[str, Any]:
    names = hrm_schema.EVENT_NAMES
    schema = {
        "oneOf": [component(f"HRManager{name}", _hrmanager_event_schema(name)) for name in names],
    }
    examples = {name: hrm_source.sample(name) for name in names}
    return json_body(
        schema,
        examples,
        "One HR Manager webhook event. HR Manager's field names are not published: each field "
        "is read under several spellings (see each property). An authentic event that does "
        "not fit is recorded and quarantined (answered 200), never refused.",
    )


def smartrecruiters_body() -> dict[str, Any]:
    schema = {
        "oneOf": [
            hoisted_model("SmartRecruiters", ResourceBody),
            hoisted_model("SmartRecruiters", ApplicationBody),
        ]
    }
    examples = {name: sr_source.sample(name) for name in sorted(SR_EVENTS)}
    return json_body(
        schema,
        examples,
        "A notification names its event in the `event-name` header; the body holds ids only: "
        "`{id}` for candidate and job events, `{job_id, candidate_id}` for application events. "
        "The activation handshake (`X-Hook-Secret` header) carries no body worth reading.",
        # The handshake may come without one.
        required=False,
    )


def hoisted_model(prefix: str, model: type[BaseModel]) -> dict[str, Any]:
    """A reference to ``model``'s schema, registered as ``<prefix><Model>``."""
    schema = hoisted(prefix, TypeAdapter(model))
    return component(prefix + model.__name__, schema)


class CloudElementsEvent(BaseModel):
    """One event object; ``objectType``, ``objectId`` and ``eventType`` key its record."""

    model_config = ConfigDict(extra="allow")

    elementKey: str | None = None  # noqa: N815 - the wire name
    objectType: str  # noqa: N815 - the wire name
    objectId: str | int  # noqa: N815 - the wire name
    eventType: str = Field(  # noqa: N815 - the wire name
        description="CREATED, UPDATED or DELETED (any case); others are stored, not dispatched."
    )
    updatedDate: str | None = None  # noqa: N815 - the wire name


class CloudElementsMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    eventId: str | None = Field(  # noqa: N815 - the wire name
        default=None, description="The notification's id (else the Elements-Webhook-Id header)."
    )
    elementKey: str | None = None  # noqa: N815 - the wire name
    instanceId: int | str | None = None  # noqa: N815 - the wire name
    events: list[CloudElementsEvent] = Field(min_length=1, max_length=100)
    raw: Any = Field(default=None, description="The provider's raw body; stored, not keyed.")


class CloudElementsNotification(BaseModel):
    """The envelope ``app.schemas.cloudelements.parse_notification`` reads (``message`` may
    also be left out, its fields at the top level)."""

    message: CloudElementsMessage


CLOUD_ELEMENTS_EVENT_TYPES = ("CREATED", "UPDATED", "DELETED")


def cloudelements_body() -> dict[str, Any]:
    examples: dict[str, Any] = {}
    for event_type in CLOUD_ELEMENTS_EVENT_TYPES:
        notification = ce_source.sample(1, event_id=f"evt-{event_type.lower()}")
        for event in notification["message"]["events"]:
            event["eventType"] = event_type
        examples[event_type] = notification
    return json_body(
        hoisted_model("", CloudElementsNotification),
        examples,
        "One Cloud Elements event notification: one record per event object. An authentic "
        "notification of another shape is recorded and quarantined (answered 200).",
    )


def token_body() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "grant_type": {"type": "string", "const": "client_credentials"},
                            "client_id": {"type": "string"},
                            "client_secret": {"type": "string"},
                            "scope": {"type": "string"},
                            "audience": {"type": "string"},
                        },
                        "required": ["grant_type"],
                    },
                    "examples": {
                        "client_credentials": {
                            "summary": "client credentials, client authenticated by Basic",
                            "value": {"grant_type": "client_credentials"},
                        }
                    },
                }
            },
        }
    }


# --- The document -------------------------------------------------------------------------

TAGS: list[dict[str, str]] = [
    {"name": "KeldairHR", "description": "Standard Webhooks events, one URL per tenant."},
    {"name": "iCIMS", "description": "iCIMS Integration Events, one URL for every customer."},
    {"name": "OAuth", "description": "Tokens for iCIMS connections that use OAuth 2.0."},
    {"name": "HR Manager", "description": "Talentech HR Manager webhooks, one URL per tenant."},
    {"name": "SmartRecruiters", "description": "SmartRecruiters webhooks, one URL per tenant."},
    {"name": "Cloud Elements", "description": "Cloud Elements event notifications."},
    {"name": "Operations", "description": "Health checks for load balancers; not for senders."},
    {
        "name": "admin",
        "description": "Operators: tenants, connections, records, replay, dead "
        "letters and statistics, behind admin API keys.",
    },
]


def build(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (built once): no 422, hoisted models, security schemes."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=TAGS,
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
    components["securitySchemes"] = SECURITY_SCHEMES
    app.openapi_schema = doc
    return doc
