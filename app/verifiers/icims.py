"""iCIMS event authentication: HTTP Basic and the ``x-icims-v1-hmac-sha256`` scheme.

Pure functions of (headers, raw body, secrets, now); every comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from app.verifiers import VerificationError

HMAC_ALGORITHM = "x-icims-v1-hmac-sha256"
DATE_HEADER = "x-icims-date"
CONTENT_HASH_HEADER = "x-icims-content-sha256"
# The headers iCIMS was seen signing (docs/ats/icims.md, developer-community comment/1541).
SIGNED_HEADERS = ("content-type", "host", CONTENT_HASH_HEADER, DATE_HEADER)
# Without these two a signature would not bind the body or the time.
_MUST_SIGN = frozenset({CONTENT_HASH_HEADER, DATE_HEADER})


def scheme(authorization: str | None) -> str:
    """The lower-cased scheme of an ``Authorization`` header, or ``""``."""
    # A value of only whitespace (" ", or "\x85", which servers do not strip) has no words.
    words = (authorization or "").split(None, 1)
    return words[0].lower() if words else ""


def verify_basic(authorization: str | None, username: str, password: str) -> None:
    """Check ``Authorization: Basic`` against one username and password."""
    if scheme(authorization) != "basic" or authorization is None:
        raise VerificationError("no Basic credentials")
    encoded = authorization.strip().split(None, 1)[1] if " " in authorization.strip() else ""
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("Basic credentials are not base64") from exc
    user, sep, secret = decoded.partition(b":")
    # Both compared, always: a wrong username must not answer faster than a wrong password.
    ok = hmac.compare_digest(user, username.encode()) & hmac.compare_digest(
        secret, password.encode()
    )
    if not sep or not ok:
        raise VerificationError("Basic credentials do not match")


@dataclass(frozen=True, slots=True)
class HmacAuthorization:
    """The parts of an ``x-icims-v1-hmac-sha256`` Authorization header."""

    user: str
    signed_headers: str
    signature: str

    @property
    def header_names(self) -> list[str]:
        """The signed header names, in the order given."""
        return [h.strip().lower() for h in self.signed_headers.split(";") if h.strip()]


def parse_hmac_authorization(value: str | None) -> HmacAuthorization:
    """``x-icims-v1-hmac-sha256 user=...,signedheaders=...,signature=...``."""
    if not value or scheme(value) != HMAC_ALGORITHM:
        raise VerificationError("no x-icims-v1-hmac-sha256 Authorization")
    params: dict[str, str] = {}
    for part in value.strip()[len(HMAC_ALGORITHM) :].split(","):
        name, sep, val = part.strip().partition("=")
        if sep:
            params[name.strip().lower()] = val.strip()
    try:
        return HmacAuthorization(
            user=params["user"],
            signed_headers=params["signedheaders"],
            signature=params["signature"].lower(),
        )
    except KeyError as exc:
        raise VerificationError(f"Authorization lacks {exc.args[0]}=") from exc


def string_to_sign(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: str,
) -> str:
    """What the HMAC covers.

    [I] docs/ats/icims.md: iCIMS's page confirms the header names and the Authorization
    format but its string-to-sign text is not public; this follows a third-party client:
    canonical = METHOD, path, query, the signed headers as sorted ``name:value`` lines, an
    empty line and the signedheaders list, joined by newlines; the string to sign is the
    algorithm, the ``x-icims-date`` value and the hex SHA-256 of the canonical request. Kept in
    this one function so a correction against a real iCIMS sample touches nothing else.
    """
    names = sorted(h.strip().lower() for h in signed_headers.split(";") if h.strip())
    lines = [f"{name}:{headers.get(name, '').strip()}" for name in names]
    canonical = "\n".join([method.upper(), path, query, *lines, "", signed_headers])
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return "\n".join([HMAC_ALGORITHM, headers.get(DATE_HEADER, ""), digest])


def sign(secret: str, text: str) -> str:
    """Hex HMAC-SHA256 of ``text``; [I] the secret is used as its UTF-8 bytes."""
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def parse_date(value: str) -> datetime:
    """``x-icims-date``: ``2017-10-18T14:53:40+0000``; ISO 8601 with ``Z`` or ``+00:00`` too."""
    try:
        return datetime.strptime(value.strip(), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise VerificationError("x-icims-date is not a date") from exc
    if parsed.tzinfo is None:
        raise VerificationError("x-icims-date has no time zone")
    return parsed


def hash_matches(presented: str, bodies: Sequence[bytes]) -> bool:
    """Whether ``x-icims-content-sha256`` is the SHA-256 of one of ``bodies``."""
    wanted = presented.strip().lower().encode()
    ok = False
    for body in bodies:
        ok |= hmac.compare_digest(hashlib.sha256(body).hexdigest().encode(), wanted)
    return ok


def verify_hmac_headers(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    now: float,
    tolerance_s: int,
    expected_user: str | None = None,
    bodies: Sequence[bytes] | None = None,
) -> str:
    """Check everything an HMAC signature covers except the body itself; returns the presented
    content hash, which binds the body and is checked by :func:`hash_matches` (here already,
    before the signature, when ``bodies`` are given).

    The signature covers the content-hash header, so a request can be proven authentic before
    its (perhaps compressed) body is touched.
    """
    auth = parse_hmac_authorization(headers.get("authorization"))
    names = auth.header_names
    missing = _MUST_SIGN - set(names)
    if missing:
        raise VerificationError(f"signedheaders lacks {', '.join(sorted(missing))}")
    for name in names:
        if headers.get(name) is None:
            raise VerificationError(f"signed header {name} is not in the request")
    when = parse_date(headers[DATE_HEADER]).timestamp()
    if abs(now - when) > tolerance_s:
        raise VerificationError("x-icims-date is outside the tolerance")
    presented = headers[CONTENT_HASH_HEADER]
    if bodies is not None and not hash_matches(presented, bodies):
        raise VerificationError("x-icims-content-sha256 does not match the body")
    text = string_to_sign(
        method=method, path=path, query=query, headers=headers, signed_headers=auth.signed_headers
    )
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(sign(secret, text).encode(), auth.signature.encode())
    if expected_user is not None:
        matched &= hmac.compare_digest(auth.user.encode(), expected_user.encode())
    if not matched:
        raise VerificationError("no HMAC signature matched")
    return presented


def verify_hmac(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    bodies: Sequence[bytes],
    secrets: Sequence[str],
    now: float,
    tolerance_s: int,
    expected_user: str | None = None,
) -> str:
    """Check an HMAC-signed request; returns the ``user=`` it names.

    ``bodies`` are the forms the body hash may cover (plain and gzip'd: which one iCIMS
    hashes is not documented); ``secrets`` several during rotation.
    """
    verify_hmac_headers(
        method=method,
        path=path,
        query=query,
        headers=headers,
        secrets=secrets,
        now=now,
        tolerance_s=tolerance_s,
        expected_user=expected_user,
        bodies=bodies,
    )
    return parse_hmac_authorization(headers.get("authorization")).user
