"""KeldairHR (Standard Webhooks) receiver, one URL per tenant."""

from __future__ import annotations

import time
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from app.intake.connections import ConnectionInfo
from app.intake.core import Deadline
from app.intake.payload import parse_json, require_object
from app.routers import openapi
from app.routers.common import (
    DECOY_KEY,
    DefaultRoute,
    ServicesDep,
    accept,
    accepted_answer,
    decoded,
    guarded,
    read_raw,
    tenant_config,
    token_opening,
    unauthenticated,
)
from app.schemas import keldair_config
from app.schemas.keldair import (
    APPLICANT_HIRED,
    ONBOARDING_FILE_COMPLETED,
    SOURCE,
    dedupe_key,
    known_event_adapter,
    parse,
)
from app.schemas.keldair_config import KeldairConfig
from app.services import Services
from app.sources.keldair import sample
from app.verifiers import VerificationError
from app.verifiers import standard_webhooks as swh

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/keldair", tags=["KeldairHR"], route_class=DefaultRoute)
ROUTERS = (router,)

_SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class KeldairAccepted(BaseModel):
    status: Literal["accepted"]
    record_id: str
    event_id: str


def _body() -> dict[str, Any]:
    examples = {
        t: sample(t, event_id=f"evt_{i}")
        for i, t in enumerate((APPLICANT_HIRED, ONBOARDING_FILE_COMPLETED), start=1)
    }
    return openapi.json_body(
        openapi.hoisted("Keldair", known_event_adapter),
        examples,
        "A KeldairHR event. These types are typed; an event of any other `type`, or one "
        "that does not fit its model, is recorded and quarantined (answered 200), never refused.",
    )


_ANSWERS = openapi.event_answers(
    KeldairAccepted,
    "Recorded, a repeat of a recorded event, or recorded and quarantined (unexpected shape).",
)
_BODY = _body()
openapi.security_schemes(
    webhookId=openapi.header_scheme("webhook-id", "Standard Webhooks: the message id, signed."),
    webhookTimestamp=openapi.header_scheme(
        "webhook-timestamp", "Standard Webhooks: Unix seconds, within 5 minutes of ours."
    ),
    webhookSignature=openapi.header_scheme(
        "webhook-signature",
        "Standard Webhooks: `v1,<base64 HMAC-SHA256 of id.timestamp.body>` with the "
        "connection's `whsec_` secret; several may be space-separated.",
    ),
)


@router.post(
    "/{tenant}/events",
    status_code=200,
    responses=_ANSWERS,
    openapi_extra={
        **_BODY,
        **openapi.security(("webhookId", "webhookTimestamp", "webhookSignature")),
    },
)
async def receive_event(tenant: str, request: Request, services: ServicesDep) -> Response:
    """Receive one signed KeldairHR event for ``tenant``."""
    deadline = Deadline(services.settings.request_deadline_s)
    # Limited by address only. The tenant slug is in a public URL, and a signing secret of 24
    # or more random bytes cannot be guessed, so a lock per tenant would protect nothing and
    # would let anyone who knows the URL lock that tenant out. The address limit still caps
    # what one sender can make us spend on lookups and signature checks.
    async with guarded(services, request):
        connection, config, body = await _signed(tenant, request, services, deadline)
    return await _record(request, services, connection, config, body, deadline)


@router.post(
    "/{tenant}/events/{token}",
    status_code=200,
    responses=_ANSWERS,
    # The token in the path is the credential: no header to document.
    openapi_extra={**_BODY, "security": []},
)
async def receive_event_by_token(
    tenant: str, token: str, request: Request, services: ServicesDep
) -> Response:
    """Receive one KeldairHR event for a tenant whose connection authenticates its sender by a
    secret token in the URL (``auth = "url_token"``) instead of a signature."""
    deadline = Deadline(services.settings.request_deadline_s)
    connection, config, body = await token_opening(
        services,
        request,
        tenant=tenant,
        token=token,
        source=SOURCE,
        parse=keldair_config.parse,
        tokens=lambda c: c.secrets.url_tokens if c.options.auth == "url_token" else [],
        deadline=deadline,
    )
    return await _record(request, services, connection, config, body, deadline)


async def _signed(
    tenant: str, request: Request, services: Services, deadline: Deadline
) -> tuple[ConnectionInfo, KeldairConfig, bytes]:
    """The connection and the decoded body of a request whose signature verifies."""
    wire = await read_raw(request, services.settings.max_body_bytes, deadline.remaining())
    # Nothing is inflated or parsed for a request that cannot be authentic: the signature
    # headers must be there and the tenant known (the signature itself may cover the inflated
    # body, so it is checked after inflating, under the per-source caps).
    connection, config = await tenant_config(services, tenant, SOURCE, keldair_config.parse)
    if (
        connection is None
        or config is None
        or config.options.auth != "signature"
        or any(name not in request.headers for name in _SIGNATURE_HEADERS)
    ):
        raise unauthenticated(
            SOURCE,
            tenant,
            "unknown tenant or no signature",
            decoy=lambda: swh.verify(request.headers, [wire], [DECOY_KEY], now=time.time()),
        )
    body = decoded(request, services, wire)
    try:
        swh.verify(
            request.headers,
            [body] if body is wire else [body, wire],
            config.keys,
            now=time.time(),
            tolerance_s=config.options.tolerance_s,
        )
    except VerificationError as exc:
        raise unauthenticated(SOURCE, tenant, str(exc)) from exc
    return connection, config, body


async def _record(
    request: Request,
    services: Services,
    connection: ConnectionInfo,
    config: KeldairConfig,
    body: bytes,
    deadline: Deadline,
) -> Response:
    payload = require_object(parse_json(body))
    # KeldairHR retries anything but a 2xx for 24 hours and then drops it: an authentic event
    # that does not fit its model is recorded and quarantined, never refused (see
    # `hirehook dead-letters retry`, which parses it again once the mapping is fixed).
    parsed = parse(
        payload,
        type_aliases=config.options.type_aliases,
        data_aliases=config.options.data_aliases,
    )
    event_id = dedupe_key(payload, request.headers)
    return await accept(
        services,
        connection,
        parsed,
        dedupe_key=event_id,
        payload=payload,
        raw_body=body,
        headers=request.headers,
        deadline=deadline,
        answer=accepted_answer(event_id=event_id),
    )
