"""KeldairHR requests as KeldairHR sends them: Standard Webhooks, signed by the spec's reference
library."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


OTHER = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tMDE="


URL = "/v1/keldair/acme/events"


def event(event_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event_id or str(uuid.uuid4()),
        "type": "applicant.hired",
        "version": "2022-02-23",
        "dateOccurred": "2022-02-23T18:46:43+00:00",
        "data": {"id": "ap_1", "firstName": "Ada", "jobId": "job_9"},
    }
    body.update(overrides)
    return body


def signed(
    body: bytes, *, secret: str = SECRET, msg_id: str = "msg_1", at: float | None = None
) -> dict[str, str]:
    ts = datetime.fromtimestamp(at if at is not None else time.time(), tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(ts.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, ts, body.decode()),
        "content-type": "application/json",
    }


async def post(client: httpx.AsyncClient, payload: dict[str, Any], **kw: Any) -> httpx.Response:
    body = orjson.dumps(payload)
    return await client.post(URL, content=body, headers=signed(body, **kw))
