"""HR Manager requests as Talentech HR Manager signs them."""

from __future__ import annotations

import base64
import hashlib
import hmac

URL = "/v1/hrmanager/acme/events"


HEX_SECRET = b"acme-hr-manager-shared-secret-hex-0001".hex()


def sign(body: bytes, key: bytes) -> str:
    """What Talentech's sample computes: Base64(HMAC-SHA256(secret, raw body))."""
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def signed(body: bytes, key: bytes | None = None) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "X-Signature-Base64HmacSha256": sign(body, key or bytes.fromhex(HEX_SECRET)),
    }
