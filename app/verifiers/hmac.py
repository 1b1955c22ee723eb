"""Body-HMAC signatures as many ATSs send them: a pure function of (header values, body, keys,
now).

One header carries ``<prefix><hex or base64 HMAC(key, message)>``; the message is the raw body,
or ``<timestamp>.<body>`` when the sender also sends a timestamp header (docs/ats/hmac-signers.md).
What varies between ATSs (header, prefix, algorithm, encoding, timestamp) is the connection's
configuration (app/schemas/hmac_config.py); this module only computes and compares.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Sequence
from typing import Literal

from app.verifiers import VerificationError

Algorithm = Literal["sha1", "sha256", "sha512"]
Encoding = Literal["hex", "base64"]
Signed = Literal["body", "timestamp.body"]

# [I] Senders that state their timestamp in milliseconds write 13 digits; seconds stay at 10
# until the year 2286, so anything past this is read as milliseconds.
_MILLISECONDS_FROM = 10**11


def message(body: bytes, *, signed: Signed = "body", timestamp: str | None = None) -> bytes:
    """The bytes that are signed: the body, or ``<timestamp>.<body>``."""
    if signed == "body":
        return body
    if timestamp is None:
        raise VerificationError("no timestamp")
    return timestamp.encode() + b"." + body


def signature(
    body: bytes,
    key: bytes,
    *,
    algorithm: Algorithm = "sha256",
    encoding: Encoding = "hex",
    prefix: str = "",
    signed: Signed = "body",
    timestamp: str | None = None,
) -> str:
    """The header value a sender holding ``key`` puts on ``body``."""
    digest = hmac.new(key, message(body, signed=signed, timestamp=timestamp), algorithm).digest()
    encoded = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    return prefix + encoded


def check_timestamp(timestamp: str | None, *, now: float, tolerance_s: int) -> None:
    """Raise unless ``timestamp`` (Unix seconds, or milliseconds) is within ``tolerance_s``."""
    if timestamp is None or not timestamp.strip().isdigit():
        raise VerificationError("no timestamp, or not Unix time")
    sent = int(timestamp.strip())
    seconds = sent / 1000 if sent >= _MILLISECONDS_FROM else float(sent)
    if abs(now - seconds) > tolerance_s:
        raise VerificationError("timestamp outside the tolerance")


def verify(
    presented: str | None,
    bodies: Sequence[bytes],
    keys: Sequence[bytes],
    *,
    now: float,
    algorithm: Algorithm = "sha256",
    encoding: Encoding = "hex",
    prefix: str = "",
    signed: Signed = "body",
    timestamp: str | None = None,
    tolerance_s: int | None = None,
) -> None:
    """Raise :class:`VerificationError` unless ``presented`` signs one of ``bodies`` with one of
    ``keys`` (several while a secret is rotated; the body as sent and as inflated), and the
    timestamp, when ``tolerance_s`` is given, is fresh."""
    if not presented or not presented.strip():
        raise VerificationError("no signature")
    if tolerance_s is not None:
        check_timestamp(timestamp, now=now, tolerance_s=tolerance_s)
    value = presented.strip()
    if not value.lower().startswith(prefix.lower()):
        raise VerificationError("signature without the expected prefix")
    given = value[len(prefix) :].strip()
    given_bytes = (given.lower() if encoding == "hex" else given).encode()
    matched = False
    # Every candidate is compared, so the time taken does not tell which key came close.
    for key in keys:
        for body in bodies:
            expected = signature(
                body,
                key,
                algorithm=algorithm,
                encoding=encoding,
                signed=signed,
                timestamp=timestamp,
            ).encode()
            matched |= hmac.compare_digest(expected, given_bytes)
    if not matched:
        raise VerificationError("signature mismatch")
