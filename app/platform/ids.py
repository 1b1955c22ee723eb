"""Identifiers: time-ordered record ids and unguessable tokens."""

from __future__ import annotations

import os
import secrets
import time
import uuid


def uuid7() -> uuid.UUID:
    """An RFC 9562 version 7 UUID: time-ordered, so record ids index like a sequence."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    return uuid.UUID(int=value)


def token() -> str:
    """A URL-safe random token (128 bits)."""
    return secrets.token_urlsafe(16)
