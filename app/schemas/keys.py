"""Dedupe keys from ids: an unambiguous encoding, whatever characters the ids contain."""

from __future__ import annotations

import hashlib

import orjson


def digest(*parts: str | int | None) -> str:
    """A key for the tuple ``parts``: SHA-256 of its JSON encoding, so ``("1:2", "3")`` and
    ``("1", "2:3")`` can never meet (joining with a separator lets them collide)."""
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


def credential_id(kind: str, value: str) -> str:
    """The fingerprint a connection is found by for one presented identity (``basic``,
    ``hmac``, ``oauth``, ...); a hash, so a Basic username is not stored in clear."""
    return digest("credential", kind, value)[:40]
