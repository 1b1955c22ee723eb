"""Talentech HR Manager webhook receiver: one URL per tenant for every configured event.

[C] The admin picks one event and one URL per webhook, and many webhooks may share a URL
(docs/ats/hrmanager.md); the signature and its answers (missing header 400, mismatch
401) follow ``Talentech/Webhooks`` (docs/ats/hrmanager.md). [I] The event name may be in the body
or, put there by the admin, in the URL as ``?event=<Name>``.
"""

from __future__ import annotations

from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from app.intake.core import Deadline
from app.intake.payload import decode_content, is_compressed, parse_json, require_object
from app.platform.errors import AppError
from app.platform.settings import Settings
from app.routers import openapi
from app.routers.common import (
    DECOY_KEY,
    DefaultRoute,
    ServicesDep,
    accept,
    accepted_answer,
    guarded,
    invalid_request,
    read_raw,
    tenant_config,
    unauthenticated,
)
from app.schemas import hrmanager as hrm_schema
from app.schemas import hrmanager_config
from app.schemas.hrmanager import SOURCE, URL_EVENT_HEADER, dedupe_key, lookup, parse, redact
from app.sources.hrmanager import sample
from app.verifiers import VerificationError
from app.verifiers import hrmanager as hrm

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/hrmanager", tags=["HR Manager"], route_class=DefaultRoute)
ROUTERS = (router,)


class HRManagerAccepted(BaseModel):
    status: Literal["accepted"]
    record_id: str
    event: str = Field(description="The event's name, from the body or `?event=`.")


_ANSWERS = openapi.event_answers(
    HRManagerAccepted,
    "Recorded, a repeat of a recorded event, or recorded and quarantined (unexpected shape).",
    meanings={
        400: "No X-Signature-Base64HmacSha256 header, malformed JSON, invalid UTF-8, not a "
        "JSON object, a corrupt gzip/deflate body, or an `event` query over 255 characters.",
        401: "Wrong signature or User Data key, or an unknown tenant.",
    },
)
openapi.security_schemes(
    hrmanagerSignature=openapi.header_scheme(
        "X-Signature-Base64HmacSha256",
        "HR Manager: Base64(HMAC-SHA256(shared secret, body as sent)). A connection may also "
        "or instead require a User Data key in the body.",
    )
)


def _event_schema(event_name: str) -> dict[str, Any]:
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


def _body() -> dict[str, Any]:
    names = hrm_schema.EVENT_NAMES
    schema = {
        "oneOf": [openapi.component(f"HRManager{name}", _event_schema(name)) for name in names],
    }
    return openapi.json_body(
        schema,
        {name: sample(name) for name in names},
        "One HR Manager webhook event. HR Manager's field names are not published: each field "
        "is read under several spellings (see each property). An authentic event that does "
        "not fit is recorded and quarantined (answered 200), never refused.",
    )


def missing_signature() -> AppError:
    """[C] HR Manager's own sample answers a request without the header 400
    (docs/ats/hrmanager.md)."""
    return AppError(
        400,
        f"The {hrm.SIGNATURE_HEADER} header is missing. Give the webhook a shared secret in HR "
        "Manager's administration.",
        code="missing_signature",
    )


# ``?event=<Name>`` is read from the request, not declared as a FastAPI query parameter: a
# route FastAPI must solve is not called straight from the scope as the other event routes are
# (app.routers.dispatch). Documented here as FastAPI documented it.
_EVENT_MAX_LENGTH = 255
_EVENT_DESCRIPTION = (
    "The event's name (e.g. CandidateUpdated), for a webhook whose URL names it; takes "
    "precedence over the body."
)
_EVENT_PARAMETER = {
    "name": "event",
    "in": "query",
    "required": False,
    "schema": {
        "anyOf": [{"type": "string", "maxLength": _EVENT_MAX_LENGTH}, {"type": "null"}],
        "description": _EVENT_DESCRIPTION,
        "title": "Event",
    },
    "description": _EVENT_DESCRIPTION,
}


def _url_event(request: Request) -> str | None:
    """The webhook URL's ``event`` query parameter (the last, if repeated), or None."""
    event = request.query_params.get("event")
    if event is None:
        return None
    if len(event) > _EVENT_MAX_LENGTH:
        raise invalid_request(
            f"query.event: String should have at most {_EVENT_MAX_LENGTH} characters"
        )
    # PostgreSQL text cannot hold U+0000, which a query string can carry (%00).
    return event.replace("\x00", "")


@router.post(
    "/{tenant}/events",
    status_code=200,
    responses=_ANSWERS,
    openapi_extra={
        **_body(),
        **openapi.security(("hrmanagerSignature",)),
        "parameters": [_EVENT_PARAMETER],
    },
)
async def receive_event(tenant: str, request: Request, services: ServicesDep) -> Response:
    """Receive one HR Manager webhook event for ``tenant``."""
    settings = services.settings
    deadline = Deadline(settings.request_deadline_s)
    event = _url_event(request)
    # Limited by address only, as KeldairHR: the tenant slug is in a public URL, so a lock per
    # tenant would let anyone lock a tenant out. Every 401 counts towards the address's budget.
    async with guarded(services, request) as attempt:
        wire = await read_raw(request, settings.max_body_bytes, deadline.remaining())
        connection, config = await tenant_config(services, tenant, SOURCE, hrmanager_config.parse)
        presented = request.headers.get(hrm.SIGNATURE_HEADER)
        if connection is None or config is None:
            # Answered as a connection with a signing secret answers a wrong signature: the
            # same status and body, after the same HMAC work.
            refusal = unauthenticated(
                SOURCE,
                tenant,
                "unknown tenant",
                decoy=lambda: hrm.verify_signature(presented, [wire], [DECOY_KEY]),
            )
            if presented is None or not presented.strip():
                raise missing_signature()
            raise refusal
        body = _signed_body(tenant, wire, presented, config, request, settings)
        user_data_key = config.secrets.user_data_key
        if config.signature_required and user_data_key is None:
            attempt.authenticated()
        payload = require_object(parse_json(body))
        if user_data_key is not None:
            # [I] Without a signature this is the only credential, and it is in the body: the body
            # must be read first (under the same caps), which a signature spares.
            try:
                hrm.verify_user_data(lookup(payload, config.options.user_data_path), user_data_key)
            except VerificationError as exc:
                raise unauthenticated(SOURCE, tenant, str(exc)) from exc
            payload, body = redact(payload, body, user_data_key)

    # An authentic event that does not fit its model is recorded and quarantined, never
    # refused: [I] whether HR Manager retries a refusal is not documented, and one it does not
    # retry would be lost (`hirehook dead-letters retry` parses it again once the mapping is
    # fixed).
    options = config.options
    parsed = parse(
        payload, url_event=event, fields=options.payload_fields, aliases=options.event_aliases
    )
    key = dedupe_key(parsed.event_type, payload, options.dedupe_ignore)
    # The URL's event name is kept as the record's marker, for a re-parse (a header of that
    # name sent by the client is never stored: app.intake.core.storable_headers).
    return await accept(
        services,
        connection,
        parsed,
        dedupe_key=key,
        payload=payload,
        raw_body=body,
        headers=request.headers,
        markers={} if event is None else {URL_EVENT_HEADER: event},
        deadline=deadline,
        answer=accepted_answer(event=parsed.event_type),
    )


def _signed_body(
    tenant: str,
    wire: bytes,
    presented: str | None,
    config: hrmanager_config.HRManagerConfig,
    request: Request,
    settings: Settings,
) -> bytes:
    """The body, inflated, once its signature (where required) is checked.

    Checked over the bytes as sent before anything is inflated or parsed; only a compressed
    body that fails is inflated (under the caps) and checked again.
    """
    if not config.signature_required:
        return _inflate(wire, request, settings)
    try:
        hrm.verify_signature(presented, [wire], config.keys)
    except hrm.MissingSignatureError as exc:
        log.info("hrmanager.unauthenticated", tenant=tenant, reason=str(exc))
        raise missing_signature() from exc
    except VerificationError as exc:
        if not is_compressed(wire, request.headers.get("content-encoding")):
            raise unauthenticated(SOURCE, tenant, str(exc)) from exc
    else:
        return _inflate(wire, request, settings)
    body = _inflate(wire, request, settings)
    try:
        hrm.verify_signature(presented, [body], config.keys)
    except VerificationError as exc:
        raise unauthenticated(SOURCE, tenant, str(exc)) from exc
    return body


def _inflate(wire: bytes, request: Request, settings: Settings) -> bytes:
    return decode_content(
        wire,
        request.headers.get("content-encoding"),
        settings.max_decompressed_bytes,
        settings.max_compression_ratio,
    )
