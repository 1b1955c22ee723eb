"""Talentech HR Manager webhook authentication: pure functions of (header, body, secrets).

[C] ``Talentech/Webhooks`` (README.md, TalentechWebhookClient/Program.cs; docs/ats/hrmanager.md):
the ``X-Signature-Base64HmacSha256`` header is Base64(HMAC-SHA256(secret, raw body)), compared
in constant time; a missing header is answered 400, a mismatch 401. The sample hex-decodes the
secret (``Convert.FromHexString``) while the README only says "shared secret": [I] the
encoding is the connection's ``options.secret_encoding`` (``hex`` or ``utf-8``).

[C] The webhook's "User Data" section can carry "an extra key to prevent anyone else posting
data into your integration" (docs/ats/hrmanager.md); [I] where it lands in the body is
the connection's ``options.user_data_path``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any, Literal

from app.verifiers import VerificationError

SIGNATURE_HEADER = "X-Signature-Base64HmacSha256"
SecretEncoding = Literal["hex", "utf-8"]


class MissingSignatureError(VerificationError):
    """The request carries no signature at all (HR Manager's sample answers 400)."""


def decode_secret(secret: str, encoding: SecretEncoding) -> bytes:
    """The HMAC key of a shared secret; raises ValueError (never echoing it) if not decodable."""
    if encoding == "utf-8":
        return secret.encode()
    try:
        return bytes.fromhex(secret)
    except ValueError:
        raise ValueError("the secret is not hexadecimal") from None


def sign(body: bytes, key: bytes) -> str:
    """The header value HR Manager sends for ``body``: Base64 of the HMAC-SHA256 digest."""
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def verify_signature(presented: str | None, bodies: Sequence[bytes], keys: Sequence[bytes]) -> None:
    """Check the header's value against every body form and key, without stopping early.

    Several keys because every webhook may have its own secret while many share one URL (and a
    secret is rotated by listing old and new); several body forms because a gzip'd body may
    have been signed before or after compression ([I] not documented).
    """
    if presented is None or not presented.strip():
        raise MissingSignatureError(f"no {SIGNATURE_HEADER} header")
    try:
        digest = base64.b64decode(presented.strip(), validate=True)
    except (binascii.Error, ValueError):
        # Still compared below, so a malformed value costs what a wrong one costs.
        digest = b""
    matched = False
    for key in keys:
        for body in bodies:
            expected = hmac.new(key, body, hashlib.sha256).digest()
            matched |= hmac.compare_digest(expected, digest)
    if not matched:
        raise VerificationError("the signature does not match")


def verify_user_data(presented: Any, expected: str) -> None:
    """Check the User Data key found in the body (``presented``) in constant time."""
    if not isinstance(presented, str):
        # Compared anyway: an absent key costs what a wrong one costs.
        hmac.compare_digest(expected.encode(), expected.encode()[::-1])
        raise VerificationError("no User Data key in the body")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise VerificationError("the User Data key does not match")
