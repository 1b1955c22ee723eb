"""Webhooks signed with an HMAC of the raw body in one header (Ashby, Greenhouse, ...): one URL
per tenant, the scheme per connection (app/schemas/hmac_config.py, docs/hmac.md)."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from app.intake.core import Deadline
from app.intake.payload import decode_content, parse_json
from app.platform.errors import AppError
from app.routers import openapi
from app.routers.common import (
    DECOY_KEY,
    DefaultRoute,
    ServicesDep,
    accept,
    accepted_answer,
    guarded,
    read_raw,
    tenant_config,
    unauthenticated,
)
from app.schemas import hmac_config
from app.schemas.hmac import SOURCE, dedupe_key, markers, parse
from app.schemas.parsed import Parsed
from app.sources.hmac import sample
from app.verifiers import VerificationError
from app.verifiers import hmac as signatures

router = APIRouter(prefix="/v1/hmac", tags=["HMAC"], route_class=DefaultRoute)
ROUTERS = (router,)


class HmacAccepted(BaseModel):
    status: Literal["accepted"]
    record_id: str
    event: str = Field(description="The event's name, or `unknown` for a quarantined event.")


def _body() -> dict[str, Any]:
    return openapi.json_body(
        {
            "type": "object",
            "description": "Any JSON object; the event's name is at the "
            "connection's `event_path` (or in its `event_header`).",
        },
        {preset: sample(preset, event_id=f"evt-{preset}")[0] for preset in hmac_config.PRESETS},
        "One event as the ATS sends it, signed with an HMAC of the raw body. An authentic "
        "event without a name where the connection says it is, or that is not JSON, is "
        "recorded and quarantined (answered 200), never refused.",
    )


_ANSWERS = openapi.event_answers(
    HmacAccepted,
    "Recorded, a repeat of a recorded event, or recorded and quarantined (unexpected shape).",
    meanings={
        # Malformed JSON is recorded and quarantined; only the encoding is refused.
        400: "A corrupt or truncated gzip/deflate body.",
        401: "Missing, wrong or stale signature (or timestamp), or an unknown tenant.",
    },
)
openapi.security_schemes(
    hmacSignature=openapi.header_scheme(
        "Signature",
        "`<prefix><hex or base64 HMAC of the body>` in the connection's header: "
        "`Ashby-Signature: sha256=<hex>` (Ashby), `Signature: sha256 <hex>` (Greenhouse), or "
        "as configured; see docs/hmac.md.",
    )
)


@router.post(
    "/{tenant}/events",
    status_code=200,
    responses=_ANSWERS,
    openapi_extra={**_body(), **openapi.security(("hmacSignature",))},
)
async def receive_event(tenant: str, request: Request, services: ServicesDep) -> Response:
    """Receive one HMAC-signed event for ``tenant``."""
    settings = services.settings
    deadline = Deadline(settings.request_deadline_s)
    # Limited by address only, as KeldairHR: the tenant slug is in a public URL and a secret of
    # 32 or more characters is not guessed, so a per-tenant lock would only lock tenants out.
    async with guarded(services, request):
        wire = await read_raw(request, settings.max_body_bytes, deadline.remaining())
        connection, config = await tenant_config(services, tenant, SOURCE, hmac_config.parse)
        scheme = config.scheme if config is not None else None
        presented = request.headers.get(scheme.signature_header) if scheme else None
        timestamp = (
            request.headers.get(scheme.timestamp_header)
            if scheme and scheme.timestamp_header
            else None
        )
        # Nothing is inflated or parsed before the request can be authentic.
        if (
            connection is None
            or config is None
            or scheme is None
            or not presented
            or (scheme.timestamp_header and not timestamp)
        ):
            raise unauthenticated(
                SOURCE,
                tenant,
                "unknown tenant or no signature",
                decoy=lambda: signatures.verify(
                    presented or "x", [wire], [DECOY_KEY], now=time.time()
                ),
            )
        body = decode_content(
            wire,
            request.headers.get("content-encoding"),
            settings.max_decompressed_bytes,
            settings.max_compression_ratio,
        )
        try:
            signatures.verify(
                presented,
                [body] if body is wire else [body, wire],
                config.keys,
                now=time.time(),
                algorithm=scheme.algorithm,
                encoding=scheme.encoding,
                prefix=scheme.prefix,
                signed=scheme.signed,
                timestamp=timestamp,
                tolerance_s=scheme.tolerance_s if scheme.timestamp_header else None,
            )
        except VerificationError as exc:
            raise unauthenticated(SOURCE, tenant, str(exc)) from exc

    marked = markers(request.headers, scheme)
    payload: Any
    try:
        payload = parse_json(body)
    except AppError as exc:
        if exc.status != 400:
            raise
        # Authentic but not JSON: recorded and quarantined, never refused.
        payload = None
        parsed = Parsed("unknown", known=False, problems=(exc.user_message,))
    else:
        parsed = parse(payload, marked, scheme)
    return await accept(
        services,
        connection,
        parsed,
        dedupe_key=dedupe_key(payload, marked, body, scheme),
        payload=payload,
        raw_body=body,
        headers=request.headers,
        markers=marked,
        deadline=deadline,
        answer=accepted_answer(event=parsed.event_type),
    )
