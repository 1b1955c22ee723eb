"""The baseline: a bare FastAPI endpoint that only parses and validates the same body."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

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
