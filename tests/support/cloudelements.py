"""Cloud Elements event notifications as Cloud Elements signs them."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

KEY = "cloud-elements-signature-key-for-acme-0001"


OTHER_KEY = "a-different-signature-key-nobody-configured"


URL = "/v1/cloud-elements/acme/events"


def notification(*events: Any, event_id: str = "ev-1") -> dict[str, Any]:
    raw = {
        "content": [{"id": e["objectId"], "firstName": "Ada"} for e in events if "objectId" in e]
    }
    return {
        "message": {
            "eventId": event_id,
            "elementKey": "smartrecruiters",
            "instanceId": 42,
            "events": list(events),
            "raw": raw,
        }
    }


def event(object_id: str, event_type: str = "UPDATED", **extra: Any) -> dict[str, Any]:
    return {
        "elementKey": "smartrecruiters",
        "objectType": "candidates",
        "objectId": object_id,
        "eventType": event_type,
        **extra,
    }


def sign(body: bytes, key: str = KEY) -> str:
    """Written out here as Cloud Elements' guide does, not with the verifier's own helper."""
    return (
        "sha256=" + base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()
    )
