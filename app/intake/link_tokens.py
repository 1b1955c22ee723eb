"""Per-record link tokens: the record id plus a MAC, so a link names its record unforgeably.

The token goes into the links senders hand to candidates (``https://assess.example.com/start/
{token}``); whoever serves that link resolves it back to the record without a lookup table, and
nobody can walk from one candidate's link to another's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from collections.abc import Sequence

KEY_PURPOSE = "record-link-token-v1"
_MAC_BYTES = 12


def _mac(key: bytes, record_id: uuid.UUID) -> bytes:
    return hmac.new(key, b"record:" + record_id.bytes, hashlib.sha256).digest()[:_MAC_BYTES]


def record_token(record_id: uuid.UUID, keys: Sequence[bytes]) -> str:
    """A URL-safe token for ``record_id`` (38 characters), signed with the first key."""
    raw = record_id.bytes + _mac(keys[0], record_id)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def record_from_token(token: str, keys: Sequence[bytes]) -> uuid.UUID | None:
    """The record a token names, or None when it was not made with any of ``keys``."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 16 + _MAC_BYTES:
        return None
    record_id = uuid.UUID(bytes=raw[:16])
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(_mac(key, record_id), raw[16:])
    return record_id if matched else None
