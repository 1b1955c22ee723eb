"""KeldairHR (Standard Webhooks) receiver, one URL per tenant."""

from __future__ import annotations

import contextlib
import time

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.connections import ConnectionInfo
from app.errors import unauthorized
from app.intake import Deadline, json_answer
from app.payload import decode_content, parse_json, require_object
from app.routers import openapi
from app.routers.common import DefaultRoute, ServicesDep, accept, guarded, read_raw
from app.schemas import keldair_config
from app.schemas.keldair import SOURCE, dedupe_key, parse
from app.schemas.keldair_config import KeldairConfig
from app.services import Services
from app.verifiers import VerificationError, url_token
from app.verifiers import standard_webhooks as swh

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/keldair", tags=["KeldairHR"], route_class=DefaultRoute)

# Verifying against a key nobody holds keeps an unknown tenant as slow as a bad signature.
_DECOY_KEY = b"\x00" * 32
_SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")

_ANSWERS = {
    **openapi.accepted(
        200,
        openapi.KeldairAccepted,
        "Recorded, a repeat of a recorded event, or recorded and quarantined (unexpected shape).",
    ),
    **openapi.refusals((400, 401, 408, 413, 415, 429, 503)),
}
_BODY = openapi.keldair_body()


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
    async with guarded(services, request):
        wire = await read_raw(request, services.settings.max_body_bytes, deadline.remaining())
        connection, config = await _connection(tenant, services)
        accepted = (
            config.secrets.url_tokens if config and config.options.auth == "url_token" else []
        )
        if connection is None or config is None or not url_token.matches(accepted, token):
            log.info("keldair.unauthenticated", tenant=tenant, reason="unknown tenant or token")
            raise unauthorized()
        body = _decode(request, services, wire)
    return await _record(request, services, connection, config, body, deadline)


async def _connection(
    tenant: str, services: Services
) -> tuple[ConnectionInfo | None, KeldairConfig | None]:
    connection = await services.connections.by_tenant(tenant, SOURCE)
    if connection is None:
        return None, None
    try:
        return connection, connection.parsed(keldair_config.parse)
    except ValueError as exc:
        # Refused when loaded; one broken since is answered like an unknown tenant.
        log.warning("keldair.connection_invalid", tenant=tenant, detail=str(exc))
        return connection, None


def _decode(request: Request, services: Services, wire: bytes) -> bytes:
    return decode_content(
        wire,
        request.headers.get("content-encoding"),
        services.settings.max_decompressed_bytes,
        services.settings.max_compression_ratio,
    )


async def _signed(
    tenant: str, request: Request, services: Services, deadline: Deadline
) -> tuple[ConnectionInfo, KeldairConfig, bytes]:
    """The connection and the decoded body of a request whose signature verifies."""
    wire = await read_raw(request, services.settings.max_body_bytes, deadline.remaining())
    # Nothing is inflated or parsed for a request that cannot be authentic: the signature
    # headers must be there and the tenant known (the signature itself may cover the inflated
    # body, so it is checked after inflating, under the per-source caps).
    connection, config = await _connection(tenant, services)
    if (
        connection is None
        or config is None
        or config.options.auth != "signature"
        or any(name not in request.headers for name in _SIGNATURE_HEADERS)
    ):
        with contextlib.suppress(VerificationError):
            # Costs what a real check costs, so timing does not tell a tenant exists.
            swh.verify(request.headers, [wire], [_DECOY_KEY], now=time.time())
        log.info("keldair.unauthenticated", tenant=tenant, reason="unknown tenant or no signature")
        raise unauthorized()
    body = _decode(request, services, wire)
    try:
        swh.verify(
            request.headers,
            [body] if body is wire else [body, wire],
            config.keys,
            now=time.time(),
            tolerance_s=config.options.tolerance_s,
        )
    except VerificationError as exc:
        log.info("keldair.unauthenticated", tenant=tenant, reason=str(exc))
        raise unauthorized() from exc
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
        answer=lambda rid: json_answer(
            200, {"status": "accepted", "record_id": str(rid), "event_id": event_id}
        ),
    )
