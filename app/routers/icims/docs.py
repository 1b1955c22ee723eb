"""What ``/openapi.json`` tells about iCIMS's routes: the answer models, request bodies and
security schemes of the event route and the OAuth token endpoint."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.routers import openapi
from app.schemas.icims import event_adapter
from app.sources.icims import ICIMS_EVENT_TYPES, icims_sample


class IcimsErrorDetail(BaseModel):
    model_config = ConfigDict(title="IcimsErrorDetail")

    userMessage: str = Field(  # noqa: N815 - iCIMS's field name
        description="Shown by iCIMS to whoever triggered the event (recruiter, candidate or "
        "new hire), worded for them."
    )
    debugErrorMessage: str = Field(  # noqa: N815 - iCIMS's field name
        description="For iCIMS support and the vendor; a 500 carries a reference to quote."
    )


class IcimsError(BaseModel):
    """iCIMS's Error Reporting Standard for Vendors."""

    error: IcimsErrorDetail


class OAuthError(BaseModel):
    """RFC 6749 section 5.2."""

    error: Literal[
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "temporarily_unavailable",
        "server_error",
    ]
    # OPTIONAL in RFC 6749: the library's own refusals (an unsupported grant type) carry none.
    error_description: str = ""


class TokenAnswer(BaseModel):
    """RFC 6749 section 5.1."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class IcimsAccepted(BaseModel):
    status: Literal["accepted"]
    recordId: str  # noqa: N815 - the wire name


class IcimsLinkAccepted(BaseModel):
    status: Literal["accepted"]
    recordId: str  # noqa: N815 - the wire name
    link: str = Field(description="The same URL as the Location header.")


def icims_body() -> dict[str, Any]:
    examples = {t: icims_sample(t) for t in ICIMS_EVENT_TYPES}
    return openapi.json_body(
        openapi.hoisted("Icims", event_adapter),
        examples,
        "One iCIMS Integration Event, possibly gzip'd; `customerId` selects the connection.",
    )


def token_body() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "grant_type": {"type": "string", "const": "client_credentials"},
                            "client_id": {"type": "string"},
                            "client_secret": {"type": "string"},
                            "scope": {"type": "string"},
                            "audience": {"type": "string"},
                        },
                        "required": ["grant_type"],
                    },
                    "examples": {
                        "client_credentials": {
                            "summary": "client credentials, client authenticated by Basic",
                            "value": {"grant_type": "client_credentials"},
                        }
                    },
                }
            },
        }
    }


openapi.security_schemes(
    icimsHmac=openapi.header_scheme(
        "Authorization",
        "iCIMS HMAC: `x-icims-v1-hmac-sha256 user=...,signedheaders=...,signature=...`, "
        "signing at least x-icims-date and x-icims-content-sha256.",
    ),
    icimsDate=openapi.header_scheme(
        "x-icims-date", "iCIMS HMAC: the signing time, e.g. 2017-10-18T14:53:40+0000."
    ),
    icimsContentSha256=openapi.header_scheme(
        "x-icims-content-sha256", "iCIMS HMAC: hex SHA-256 of the body as sent or inflated."
    ),
    icimsBasic={
        "type": "http",
        "scheme": "basic",
        "description": "iCIMS HTTP Basic: the username and password of the customer's connection.",
    },
    icimsOAuth={
        "type": "oauth2",
        "description": "iCIMS OAuth 2.0: a Bearer token from /oauth/token (client credentials).",
        "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {}}},
    },
    oauthClientBasic={
        "type": "http",
        "scheme": "basic",
        "description": "The OAuth client id and secret (client_secret_basic); they may instead "
        "be sent as client_id and client_secret form fields.",
    },
)
