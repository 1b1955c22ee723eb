"""Authenticating iCIMS event requests: Basic, HMAC, or a bearer token from ``/oauth/token``.

Where the scheme allows it, the request is tied to its connection by what it carries before
its body is inflated or parsed: a bearer token names its connection, a Basic username and an
HMAC ``user=`` are looked up by fingerprint. Only a request whose credentials check out costs
a decompression. An HMAC request whose user is not configured on any connection is routed by
the payload's ``customerId`` instead, as before, under the same inflate caps.
"""

from __future__ import annotations

import base64
import binascii
import functools
import secrets
import time
from dataclasses import dataclass

import orjson
import structlog
from fastapi import Request

from app.intake.connections import ConnectionInfo
from app.intake.guard import client_subject
from app.intake.link_tokens import KEY_PURPOSE as LINK_KEY_PURPOSE
from app.intake.payload import decode_content
from app.platform.crypto import derive_keys
from app.platform.errors import AppError, unauthorized
from app.platform.settings import Settings
from app.routers.icims.checks import vendor_error
from app.schemas.icims import ACTORS, SOURCE, Actor
from app.schemas.icims_config import ConfigError, IcimsAuth, IcimsConfig
from app.schemas.keys import credential_id
from app.services import Services
from app.verifiers import VerificationError, icims_oauth
from app.verifiers import icims as icims_auth

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path
TOKEN_AUDIENCE = "hirehook:icims-events"  # noqa: S105 - an audience name

log = structlog.get_logger(__name__)

# Checked when a customer is unknown or lacks a method, so that path costs what a real check
# costs. Random per process: nobody can present it.
_DECOY = secrets.token_urlsafe(32)


@functools.lru_cache(maxsize=8)
def _keys(secret_keys: tuple[str, ...], issuer: str) -> tuple[icims_oauth.SigningKeys, list[bytes]]:
    token_keys = derive_keys(list(secret_keys), icims_oauth.KEY_PURPOSE)
    link_keys = derive_keys(list(secret_keys), LINK_KEY_PURPOSE)
    return icims_oauth.SigningKeys(token_keys, issuer, TOKEN_AUDIENCE), link_keys


def signing_keys(settings: Settings) -> icims_oauth.SigningKeys:
    """The keys access tokens are signed and verified with."""
    return _keys(tuple(settings.secret_keys), settings.public_base_url.rstrip("/"))[0]


def link_keys(settings: Settings) -> list[bytes]:
    """The keys per-record link tokens are signed with (first) and resolved with (any)."""
    return _keys(tuple(settings.secret_keys), settings.public_base_url.rstrip("/"))[1]


@dataclass(frozen=True, slots=True)
class Loaded:
    """A connection, the settings its credentials are checked with, and its configuration
    (None, with ``problem`` saying why, for a connection broken since it was loaded)."""

    connection: ConnectionInfo
    auth: IcimsAuth
    config: IcimsConfig | None
    problem: str | None = None

    def usable(self) -> tuple[ConnectionInfo, IcimsConfig]:
        """The connection and its configuration, once its sender is authenticated: a sender
        who proved its credentials is told when the vendor's side is at fault."""
        if self.config is None:
            raise vendor_error(f"the connection's configuration is invalid: {self.problem}")
        return self.connection, self.config


def load(connection: ConnectionInfo | None) -> Loaded | None:
    """The connection's settings, or None where it is unknown or its credentials unusable
    (answered exactly like an unknown customer: nothing about it leaks to the sender)."""
    if connection is None:
        return None
    try:
        config = connection.parsed(IcimsConfig.parse)
    except ConfigError as exc:
        log.warning("icims.connection_invalid", connection_id=connection.id, detail=str(exc))
        auth = IcimsAuth.read(connection.options, connection.secrets)
        return None if auth is None else Loaded(connection, auth, None, str(exc))
    return Loaded(connection, config.auth, config)


@dataclass(frozen=True, slots=True)
class Identified:
    """A connection whose credentials the request proved before its body was read."""

    loaded: Loaded
    # The HMAC content hash still to check against the inflated body, if any.
    pending_hash: str | None = None


def refuse(request: Request, scheme: str, reason: str) -> None:
    """Log why, then raise the one 401 every failure gets."""
    log.info(
        "icims.unauthenticated",
        customer_id=getattr(request.state, "icims_customer", None),
        scheme=scheme or None,
        reason=reason,
    )
    raise unauthorized()


async def identify(request: Request, services: Services, wire: bytes) -> Identified | None:
    """Prove the request's credentials from its headers alone, before the body is inflated.

    Raises the 401 for credentials that cannot be right whatever the body says; returns None
    when the connection can only be found from the payload (HMAC without a configured user).
    """
    authorization = request.headers.get("authorization") or ""
    scheme = icims_auth.scheme(authorization)
    try:
        if scheme == "bearer":
            return await _bearer(authorization, services)
        if scheme == "basic":
            return await _basic(authorization, services)
        if scheme == icims_auth.HMAC_ALGORITHM:
            return await _hmac(request, services, wire)
        raise VerificationError("no Basic, HMAC or Bearer Authorization header")
    except VerificationError as exc:
        request.state.icims_actor = _peek_actor(request, wire)
        refuse(request, scheme, str(exc))
    raise AssertionError("unreachable")  # pragma: no cover


def claimed_client(request: Request) -> str | None:
    """The guard subject of the identity the request claims: its Basic username or HMAC
    ``user=``, read from the header alone (never the password or signature). None for a
    bearer token, which names no guessable identity, and for headers that cannot be read:
    such requests are limited by their address only."""
    authorization = request.headers.get("authorization") or ""
    scheme = icims_auth.scheme(authorization)
    try:
        if scheme == "basic":
            return client_subject(SOURCE, "basic", _basic_user(authorization))
        if scheme == icims_auth.HMAC_ALGORITHM:
            user = icims_auth.parse_hmac_authorization(authorization).user
            return client_subject(SOURCE, "hmac", user)
    except VerificationError:
        return None
    return None


# The refusal is worded for whoever pressed the button, which only the body says; a few KB is
# all an eventType needs, so a refused request never costs a real decompression.
_PEEK_BYTES = 64 * 1024


def _peek_actor(request: Request, wire: bytes) -> Actor:
    try:
        body = decode_content(wire, request.headers.get("content-encoding"), _PEEK_BYTES)
        sent = orjson.loads(body).get("eventType")
    except (AppError, ValueError, AttributeError):
        return Actor.RECRUITER
    return ACTORS.get(str(sent), Actor.RECRUITER)


async def _bearer(authorization: str, services: Services) -> Identified:
    parts = authorization.strip().split(None, 1)
    if len(parts) != 2:
        raise VerificationError("empty Bearer token")
    keys = signing_keys(services.settings)
    claims = icims_oauth.verify_access_token(parts[1].strip(), keys)
    loaded = load(await services.connections.by_enabled_id(SOURCE, claims.connection_id))
    if loaded is None or not loaded.auth.oauth_enabled:
        raise VerificationError("OAuth is not configured for the token's connection")
    if claims.client_id != loaded.auth.oauth_client_id:
        raise VerificationError("the token was issued to another client")
    if not icims_oauth.secret_still_valid(claims, loaded.auth.oauth_client_secrets, keys):
        raise VerificationError("the token's client secret was rotated away (revoked)")
    return Identified(loaded)


def _basic_user(authorization: str) -> str:
    encoded = authorization.strip().split(None, 1)[1] if " " in authorization.strip() else ""
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("Basic credentials are not base64") from exc
    return decoded.partition(b":")[0].decode("utf-8", "replace")


async def _basic(authorization: str, services: Services) -> Identified:
    user = _basic_user(authorization)
    loaded = load(await services.connections.by_credential(SOURCE, credential_id("basic", user)))
    if loaded is None or not loaded.auth.basic_enabled:
        icims_auth.verify_basic(authorization, _DECOY, _DECOY)
        raise VerificationError("no connection has this Basic username")
    assert loaded.auth.basic_username is not None
    assert loaded.auth.basic_password is not None
    icims_auth.verify_basic(authorization, loaded.auth.basic_username, loaded.auth.basic_password)
    return Identified(loaded)


async def _hmac(request: Request, services: Services, wire: bytes) -> Identified | None:
    parsed = icims_auth.parse_hmac_authorization(request.headers.get("authorization"))
    loaded = load(
        await services.connections.by_credential(SOURCE, credential_id("hmac", parsed.user))
    )
    if loaded is None or not loaded.auth.hmac_enabled:
        return None
    auth = loaded.auth
    presented = icims_auth.verify_hmac_headers(
        method=request.method,
        path=request.url.path,
        query=request.url.query,
        headers=request.headers,
        secrets=auth.hmac_secrets,
        now=time.time(),
        tolerance_s=auth.hmac_tolerance_s,
        expected_user=auth.hmac_user,
    )
    if auth.hmac_body_hash != "decoded" and icims_auth.hash_matches(presented, [wire]):
        return Identified(loaded)
    if auth.hmac_body_hash == "wire":
        raise VerificationError("x-icims-content-sha256 does not match the body")
    return Identified(loaded, pending_hash=presented)


def verify_pending(request: Request, identified: Identified, body: bytes) -> None:
    """After inflating: the HMAC content hash against the decoded body, if still open."""
    if identified.pending_hash is None:
        return
    if not icims_auth.hash_matches(identified.pending_hash, [body]):
        refuse(request, icims_auth.HMAC_ALGORITHM, "x-icims-content-sha256 does not match")


def verify_routed(
    request: Request, connection: ConnectionInfo | None, body: bytes, wire: bytes
) -> Loaded:
    """HMAC for a request routed by its payload's ``customerId`` (no configured user)."""
    loaded = load(connection)
    auth = loaded.auth if loaded is not None else IcimsAuth()
    usable = loaded is not None and auth.hmac_enabled
    bodies = {"decoded": [body], "wire": [wire], "either": [body, wire]}[auth.hmac_body_hash]
    try:
        icims_auth.verify_hmac(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers=request.headers,
            bodies=bodies if body is not wire else [body],
            secrets=auth.hmac_secrets if usable else [_DECOY],
            now=time.time(),
            tolerance_s=auth.hmac_tolerance_s,
            expected_user=auth.hmac_user,
        )
        if loaded is None or not usable:
            raise VerificationError("HMAC is not configured for this customer")
    except VerificationError as exc:
        refuse(request, icims_auth.HMAC_ALGORITHM, str(exc))
        raise AssertionError("unreachable") from exc  # pragma: no cover
    return loaded
