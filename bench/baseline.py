"""The baseline: a bare FastAPI endpoint that only parses and validates the same body."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from app.intake.payload import decode_content
from app.schemas.icims import parse_event as parse_icims_event
from app.schemas.keldair import parse_event

app = FastAPI()


@app.post("/v1/keldair/{tenant}/events")
async def receive(tenant: str, request: Request) -> Response:
    """Parse JSON and validate the typed event; store nothing."""
    payload: Any = orjson.loads(await request.body())
    event = parse_event(payload)
    return Response(
        orjson.dumps({"status": "accepted", "event_id": event.id, "tenant": tenant}),
        media_type="application/json",
    )


@app.post("/v1/icims/events")
async def receive_icims(request: Request) -> Response:
    """Inflate, parse JSON and validate the typed iCIMS event; store nothing."""
    body = decode_content(await request.body(), request.headers.get("content-encoding"), 1 << 23)
    event = parse_icims_event(orjson.loads(body))
    return Response(
        orjson.dumps({"status": "accepted", "eventType": event.event_type}),
        media_type="application/json",
    )
