"""SmartRecruiters webhook signatures: a pure function of (headers, body, keys, now).

[C] docs/ats/smartrecruiters.md and the reference page ``subscriptionsgeneratesecretkey-1``:
``smartrecruiters-signature: v1=<sig>;v1=<sig>`` carries one signature per live key (and, in
future, per scheme), ``smartrecruiters-timestamp`` is the request's time in seconds, and v1 is
HMAC-SHA256 over ``timestamp.body.event-id.event-name.event-version.link`` joined by ``.``, a
missing header counting as the empty string. After a new key is generated the previous one
stays valid for 24 hours; at most 16 keys are live at once.

[I] The digest is hex (the reference's 64-character example); the key is used as its UTF-8
bytes. Both are confirmed by the reference's worked example, reproduced in
tests/sources/smartrecruiters/test_smartrecruiters_webhooks.py (its published signature
``2e9291f1...``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from app.verifiers import VerificationError

SIGNATURE_HEADER = "smartrecruiters-signature"
TIMESTAMP_HEADER = "smartrecruiters-timestamp"
# The signed headers, in the order they are signed after the body.
SIGNED_HEADERS = ("event-id", "event-name", "event-version", "link")
TOLERANCE_S = 300
# [C] "After a new key is made the old one stays valid 24 h."
ROTATION_GRACE_S = 24 * 3600
# SmartRecruiters keeps at most 16 live keys; a header with many more signatures than that is
# not from SmartRecruiters, and checking each one against each key would be work for nothing.
MAX_SIGNATURES = 32


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One secret key; ``expires_at`` (Unix seconds) is None while it is the current key."""

    secret: bytes = field(repr=False)
    expires_at: float | None = None

    def live(self, now: float) -> bool:
        """Whether a signature made with this key is still accepted at ``now``."""
        return self.expires_at is None or now < self.expires_at


def signed_content(timestamp: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """What v1 signs: ``timestamp.body.event-id.event-name.event-version.link``."""
    tail = ".".join(headers.get(name, "") for name in SIGNED_HEADERS)
    return timestamp.encode() + b"." + body + b"." + tail.encode()


def sign(key: bytes, timestamp: str, body: bytes, headers: Mapping[str, str]) -> str:
    """The v1 signature (hex) of one notification."""
    return hmac.new(key, signed_content(timestamp, body, headers), hashlib.sha256).hexdigest()


def signature_header(
    keys: Sequence[bytes], timestamp: str, body: bytes, headers: Mapping[str, str]
) -> str:
    """The ``smartrecruiters-signature`` value SmartRecruiters sends: one ``v1=`` per key."""
    return ";".join(f"v1={sign(key, timestamp, body, headers)}" for key in keys)


def presented_signatures(header: str) -> list[bytes]:
    """The v1 signatures of a ``smartrecruiters-signature`` value; other schemes are skipped
    (SmartRecruiters may add schemes "without breaking backward compatibility")."""
    found = []
    for part in header.split(";")[:MAX_SIGNATURES]:
        scheme, _, value = part.strip().partition("=")
        if scheme.strip().lower() == "v1" and value.strip():
            found.append(value.strip().lower().encode())
    return found


def verify(
    headers: Mapping[str, str],
    bodies: Sequence[bytes],
    keys: Sequence[SigningKey],
    *,
    now: float,
    tolerance_s: int = TOLERANCE_S,
) -> None:
    """Raise :class:`VerificationError` unless a live key signed one of ``bodies`` recently.

    ``bodies`` holds the body as sent and, for a compressed request, as inflated: which one a
    sender signs is not documented for compressed bodies.
    """
    header = headers.get(SIGNATURE_HEADER)
    ts_text = headers.get(TIMESTAMP_HEADER)
    if not header or not ts_text:
        raise VerificationError("missing smartrecruiters-signature or smartrecruiters-timestamp")
    try:
        timestamp = int(ts_text)
    except ValueError as exc:
        raise VerificationError("smartrecruiters-timestamp is not an integer") from exc
    if timestamp < now - tolerance_s:
        raise VerificationError("smartrecruiters-timestamp is too old")
    if timestamp > now + tolerance_s:
        raise VerificationError("smartrecruiters-timestamp is too far in the future")
    presented = presented_signatures(header)
    if not presented:
        raise VerificationError("no v1 signature in smartrecruiters-signature")
    live = [key for key in keys if key.live(now)]
    if not live:
        raise VerificationError("no live signing key")
    matched = False
    for key in live:
        for body in bodies:
            # The signed text is the header's own digits, not a re-rendering of the integer.
            expected = sign(key.secret, ts_text, body, headers).encode()
            # Compare against every presented signature without stopping early.
            for candidate in presented:
                matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise VerificationError("no signature matched a live key")
