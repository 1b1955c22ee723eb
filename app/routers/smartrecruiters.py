"""SmartRecruiters native webhooks, one URL per tenant: the activation handshake and the
signed notifications (docs/ats/smartrecruiters.md). Cloud Elements'
SmartRecruiters page (docs/ats/cloudelements.md) covers the other way in, Cloud Elements
polling SmartRecruiters and calling back; these are SmartRecruiters's own webhooks, with no
intermediary.

Everything here runs under the SmartRecruiters deadline (``ACK_DEADLINE_S`` in
app/schemas/smartrecruiters_config.py, 4 s): SmartRecruiters wants a 202 within 5 s and retries
after 1, 3, 10, 45, 120 minutes..., so a request that cannot be committed in time is answered
503 at once, never with a late or uncommitted 2xx.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

import structlog
from cachetools import TTLCache
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel

from app.intake.connections import ConnectionInfo
from app.intake.core import Deadline
from app.intake.payload import decode_content, parse_json
from app.platform.db import DB_ERRORS, run_bounded
from app.platform.errors import AppError, unauthorized, unavailable
from app.routers import openapi
from app.routers.common import (
    DECOY_KEY,
    DefaultRoute,
    ServicesDep,
    accept,
    accepted_answer,
    configured,
    guarded,
    read_raw,
    unauthenticated,
)
from app.schemas import smartrecruiters_config as sr_config
from app.schemas.parsed import Parsed
from app.schemas.smartrecruiters import (
    KNOWN_EVENTS,
    SOURCE,
    ApplicationBody,
    ResourceBody,
    dedupe_key,
    parse,
)
from app.services import Services
from app.sources.smartrecruiters import sample
from app.store import subscriptions
from app.verifiers import VerificationError
from app.verifiers import smartrecruiters as srv

log = structlog.get_logger(__name__)
T = TypeVar("T")
router = APIRouter(prefix="/v1/smartrecruiters", tags=["SmartRecruiters"], route_class=DefaultRoute)
ROUTERS = (router,)

HOOK_SECRET_HEADER = "x-hook-secret"  # noqa: S105 - a header name, not a secret
# [I] The reference's example secret is 13 characters; anything this long is not one.
_MAX_HOOK_SECRET_CHARS = 1024
# A handshake carries no body worth reading.
_MAX_HANDSHAKE_BODY = 64 * 1024
_DECOY_KEYS = [srv.SigningKey(DECOY_KEY)]
_KEY_CACHE_SIZE = 10_000


class SmartRecruitersAccepted(BaseModel):
    status: Literal["accepted"]
    record_id: str
    event_id: str


class SmartRecruitersActivated(BaseModel):
    status: Literal["activated"]


def _body() -> dict[str, Any]:
    schema = {
        "oneOf": [
            openapi.hoisted_model("SmartRecruiters", ResourceBody),
            openapi.hoisted_model("SmartRecruiters", ApplicationBody),
        ]
    }
    return openapi.json_body(
        schema,
        {name: sample(name) for name in sorted(KNOWN_EVENTS)},
        "A notification names its event in the `event-name` header; the body holds ids only: "
        "`{id}` for candidate and job events, `{job_id, candidate_id}` for application events. "
        "The activation handshake (`X-Hook-Secret` header) carries no body worth reading.",
        # The handshake may come without one.
        required=False,
    )


openapi.security_schemes(
    smartrecruitersSignature=openapi.header_scheme(
        "smartrecruiters-signature",
        "SmartRecruiters: the signature over the timestamp and body, with the subscription's "
        "or the connection's key.",
    ),
    smartrecruitersTimestamp=openapi.header_scheme(
        "smartrecruiters-timestamp", "SmartRecruiters: Unix seconds of the signature."
    ),
)

_ANSWERS: openapi.Responses = {
    200: {
        "model": SmartRecruitersActivated,
        "description": "Activation handshake accepted; `X-Hook-Secret` is echoed.",
        "headers": {
            "X-Hook-Secret": {
                "description": "The request's X-Hook-Secret, echoed.",
                "schema": {"type": "string"},
            }
        },
    },
    **openapi.accepted(
        202,
        SmartRecruitersAccepted,
        "Notification recorded, a repeat, or recorded and quarantined (unexpected shape).",
    ),
    **openapi.refusals(
        (400, 401, 408, 413, 415, 429, 503),
        meanings={
            # Malformed JSON is recorded and quarantined; only the encoding is refused.
            400: "A corrupt or truncated gzip/deflate body.",
            401: "Missing, wrong or stale signature, an unknown tenant, or a handshake no "
            "activation is waiting for.",
            503: "The event could not be committed within SmartRecruiters's deadline; retry.",
        },
    ),
}
_HEADERS = [
    {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }
    for name, description in (
        ("event-name", "The notification's event, e.g. application.created."),
        ("event-id", "The notification's id: the dedupe key."),
        ("event-version", "The event's version, e.g. v201910."),
        (
            "X-Hook-Secret",
            "Present only on the activation handshake, which it makes one (echoed in the 200).",
        ),
    )
]


@router.post(
    "/{tenant}/events",
    status_code=202,
    responses=_ANSWERS,
    openapi_extra={
        **_body(),
        **openapi.security(("smartrecruitersSignature", "smartrecruitersTimestamp")),
        "parameters": _HEADERS,
    },
)
async def receive_event(tenant: str, request: Request, services: ServicesDep) -> Response:
    """Receive one SmartRecruiters notification (202), or the activation handshake (200)."""
    deadline = Deadline(min(services.settings.request_deadline_s, sr_config.ACK_DEADLINE_S))
    # Limited by address only, as KeldairHR: the tenant is in a public URL and the keys are
    # SmartRecruiters-generated, so a per-tenant lock would only lock tenants out. The guard
    # is outside the deadline: a refusal it holds back (app.intake.guard) is still a 401, not a 503.
    async with guarded(services, request):
        try:
            # Bounds every wait, the tenant lookup included, not only the intake's statement.
            async with deadline.timeout():
                if HOOK_SECRET_HEADER in request.headers:
                    return await _handshake(tenant, request, services, deadline)
                return await _notification(tenant, request, services, deadline)
        except TimeoutError as exc:
            log.warning("smartrecruiters.deadline", tenant=tenant)
            raise unavailable("the SmartRecruiters deadline passed") from exc


async def _handshake(
    tenant: str, request: Request, services: Services, deadline: Deadline
) -> Response:
    """Echo ``X-Hook-Secret`` for the activation `hirehook smartrecruiters subscribe` started.

    Only a handshake that is expected is accepted: the connection must have a pending
    activation whose window is open (the CLI opens it just before asking SmartRecruiters to
    activate, and one at a time). Anything else is answered like a bad signature, so nobody
    can register a secret for a tenant, nor learn whether the tenant exists.
    """
    secret = request.headers[HOOK_SECRET_HEADER]
    await read_raw(request, _MAX_HANDSHAKE_BODY, deadline.remaining())
    connection = await _bounded(deadline, services.connections.by_tenant(tenant, SOURCE))
    if connection is None or not 0 < len(secret) <= _MAX_HOOK_SECRET_CHARS:
        log.info("smartrecruiters.handshake_refused", tenant=tenant, reason="tenant or secret")
        raise unauthorized()
    try:
        async with services.engine.begin() as conn:
            pending = await subscriptions.pending_for_update(conn, connection.id)
            if pending is None:
                activated = None
            else:
                stored = services.cipher.decrypt_json(pending.secrets)
                stored["hook_secret"] = secret
                await subscriptions.activate(conn, pending.id, services.cipher.encrypt_json(stored))
                activated = str(pending.external_id)
    except DB_ERRORS as exc:
        raise unavailable(f"database: {type(exc).__name__}") from exc
    if activated is None:
        log.info("smartrecruiters.handshake_refused", tenant=tenant, reason="no activation")
        raise unauthorized()
    _forget_keys(request.app, connection.id)
    log.info("smartrecruiters.subscription_activated", tenant=tenant, subscription=activated)
    return Response(
        b'{"status":"activated"}',
        200,
        headers={"X-Hook-Secret": secret},
        media_type="application/json",
    )


async def _notification(
    tenant: str, request: Request, services: Services, deadline: Deadline
) -> Response:
    settings = services.settings
    wire = await read_raw(request, settings.max_body_bytes, deadline.remaining())
    # Nothing is looked up beyond the tenant, nor inflated or parsed, for a request that cannot
    # be authentic: the tenant must be known, the signature headers there and a key live.
    connection = await _bounded(deadline, services.connections.by_tenant(tenant, SOURCE))
    signed = srv.SIGNATURE_HEADER in request.headers and srv.TIMESTAMP_HEADER in request.headers
    config = None
    keys: list[srv.SigningKey] = []
    if signed:
        config = configured(connection, sr_config.parse, source=SOURCE, tenant=tenant)
    if connection is not None and config is not None:
        keys = config.secrets.verification_keys() + await _bounded(
            deadline, _subscription_keys(request.app, services, connection)
        )
    now = time.time()
    if connection is None or config is None or not any(key.live(now) for key in keys):
        raise unauthenticated(
            SOURCE,
            tenant,
            "tenant, key or header",
            decoy=lambda: srv.verify(request.headers, [wire], _DECOY_KEYS, now=now),
        )
    body = decode_content(
        wire,
        request.headers.get("content-encoding"),
        settings.max_decompressed_bytes,
        settings.max_compression_ratio,
    )
    try:
        srv.verify(
            request.headers,
            [body] if body is wire else [body, wire],
            keys,
            now=now,
            tolerance_s=config.options.tolerance_s,
        )
    except VerificationError as exc:
        raise unauthenticated(SOURCE, tenant, str(exc)) from exc

    # SmartRecruiters retries a refusal ten times and then drops the event: an authentic
    # notification whose body does not fit is recorded and quarantined, never refused
    # (`hirehook dead-letters retry` parses it again once the model is fixed).
    payload: Any
    try:
        payload = parse_json(body)
    except AppError as exc:
        if exc.status != 400:
            raise
        payload = None
        parsed = Parsed(
            request.headers.get("event-name", "").strip() or "unknown",
            known=False,
            problems=(exc.user_message,),
        )
    else:
        parsed = parse(payload, request.headers.get("event-name", ""))
    event_id = dedupe_key(request.headers, body)
    return await accept(
        services,
        connection,
        parsed,
        dedupe_key=event_id,
        payload=payload,
        raw_body=body,
        headers=request.headers,
        deadline=deadline,
        answer=accepted_answer(202, event_id=event_id),
    )


def _key_cache(app: FastAPI, ttl_s: float) -> TTLCache[int, list[srv.SigningKey]] | None:
    """This app's short cache of subscription keys, per connection (none when TTL is 0)."""
    if ttl_s <= 0:
        return None
    cache: TTLCache[int, list[srv.SigningKey]] | None = getattr(
        app.state, "smartrecruiters_keys", None
    )
    if cache is None:
        cache = TTLCache(_KEY_CACHE_SIZE, ttl_s)
        app.state.smartrecruiters_keys = cache
    return cache


def _forget_keys(app: FastAPI, connection_id: int) -> None:
    cache = getattr(app.state, "smartrecruiters_keys", None)
    if cache is not None:
        cache.pop(connection_id, None)


async def _bounded(deadline: Deadline, work: Awaitable[T]) -> T:
    """``work`` within what is left of the deadline, answered on time even when cancelling a
    stalled database call takes longer (see app.platform.db.run_bounded)."""

    async def run() -> T:
        return await work

    return await run_bounded(run, deadline.remaining())


async def _subscription_keys(
    app: FastAPI, services: Services, connection: ConnectionInfo
) -> list[srv.SigningKey]:
    """The keys generated for the connection's active subscriptions (cached as briefly as the
    connection itself, so a rotated key is accepted within seconds on every replica)."""
    cache = _key_cache(app, services.settings.connection_cache_ttl_s)
    if cache is not None and connection.id in cache:
        return cache[connection.id]
    try:
        async with services.autocommit.connect() as conn:
            blobs = await subscriptions.active_secrets(conn, connection.id)
    except DB_ERRORS as exc:
        raise unavailable(f"database: {type(exc).__name__}") from exc
    keys: list[srv.SigningKey] = []
    for blob in blobs:
        try:
            keys += sr_config.subscription_keys(services.cipher.decrypt_json(blob))
        except (ValueError, KeyError, TypeError) as exc:
            # Encrypted with a key no longer configured: the other subscriptions still count.
            log.warning("smartrecruiters.subscription_keys_unreadable", error=type(exc).__name__)
    if cache is not None:
        cache[connection.id] = keys
    return keys
