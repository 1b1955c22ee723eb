"""An OAuth 2.0 client-credentials token server for senders that fetch a token before posting.

authlib supplies the grant (RFC 6749 section 4.4), client authentication (HTTP Basic or form
fields), the error format and the JWT access token profile (RFC 9068). Tokens are HS256 JWTs
signed with a key derived from HIREHOOK_SECRET_KEY, so any replica verifies them without
shared state. Each carries a keyed fingerprint of the client secret it was issued for:
removing that secret from the connection revokes every token issued with it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc6750 import InvalidTokenError
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator, JWTBearerTokenValidator
from joserfc.jwk import KeySet, OctKey

from app.verifiers import VerificationError

CLIENT_CREDENTIALS = "client_credentials"
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
KEY_PURPOSE = "oauth-access-token-v1"
TOKEN_SCOPE = "events:post"  # noqa: S105 - a scope name, not a secret

# authlib logs each issued token at DEBUG; a token must never reach a log.
logging.getLogger("authlib").setLevel(max(logging.INFO, logging.getLogger("authlib").level))


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """Derived HS256 keys: the first signs, all verify (HIREHOOK_SECRET_KEY rotation)."""

    keys: Sequence[bytes]
    issuer: str
    audience: str

    def _jwk(self, key: bytes) -> OctKey:
        kid = hashlib.sha256(b"kid:" + key).hexdigest()[:16]
        return OctKey.import_key(key, {"kid": kid, "alg": "HS256", "use": "sig"})

    def signing_set(self) -> KeySet:
        """The one key new tokens are signed with."""
        return KeySet([self._jwk(self.keys[0])])

    def verifying_set(self) -> KeySet:
        """Every key a token may have been signed with."""
        return KeySet([self._jwk(k) for k in self.keys])

    def fingerprints(self, secret: str) -> list[str]:
        """The secret's fingerprint under each key; the first is the one issued now."""
        return [
            hmac.new(k, b"client-secret:" + secret.encode(), hashlib.sha256).hexdigest()[:32]
            for k in self.keys
        ]


@dataclass(slots=True)
class OAuthClient(ClientMixin):  # type: ignore[misc]
    """One connection's client credentials, as authlib's grant sees them."""

    connection_id: int
    client_id: str
    secrets: Sequence[str] = field(repr=False)
    expires_s: int
    # The secret that authenticated this request; its fingerprint goes into the token.
    matched_secret: str | None = field(default=None, repr=False)

    def get_client_id(self) -> str:
        """The public client id."""
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        """No redirects: client credentials only."""
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        """Scopes are not used: the token only lets the sender post events."""
        del scope
        return ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """No redirects: client credentials only."""
        del redirect_uri
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        """Constant-time against every configured secret (several during rotation)."""
        matched: str | None = None
        for secret in self.secrets:
            if hmac.compare_digest(secret.encode(), client_secret.encode()):
                matched = secret
        self.matched_secret = matched
        return matched is not None

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """HTTP Basic or form fields, at the token endpoint."""
        return endpoint == "token" and method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        """No authorization endpoint."""
        del response_type
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        """Client credentials only."""
        return grant_type == CLIENT_CREDENTIALS


class _Grant(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)


class _Generator(JWTBearerTokenGenerator):  # type: ignore[misc]
    def __init__(self, keys: SigningKeys) -> None:
        super().__init__(
            issuer=keys.issuer,
            alg="HS256",
            expires_generator=lambda client, grant_type: client.expires_s,
        )
        self._keys = keys

    def get_jwks(self) -> KeySet:
        return self._keys.signing_set()

    def get_audiences(self, client: OAuthClient, user: Any, scope: Any) -> str:
        return self._keys.audience

    def get_extra_claims(
        self, client: OAuthClient, grant_type: str, user: Any, scope: Any
    ) -> dict[str, Any]:
        assert client.matched_secret is not None  # the grant authenticated the client first
        return {
            # The reply carries no scope (none is requested), but authlib's RFC 9068 validator
            # refuses an empty scope claim, so the token names the one thing it allows.
            "scope": TOKEN_SCOPE,
            "cid": client.connection_id,
            "sfp": self._keys.fingerprints(client.matched_secret)[0],
        }


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, uri: str, headers: Mapping[str, str], form: dict[str, str]) -> None:
        super().__init__("POST", uri, headers=headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Server(AuthorizationServer):  # type: ignore[misc]
    """One request's server: the client was looked up (asynchronously) before it starts."""

    def __init__(self, client: OAuthClient | None, keys: SigningKeys) -> None:
        super().__init__()
        self._client = client
        self.register_grant(_Grant)
        self.register_token_generator("default", _Generator(keys))

    def query_client(self, client_id: str) -> OAuthClient | None:
        if self._client is not None and self._client.client_id == client_id:
            return self._client
        return None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        # Stateless: the signature and the secret fingerprint are the record.
        del token, request

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        del name, args, kwargs

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, headers


TokenReply = tuple[int, dict[str, Any], list[tuple[str, str]]]


def error_reply(error: OAuth2Error) -> TokenReply:
    """An RFC 6749 section 5.2 error as (status, body, headers)."""
    status, body, headers = error()
    return status, dict(body), list(headers)


def basic_client_id(headers: Mapping[str, str]) -> str | None:
    """The client id of an ``Authorization: Basic`` header; raises ValueError when undecodable.

    authlib decodes the header as UTF-8 without catching the error, so a request is screened
    here before authlib sees it.
    """
    client_id, _ = extract_basic_authorization(headers)
    return str(client_id) if client_id else None


def token_reply(
    *,
    uri: str,
    headers: Mapping[str, str],
    form: dict[str, str],
    client: OAuthClient | None,
    keys: SigningKeys,
) -> TokenReply:
    """Run the client-credentials grant for one token request."""
    try:
        basic_client_id(headers)
    except ValueError:
        return INVALID_CLIENT
    try:
        request = _Request(uri, headers, form)
    except OAuth2Error as exc:  # insecure transport: the public URL is not https
        return error_reply(exc)
    if not form.get("grant_type"):
        return error_reply(InvalidRequestError("Missing grant_type parameter."))
    status, body, reply_headers = _Server(client, keys).create_token_response(request)
    if body.get("error") == "invalid_client":
        # authlib words an unknown client id differently from a wrong secret; say one thing.
        return INVALID_CLIENT
    return status, dict(body), list(reply_headers)


INVALID_CLIENT: TokenReply = (
    401,
    {"error": "invalid_client", "error_description": "Client authentication failed."},
    [
        ("Content-Type", "application/json"),
        ("Cache-Control", "no-store"),
        ("Pragma", "no-cache"),
        ("WWW-Authenticate", 'Basic realm="hirehook", error="invalid_client"'),
    ],
)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says."""

    connection_id: int
    client_id: str
    secret_fingerprint: str


class _Validator(JWTBearerTokenValidator):  # type: ignore[misc]
    def __init__(self, keys: SigningKeys) -> None:
        super().__init__(issuer=keys.issuer, resource_server=keys.audience)
        self._keys = keys

    def get_jwks(self) -> KeySet:
        return self._keys.verifying_set()


def verify_access_token(token: str, keys: SigningKeys) -> AccessClaims:
    """Check signature, issuer, audience and expiry; raises :class:`VerificationError`."""
    validator = _Validator(keys)
    try:
        claims = validator.authenticate_token(token)
        validator.validate_token(claims, None, None)
        return AccessClaims(
            connection_id=int(claims["cid"]),
            client_id=str(claims["client_id"]),
            secret_fingerprint=str(claims["sfp"]),
        )
    except (InvalidTokenError, KeyError, TypeError, ValueError) as exc:
        raise VerificationError(f"access token refused: {type(exc).__name__}") from exc


def secret_still_valid(claims: AccessClaims, secrets: Sequence[str], keys: SigningKeys) -> bool:
    """Whether the secret the token was issued for is still configured (else: revoked)."""
    presented = claims.secret_fingerprint.encode()
    matched = False
    for secret in secrets:
        for fingerprint in keys.fingerprints(secret):
            matched |= hmac.compare_digest(fingerprint.encode(), presented)
    return matched
