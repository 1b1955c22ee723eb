"""Sample senders: sign and post events the way each ATS does (demo, benchmark, smoke tests)."""

from __future__ import annotations

import gzip
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from app.verifiers import standard_webhooks as swh


def keldair_sample(
    event_type: str = "applicant.hired", event_id: str | None = None
) -> dict[str, Any]:
    """A KeldairHR event in the seed's envelope."""
    now = datetime.now(UTC).isoformat()
    data: dict[str, Any]
    if event_type == "onboarding_file.completed":
        data = {"id": f"of_{uuid.uuid4().hex[:10]}", "applicantId": "ap_1001", "completedAt": now}
    else:
        data = {
            "id": "ap_1001",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "email": "ada@example.com",
            "jobId": "job_42",
            "hiredAt": now,
        }
    return {
        "id": event_id or str(uuid.uuid4()),
        "type": event_type,
        "version": "2022-02-23",
        "dateOccurred": now,
        "data": data,
    }


def standard_webhook_headers(body: bytes, secret: str, msg_id: str) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``."""
    ts = int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": swh.sign(msg_id, ts, body, swh.decode_secret(secret)),
        "content-type": "application/json",
    }


def send_standard_webhook(
    url: str, payload: dict[str, Any], secret: str, *, gzip_body: bool = False
) -> httpx.Response:
    """POST one signed event."""
    body = orjson.dumps(payload)
    headers = standard_webhook_headers(body, secret, str(payload.get("id", uuid.uuid4())))
    content = body
    if gzip_body:
        content = gzip.compress(body)
        headers["content-encoding"] = "gzip"
    return httpx.post(url, content=content, headers=headers, timeout=30)
