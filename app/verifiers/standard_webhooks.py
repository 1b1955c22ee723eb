"""Standard Webhooks v1 (HMAC-SHA256) verification, as in the spec's reference library."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence

from app.platform.secret_strength import require_strong_secret
from app.verifiers import VerificationError

TOLERANCE_S = 300
SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret


def decode_secret(secret: str) -> bytes:
    """``whsec_<base64>`` as the spec defines it; a bare base64 string is accepted too."""
    body = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a Standard Webhooks secret is 'whsec_' followed by base64") from exc


# [C] docs/ats/standard-webhooks.md: the spec's secrets are "24-64 random bytes"; 24 bytes are 32
# base64
# characters without padding, so a secret with fewer was not made as the spec says.
MIN_SECRET_CHARS = 32
GENERATE_CMD = (
    'python -c "import base64, secrets; '
    "print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\""
)


def require_strong(secret: str, *, what: str) -> None:
    """Refuse a decodable secret under 24 bytes, the spec's minimum; the message never
    contains it."""
    body = secret.strip().removeprefix(SECRET_PREFIX).rstrip("=")
    require_strong_secret(
        body, what=f"the base64 part of {what}", min_length=MIN_SECRET_CHARS, make=GENERATE_CMD
    )


def sign(msg_id: str, timestamp: int, body: bytes, key: bytes) -> str:
    """The ``v1,<base64>`` signature of one message."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    # hmac.digest is the one-shot C path: no HMAC object built per message.
    digest = hmac.digest(key, content, hashlib.sha256)
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(msg_id: str, body: bytes, secret: str, now: float) -> dict[str, str]:
    """The ``webhook-*`` headers (and content type) of one signed JSON message."""
    timestamp = int(now)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(msg_id, timestamp, body, decode_secret(secret)),
        "content-type": "application/json",
    }


def verify(
    headers: Mapping[str, str],
    bodies: Sequence[bytes],
    keys: Sequence[bytes],
    *,
    now: float,
    tolerance_s: int = TOLERANCE_S,
) -> str:
    """Check the headers against each body form and key; return the ``webhook-id``.

    Several keys are accepted so a secret can be rotated without dropping events, and
    several body forms because senders disagree on whether a gzip'd body is signed
    before or after compression.
    """
    msg_id = headers.get("webhook-id")
    ts_text = headers.get("webhook-timestamp")
    sig_header = headers.get("webhook-signature")
    if not msg_id or not ts_text or not sig_header:
        raise VerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(ts_text)
    except ValueError as exc:
        raise VerificationError("webhook-timestamp is not an integer") from exc
    if timestamp < now - tolerance_s:
        raise VerificationError("webhook-timestamp is too old")
    if timestamp > now + tolerance_s:
        raise VerificationError("webhook-timestamp is too far in the future")
    presented = [
        part.split(",", 1)[1].encode()
        for part in sig_header.split()
        if part.startswith("v1,") and len(part) > 3
    ]
    if not presented:
        raise VerificationError("no v1 signature in webhook-signature")
    matched = False
    for key in keys:
        for body in bodies:
            expected = sign(msg_id, timestamp, body, key).split(",", 1)[1].encode()
            # Compare against every presented signature without stopping early.
            for candidate in presented:
                matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise VerificationError("no signature matched")
    return msg_id
