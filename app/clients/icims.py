"""The iCIMS REST API client, shared by in-request validation and the workers' enrichment.

Tokens come from the customer's token URL by OAuth 2.0 client credentials (authlib); every API
call spends the shared rate budget; fetched profiles go to the document cache, so what the
router fetched to validate an event is not fetched again by the worker that enriches it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from authlib.oauth2.auth import ClientAuth, TokenAuth
from authlib.oauth2.rfc6749 import OAuth2Token
from authlib.oauth2.rfc6749.parameters import prepare_token_request

from app.clients.base import (
    ApiClient,
    ApiError,
    BudgetKey,
    Document,
    RateBudget,
    Reply,
    classify,
)
from app.clients.budget import Limits
from app.clients.document_cache import DocumentCache
from app.clients.http import Answer
from app.intake.connections import ConnectionInfo
from app.schemas.icims import SOURCE
from app.schemas.icims_config import ApiSettings, ConfigError, IcimsConfig, ProfileKind

# [C] "up to 10,000 web services requests per day" per integration licence (docs/ats/icims.md),
# held over any 24 hours. [I] No per-second limit is published; 5 in any second keeps a burst
# of events from spending the day's quota in minutes. [I] Only an unverified page says iCIMS
# sends X-RateLimit-* counting the day (reset 00:00 UTC): X-RateLimit-Remaining is read as
# what is left of the daily quota. A connection's options.limits overrides any of them.
DEFAULT_LIMITS = Limits(
    rate_per_s=5, burst=5, concurrency=4, daily_quota=10_000, rate_limit_headers="daily_quota"
)
log = structlog.get_logger(__name__)

# iCIMS error codes (developer.icims.com/icims-platform/error-handling).
RESOURCE_ACCESS_DENIED = 3


class IcimsApiError(ApiError):
    """An iCIMS API failure, with iCIMS's own error code when it sent one."""

    def __init__(self, message: str, *, error_code: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.error_code = error_code


def parse_error(response: Reply, what: str) -> IcimsApiError:
    """Classify a non-2xx answer, reading ``{"errors":[...]}`` and ``X-Error: code:detail``."""
    base = classify(response, what)
    code: int | None = None
    detail: str | None = None
    try:
        body = response.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        if isinstance(first.get("errorCode"), int):
            code = first["errorCode"]
        if isinstance(first.get("errorMessage"), str):
            detail = first["errorMessage"]
    header = response.headers.get("x-error")
    if header and (code is None or detail is None):
        head, _, rest = header.partition(":")
        if code is None and head.strip().isdigit():
            code = int(head.strip())
        detail = detail or rest.strip() or None
    message = str(base)
    if code is not None or detail:
        message += f" (iCIMS error {code}: {detail or 'no detail'})"
    return IcimsApiError(
        message,
        status=base.status,
        transient=base.transient,
        # The integration user may not see this profile: only the customer's admin can fix it.
        config_problem=base.config_problem or code == RESOURCE_ACCESS_DENIED,
        retry_after_s=base.retry_after_s,
        error_code=code,
    )


class TokenCache:
    """Access tokens per (token URL, client id, secret), per process; never written anywhere."""

    def __init__(self) -> None:
        self._tokens: dict[str, OAuth2Token] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @staticmethod
    def key(api: ApiSettings, secret: str) -> str:
        """A cache key that changes when the secret does (so rotation fetches a new token)."""
        material = "\n".join([api.token_url, api.client_id, secret, api.audience or ""])
        return hashlib.sha256(material.encode()).hexdigest()

    def get(self, key: str) -> OAuth2Token | None:
        """A token that is not about to expire, or None."""
        token = self._tokens.get(key)
        if token is None or token.is_expired(leeway=60):
            return None
        return token

    def put(self, key: str, token: OAuth2Token) -> None:
        """Remember a token."""
        self._tokens[key] = token

    def drop(self, key: str) -> None:
        """Forget a token the API refused."""
        self._tokens.pop(key, None)

    def clear(self) -> None:
        """Forget every token."""
        self._tokens.clear()

    def lock(self, key: str) -> asyncio.Lock:
        """One fetch at a time per key, so a burst of events does not fetch a burst of tokens."""
        return self._locks.setdefault(key, asyncio.Lock())


DEFAULT_TOKENS = TokenCache()


class IcimsClient(ApiClient):
    """The iCIMS API with one connection's credentials."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        budget: RateBudget,
        cache: DocumentCache,
        *,
        tenant_id: int,
        api: ApiSettings,
        client_secret: str,
        tokens: TokenCache = DEFAULT_TOKENS,
    ) -> None:
        super().__init__(http, budget, BudgetKey(tenant_id, SOURCE))
        self.cache = cache
        self.tenant_id = tenant_id
        self.api = api
        self._secret = client_secret
        self._tokens = tokens
        self._token_key = TokenCache.key(api, client_secret)

    @classmethod
    def for_connection(
        cls,
        http: httpx.AsyncClient,
        budget: RateBudget,
        cache: DocumentCache,
        connection: ConnectionInfo,
        *,
        config: IcimsConfig | None = None,
        tokens: TokenCache = DEFAULT_TOKENS,
    ) -> IcimsClient:
        """The client for an iCIMS connection; raises :class:`ConfigError` without API setup."""
        config = config or connection.parsed(IcimsConfig.parse)
        api, secret = config.options.api, config.secrets.api_client_secret
        if api is None or secret is None:
            raise ConfigError("options.api and secrets.api_client_secret are required")
        return cls(
            http,
            budget,
            cache,
            tenant_id=connection.tenant_id,
            api=api,
            client_secret=secret,
            tokens=tokens,
        )

    def error_for(self, response: Answer, what: str) -> ApiError:
        """iCIMS's error body and ``X-Error`` header, classified."""
        return parse_error(response, what)

    async def token(self, *, timeout_s: float | None = None) -> OAuth2Token:
        """A valid access token, fetched from the customer's token URL when needed."""
        cached = self._tokens.get(self._token_key)
        if cached is not None:
            return cached
        async with self._tokens.lock(self._token_key):
            cached = self._tokens.get(self._token_key)
            if cached is not None:
                return cached
            token = await self._fetch_token(timeout_s)
            self._tokens.put(self._token_key, token)
            return token

    async def _fetch_token(self, timeout_s: float | None) -> OAuth2Token:
        what = "icims token"
        # authlib shapes the request (grant body, client authentication) and models the token;
        # the shared pool carries it, so the token call honours the same time budget. (authlib's
        # own AsyncOAuth2Client now targets httpx2 and warns when built on httpx.)
        extra = {"audience": self.api.audience} if self.api.audience else {}
        body = prepare_token_request("client_credentials", **extra)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        client_auth = ClientAuth(self.api.client_id, self._secret, self.api.token_auth_method)
        url, headers, body = client_auth.prepare("POST", self.api.token_url, headers, body)
        kwargs: dict[str, Any] = {}
        if timeout_s is not None:
            kwargs["timeout"] = httpx.Timeout(timeout_s)
        try:
            response = await self.http.post(url, content=body, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise IcimsApiError(f"{what}: timed out", transient=True) from exc
        except httpx.TransportError as exc:
            raise IcimsApiError(f"{what}: {type(exc).__name__}", transient=True) from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 500 or response.status_code == 429:
            raise parse_error(response, what)
        if not isinstance(data, dict):
            raise IcimsApiError(
                f"{what}: the token URL answered {response.status_code} without a JSON object",
                status=response.status_code,
                transient=False,
                config_problem=True,
            )
        if "error" in data or not response.is_success or not data.get("access_token"):
            # invalid_client and friends: the API credentials configured for the customer.
            error = data.get("error") if isinstance(data.get("error"), str) else "no access_token"
            raise IcimsApiError(
                f"{what}: refused ({error}, HTTP {response.status_code})",
                status=response.status_code,
                transient=False,
                config_problem=True,
            )
        token = OAuth2Token.from_dict(data)
        log.info("icims.token_fetched", tenant_id=self.tenant_id, expires_in=data.get("expires_in"))
        return token

    def url(self, customer_id: str, profile: ProfileKind, profile_id: str) -> str:
        """``{base}/customers/{customerId}/{profile}/{id}``, ids escaped (they come from events)."""
        return (
            f"{self.api.api_base}/customers/{quote(customer_id, safe='')}"
            f"/{profile}/{quote(profile_id, safe='')}"
        )

    @staticmethod
    def cache_ref(customer_id: str, profile_id: str, fields: Sequence[str] | None) -> str:
        """The external id a profile fetch is cached under: the same fields, the same entry."""
        names = sorted(set(fields or ()))
        return f"{customer_id}/{profile_id}" + (f"?fields={','.join(names)}" if names else "")

    async def fetch_profile(
        self,
        customer_id: str,
        profile: ProfileKind,
        profile_id: str,
        *,
        fields: Sequence[str] | None = None,
        timeout_s: float | None = None,
        store: bool = True,
    ) -> Document:
        """One profile document, always fresh, stamped with when it was asked for.

        With ``store`` it is then cached, so the worker's enrichment of the same event reuses
        it; reading the cache is the worker's business (app/workers/fetch.py, which stores
        what it fetches itself), never validation's: a recruiter who just fixed a field must
        be checked against the fixed profile.
        """
        names = sorted(set(fields or ()))
        params = {"fields": ",".join(names)} if names else None
        document = await self._get(customer_id, profile, profile_id, params, timeout_s)
        if store:
            key = self.cache.key(
                self.tenant_id, SOURCE, profile, self.cache_ref(customer_id, profile_id, names)
            )
            await self.cache.put(key, document.body, int(document.requested_at * 1_000_000))
        return document

    async def get_profile(
        self,
        customer_id: str,
        profile: ProfileKind,
        profile_id: str,
        *,
        fields: Sequence[str] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """One profile document (only ``fields`` when given), fetched now."""
        document = await self.fetch_profile(
            customer_id, profile, profile_id, fields=fields, timeout_s=timeout_s
        )
        body: dict[str, Any] = document.body
        return body

    async def _get(
        self,
        customer_id: str,
        profile: ProfileKind,
        profile_id: str,
        params: dict[str, str] | None,
        timeout_s: float | None,
    ) -> Document:
        what = f"icims {profile} {profile_id}"
        timeouts = httpx.Timeout(timeout_s) if timeout_s is not None else None
        for attempt in (1, 2):
            token = await self.token(timeout_s=timeout_s)
            try:
                url, headers, _ = TokenAuth(token).prepare(
                    self.url(customer_id, profile, profile_id), {"Accept": "application/json"}, ""
                )
            except KeyError as exc:
                raise IcimsApiError(
                    f"{what}: the token URL issued an unsupported token_type",
                    transient=False,
                    config_problem=True,
                ) from exc
            try:
                document = await self.get_document(
                    url, what=what, headers=headers, params=params, timeouts=timeouts
                )
            except ApiError as exc:
                # A token revoked before its expiry: fetch a new one, once.
                if exc.status == 401 and attempt == 1:
                    self._tokens.drop(self._token_key)
                    continue
                raise
            if not isinstance(document.body, dict):
                raise IcimsApiError(f"{what}: not a JSON object", transient=True)
            return document
        raise AssertionError("unreachable")  # pragma: no cover
