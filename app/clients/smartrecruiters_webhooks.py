"""SmartRecruiters Webhooks Subscriptions API, for `hirehook smartrecruiters ...`.

[C] docs/ats/smartrecruiters.md and developers.smartrecruiters.com
(activating-webhook-subscriptions,
subscriptionsactivate-1, subscriptionsgeneratesecretkey-1): under
``/webhooks-api/v201907/subscriptions``, ``POST {callbackUrl, events: [{name, version}]}``
creates an inactive subscription and answers its ``id``; ``PUT /{id}/activation`` makes
SmartRecruiters POST the handshake to the callback URL and answers 204 once it was echoed;
``POST /{id}/secret-key`` generates a signing key; ``DELETE /{id}`` removes the subscription.
The credential needs the ``webhooks_manage`` scope.

These are a handful of administrative calls made by an operator, not by workers, so they do not
spend the connection's rate budget.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from app.clients.smartrecruiters import DEFAULT_BASE_URL, auth_headers
from app.intake.connections import ConnectionInfo
from app.schemas import smartrecruiters_config as sr_config

API_PATH = "/webhooks-api/v201907/subscriptions"
# [C] SmartRecruiters waits up to 20 s for the handshake while the activation call is open.
ACTIVATION_TIMEOUT_S = 30.0
# [I] The field the generated key is returned in is not published; these are tried in order.
_KEY_FIELDS = ("secretKey", "secret", "key", "value")


class SubscriptionApiError(Exception):
    """A call SmartRecruiters refused or that did not complete; the message has no secret."""


class SubscriptionsApi:
    """One connection's view of the Webhooks Subscriptions API."""

    def __init__(self, http: httpx.AsyncClient, connection: ConnectionInfo) -> None:
        try:
            config = connection.parsed(sr_config.parse)
        except ValueError as exc:
            raise SubscriptionApiError(f"the connection is misconfigured: {exc}") from None
        headers = auth_headers(config.secrets)
        if headers is None:
            raise SubscriptionApiError(
                "the connection has no SmartRecruiters credential (secrets.api_key or "
                "secrets.access_token, with the webhooks_manage scope)"
            )
        self._headers = headers
        base = (config.options.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._url = base + API_PATH
        self._http = http

    async def create(self, callback_url: str, events: list[dict[str, str]]) -> dict[str, Any]:
        """A new, inactive subscription."""
        body = {"callbackUrl": callback_url, "events": events}
        found = await self._call("POST", "", "create the subscription", json=body)
        if not isinstance(found, dict) or not isinstance(found.get("id"), str):
            raise SubscriptionApiError("SmartRecruiters answered the creation without an id")
        return found

    async def activate(self, subscription_id: str) -> None:
        """Ask SmartRecruiters to run the handshake; returns once it answered 204."""
        await self._call(
            "PUT",
            f"/{quote(subscription_id, safe='')}/activation",
            "activate the subscription",
            wait_s=ACTIVATION_TIMEOUT_S,
        )

    async def generate_secret_key(self, subscription_id: str) -> str:
        """A new signing key; the previous one stays valid 24 hours."""
        found = await self._call(
            "POST", f"/{quote(subscription_id, safe='')}/secret-key", "generate a secret key"
        )
        if isinstance(found, dict):
            for name in _KEY_FIELDS:
                value = found.get(name)
                if isinstance(value, str) and value:
                    return value
        raise SubscriptionApiError("SmartRecruiters answered the key generation without a key")

    async def delete(self, subscription_id: str) -> None:
        """Remove the subscription at SmartRecruiters."""
        await self._call("DELETE", f"/{quote(subscription_id, safe='')}", "delete it")

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json: Any = None,
        wait_s: float | None = None,
    ) -> Any:
        try:
            response = await self._http.request(
                method,
                self._url + path,
                headers=self._headers,
                json=json,
                timeout=wait_s if wait_s is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise SubscriptionApiError(f"could not {what}: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise SubscriptionApiError(
                f"SmartRecruiters refused to {what}: HTTP {response.status_code} "
                f"{_message(response)}".rstrip()
            )
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise SubscriptionApiError(f"SmartRecruiters answered {what} with non-JSON") from exc


def _message(response: httpx.Response) -> str:
    """SmartRecruiters's own error message, short (it never contains our credential)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return str(message)[:300] if message else ""
