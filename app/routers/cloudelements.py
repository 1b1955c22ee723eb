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
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from app.intake.connections import ConnectionInfo
from app.intake.core import Deadline, json_answer
from app.platform.db import DB_ERRORS
from app.platform.errors import unavailable
from app.routers import openapi
from app.routers.common import (
    DECOY_KEY,
    DefaultRoute,
    ServicesDep,
    answer_response,
    decoded,
    guarded,
    read_raw,
    tenant_config,
    token_opening,
    unauthenticated,
)
from app.schemas import cloudelements_config
from app.schemas.cloudelements import SOURCE, parse_notification
from app.schemas.cloudelements_config import CloudElementsConfig
from app.services import Services
from app.sources.cloudelements import sample
from app.verifiers import VerificationError
from app.verifiers import cloudelements as signatures

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/cloud-elements", tags=["Cloud Elements"], route_class=DefaultRoute)
ROUTERS = (router,)


class CloudElementsRecord(BaseModel):
    record_id: str
    duplicate: bool


class CloudElementsAccepted(BaseModel):
    status: Literal["accepted"]
    records: list[CloudElementsRecord] = Field(description="One per event object, in order.")
    quarantined: int = Field(description="Event objects recorded but not of an expected shape.")


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


def _body() -> dict[str, Any]:
    examples: dict[str, Any] = {}
    for event_type in ("CREATED", "UPDATED", "DELETED"):
        notification = sample(1, event_id=f"evt-{event_type.lower()}")
        for event in notification["message"]["events"]:
            event["eventType"] = event_type
        examples[event_type] = notification
    return openapi.json_body(
        openapi.hoisted_model("", CloudElementsNotification),
        examples,
        "One Cloud Elements event notification: one record per event object. An authentic "
        "notification of another shape is recorded and quarantined (answered 200).",
    )


_ANSWERS = openapi.event_answers(
    CloudElementsAccepted,
    "Every event object recorded (or a repeat); unexpected shapes quarantined.",
    meanings={
        # Malformed JSON is recorded and quarantined; only the encoding is refused.
        400: "A corrupt or truncated gzip/deflate body.",
        401: "Missing or wrong signature or URL token, or an unknown tenant.",
        503: "The notification could not be committed (all its events or none); retry.",
    },
)
_BODY = _body()
openapi.security_schemes(
    cloudElementsSignature=openapi.header_scheme(
        "Elements-Webhook-Signature",
        "Cloud Elements: HMAC-SHA256 of the body with the element instance's "
        "event.notification.signature.key (header name configurable per connection).",
    )
)


@router.post(
    "/{tenant}/events",
    status_code=200,
    responses=_ANSWERS,
    openapi_extra={**_BODY, **openapi.security(("cloudElementsSignature",))},
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
        connection, config = await tenant_config(
            services, tenant, SOURCE, cloudelements_config.parse
        )
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
            raise unauthenticated(
                SOURCE,
                tenant,
                "unknown tenant or no signature",
                decoy=lambda: signatures.verify(presented or "sha256=", [wire], [DECOY_KEY]),
            )
        body = decoded(request, services, wire)
        try:
            signatures.verify(
                presented,
                [body] if body is wire else [body, wire],
                config.keys,
                prefix=config.options.signature_prefix,
                encoding=config.options.signature_encoding,
            )
        except VerificationError as exc:
            raise unauthenticated(SOURCE, tenant, str(exc)) from exc
    return await _record(request, services, connection, config, body, deadline)


@router.post(
    "/{tenant}/events/{token}",
    status_code=200,
    responses=_ANSWERS,
    # The token in the path is the credential: no header to document.
    openapi_extra={**_BODY, "security": []},
)
async def receive_notification_by_token(
    tenant: str, token: str, request: Request, services: ServicesDep
) -> Response:
    """Receive one Cloud Elements event notification for a tenant whose instance has no
    signature key: its connection authenticates it by a secret token in the callback URL
    (``auth = "url_token"``)."""
    deadline = Deadline(services.settings.request_deadline_s)
    connection, config, body = await token_opening(
        services,
        request,
        tenant=tenant,
        token=token,
        source=SOURCE,
        parse=cloudelements_config.parse,
        tokens=lambda c: c.secrets.url_tokens if c.options.auth == "url_token" else [],
        deadline=deadline,
    )
    return await _record(request, services, connection, config, body, deadline)


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
