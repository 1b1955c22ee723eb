"""Cloud Elements event notifications, one URL per tenant.

For vendors whose customers already poll SmartRecruiters (or any element) through Cloud
Elements: set the element instance's ``event.notification.callback.url`` to
``https://<host>/v1/cloud-elements/<tenant>/events`` and its ``event.notification.signature.key``
to the connection's ``secrets.signature_keys[0]``; or, for an instance without a signature key
([C] optional in Cloud Elements), to ``.../events/<token>`` with the connection's
``auth = "url_token"`` and ``secrets.url_tokens``.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.connections import ConnectionInfo
from app.db import DB_ERRORS
from app.errors import unauthorized, unavailable
from app.intake import Deadline, json_answer
from app.payload import decode_content
from app.routers import openapi
from app.routers.common import (
    DefaultRoute,
    ServicesDep,
    answer_response,
    guarded,
    read_raw,
)
from app.schemas import cloudelements_config
from app.schemas.cloudelements import SOURCE, parse_notification
from app.schemas.cloudelements_config import CloudElementsConfig
from app.services import Services
from app.verifiers import VerificationError, url_token
from app.verifiers import cloudelements as signatures

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/cloud-elements", tags=["Cloud Elements"], route_class=DefaultRoute)

# Verifying against a key nobody holds keeps an unknown tenant as slow as a bad signature.
_DECOY_KEY = b"\x00" * 32

_ANSWERS = {
    **openapi.accepted(
        200,
        openapi.CloudElementsAccepted,
        "Every event object recorded (or a repeat); unexpected shapes quarantined.",
    ),
    **openapi.refusals(
        (400, 401, 408, 413, 415, 429, 503),
        meanings={
            # Malformed JSON is recorded and quarantined; only the encoding is refused.
            400: "A corrupt or truncated gzip/deflate body.",
            401: "Missing or wrong signature or URL token, or an unknown tenant.",
            503: "The notification could not be committed (all its events or none); retry.",
        },
    ),
}


@router.post(
    "/{tenant}/events",
    status_code=200,
    responses=_ANSWERS,
    openapi_extra={**openapi.cloudelements_body(), **openapi.security(("cloudElementsSignature",))},
)
async def receive_notification(tenant: str, request: Request, services: ServicesDep) -> Response:
    """Receive one signed Cloud Elements event notification for ``tenant``: one record per
    event object in it."""
    settings = services.settings
    deadline = Deadline(settings.request_deadline_s)
    # Limited by address only, as KeldairHR: the tenant slug is in a public URL and a key of 32
    # or more characters is not guessed, so a per-tenant lock would only let anyone lock a
    # tenant out; the address limit caps what one sender can make us spend on checks.
    async with guarded(services, request):
        wire = await read_raw(request, settings.max_body_bytes, deadline.remaining())
        connection, config = await _connection(tenant, services)
        header = config.options.signature_header if config else cloudelements_config.DEFAULT_HEADER
        presented = request.headers.get(header)
        # Nothing is inflated or parsed before the request can be authentic. A connection
        # authenticated by a URL token takes no signature instead.
        if (
            connection is None
            or config is None
            or config.options.auth != "signature"
            or not presented
        ):
            with contextlib.suppress(VerificationError):
                # Costs what a real check costs, so timing does not tell a tenant exists.
                signatures.verify(presented or "sha256=", [wire], [_DECOY_KEY])
            reason = "unknown tenant or no signature"
            log.info("cloudelements.unauthenticated", tenant=tenant, reason=reason)
            raise unauthorized()
        body = _decode(request, services, wire)
        try:
            signatures.verify(
                presented,
                [body] if body is wire else [body, wire],
                config.keys,
                prefix=config.options.signature_prefix,
                encoding=config.options.signature_encoding,
            )
        except VerificationError as exc:
            log.info("cloudelements.unauthenticated", tenant=tenant, reason=str(exc))
            raise unauthorized() from exc
    return await _record(request, services, connection, config, body, deadline)


@router.post(
    "/{tenant}/events/{token}",
    status_code=200,
    responses=_ANSWERS,
    # The token in the path is the credential: no header to document.
    openapi_extra={**openapi.cloudelements_body(), "security": []},
)
async def receive_notification_by_token(
    tenant: str, token: str, request: Request, services: ServicesDep
) -> Response:
    """Receive one Cloud Elements event notification for a tenant whose instance has no
    signature key: its connection authenticates it by a secret token in the callback URL
    (``auth = "url_token"``)."""
    deadline = Deadline(services.settings.request_deadline_s)
    async with guarded(services, request):
        wire = await read_raw(request, services.settings.max_body_bytes, deadline.remaining())
        connection, config = await _connection(tenant, services)
        accepted = (
            config.secrets.url_tokens if config and config.options.auth == "url_token" else []
        )
        # A wrong token, an unknown tenant and a signing connection are one and the same 401.
        if connection is None or config is None or not url_token.matches(accepted, token):
            log.info(
                "cloudelements.unauthenticated", tenant=tenant, reason="unknown tenant or token"
            )
            raise unauthorized()
        body = _decode(request, services, wire)
    return await _record(request, services, connection, config, body, deadline)


async def _connection(
    tenant: str, services: Services
) -> tuple[ConnectionInfo | None, CloudElementsConfig | None]:
    connection = await services.connections.by_tenant(tenant, SOURCE)
    if connection is None:
        return None, None
    try:
        return connection, connection.parsed(cloudelements_config.parse)
    except ValueError as exc:
        # Refused when loaded; one broken since is answered like an unknown tenant.
        log.warning("cloudelements.connection_invalid", tenant=tenant, detail=str(exc))
        return connection, None


def _decode(request: Request, services: Services, wire: bytes) -> bytes:
    return decode_content(
        wire,
        request.headers.get("content-encoding"),
        services.settings.max_decompressed_bytes,
        services.settings.max_compression_ratio,
    )


async def _record(
    request: Request,
    services: Services,
    connection: ConnectionInfo,
    config: CloudElementsConfig,
    body: bytes,
    deadline: Deadline,
) -> Response:
    # Cloud Elements retries a refused notification and then stops the subscription: an
    # authentic notification is always recorded, an unexpected shape quarantined.
    events = parse_notification(body, request.headers, config.options)
    intake = services.intake
    prepared = [
        intake.event(
            connection,
            e.parsed,
            dedupe_key=e.dedupe_key,
            payload=e.payload,
            raw_body=body,
            headers=request.headers,
        )
        for e in events
    ]
    try:
        # All event objects of a notification or none: a retry after a 503 finds all or none.
        async with asyncio.timeout(deadline.remaining()), services.engine.begin() as conn:
            outcomes = await intake.record_many(prepared, conn=conn)
    except DB_ERRORS as exc:
        log.warning("cloudelements.unavailable", error=type(exc).__name__)
        raise unavailable(f"database: {type(exc).__name__}") from exc
    await intake.publish_many(prepared, outcomes)
    answer = json_answer(
        200,
        {
            "status": "accepted",
            "records": [
                {"record_id": str(o.record_id), "duplicate": o.duplicate} for o in outcomes
            ],
            "quarantined": sum(1 for e in events if e.parsed.problems),
        },
    )
    return answer_response(
        answer,
        record_id=",".join(str(o.record_id) for o in outcomes),
        duplicate=all(o.duplicate for o in outcomes),
    )
