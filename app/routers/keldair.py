"""KeldairHR (Standard Webhooks) receiver, one URL per tenant."""

from __future__ import annotations

import time

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app.body import decode_content, parse_json, read_raw, require_object
from app.errors import unauthorized
from app.intake import Deadline, Event, json_answer
from app.schemas.keldair import UnknownEvent, parse_event
from app.services import ServicesDep
from app.validation import invalid_event
from app.verifiers import VerificationError
from app.verifiers import standard_webhooks as swh

SOURCE = "keldair"
log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/keldair", tags=["KeldairHR"])

# Verifying against a key nobody holds keeps an unknown tenant as slow as a bad signature.
_DECOY_KEY = b"\x00" * 32

_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Malformed JSON, invalid UTF-8 or an invalid event; the body says what."},
    401: {"description": "Missing, wrong or stale signature, or an unknown tenant."},
    413: {"description": "Body or decompressed body too large."},
    503: {"description": "The event could not be committed; retry."},
}


@router.post("/{tenant}/events", status_code=200, responses=_ERRORS)
async def receive_event(tenant: str, request: Request, services: ServicesDep) -> Response:
    """Receive one signed KeldairHR event for ``tenant``."""
    settings = services.settings
    deadline = Deadline(settings.request_deadline_s)
    wire = await read_raw(request, settings.max_body_bytes, deadline.remaining())
    body = decode_content(
        wire, request.headers.get("content-encoding"), settings.max_decompressed_bytes
    )
    connection = await services.connections.by_tenant(tenant, SOURCE)
    keys = [_DECOY_KEY]
    if connection is not None:
        keys = [swh.decode_secret(s) for s in connection.secrets.get("signing_secrets", [])]
    try:
        swh.verify(
            request.headers,
            [body] if body is wire else [body, wire],
            keys,
            now=time.time(),
            tolerance_s=int((connection.options if connection else {}).get("tolerance_s", 300)),
        )
    except VerificationError as exc:
        log.info("keldair.unauthenticated", tenant=tenant, reason=str(exc))
        raise unauthorized() from exc
    if connection is None:  # pragma: no cover - the decoy key never verifies
        raise unauthorized()

    payload = require_object(parse_json(body))
    try:
        event = parse_event(payload, connection.options.get("type_aliases"))
    except ValidationError as exc:
        raise invalid_event(exc) from exc
    known = not isinstance(event, UnknownEvent)
    outcome = await services.intake.record(
        Event(
            connection=connection,
            dedupe_key=event.id,
            event_type=event.type,
            known=known,
            payload=payload,
            raw_body=body,
            headers=request.headers,
        ),
        answer_for=lambda rid: json_answer(
            200, {"status": "accepted", "record_id": str(rid), "event_id": event.id}
        ),
        deadline=deadline,
    )
    await services.intake.publish(outcome, known=known)
    return outcome.response()
