"""Cloud Elements notification signatures: a pure function of (header value, body, keys).

[C] ``Elements-Webhook-Signature: sha256=<Base64(HMAC-SHA256(key as UTF-8, raw body))>``; the
receiver recomputes it over the raw body (docs/ats/cloudelements.md; Cloud Elements' "Hash
Verification" guide gives a sample key, body and header, which
tests/sources/cloudelements/test_cloudelements.py checks).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Literal

from app.verifiers import VerificationError

Encoding = Literal["base64", "hex"]


def signature(
    body: bytes, key: bytes, *, prefix: str = "sha256=", encoding: Encoding = "base64"
) -> str:
    """The header value a sender holding ``key`` puts on ``body``."""
    digest = hmac.new(key, body, hashlib.sha256).digest()
    encoded = base64.b64encode(digest).decode() if encoding == "base64" else digest.hex()
    return prefix + encoded


def verify(
    presented: str | None,
    bodies: Sequence[bytes],
    keys: Sequence[bytes],
    *,
    prefix: str = "sha256=",
    encoding: Encoding = "base64",
) -> None:
    """Raise :class:`VerificationError` unless ``presented`` signs one of ``bodies`` with one of
    ``keys`` (several keys while one is rotated; the body as sent and as inflated)."""
    if not presented:
        raise VerificationError("no signature")
    value = presented.strip()
    if not value.lower().startswith(prefix.lower()):
        raise VerificationError("signature without the expected prefix")
    given = value[len(prefix) :]
    given_bytes = (given.lower() if encoding == "hex" else given).encode()
    matched = False
    # Every candidate is compared, so the time taken does not tell which key came close.
    for key in keys:
        for body in bodies:
            expected = signature(body, key, prefix="", encoding=encoding).encode()
            matched |= hmac.compare_digest(expected, given_bytes)
    if not matched:
        raise VerificationError("signature mismatch")
