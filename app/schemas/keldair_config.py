"""Configuration of a KeldairHR (Standard Webhooks) connection, checked when it is loaded."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.intake.validation import validated
from app.verifiers import url_token
from app.verifiers.standard_webhooks import decode_secret, require_strong


class KeldairOptions(BaseModel):
    """``options`` of a KeldairHR connection."""

    model_config = ConfigDict(extra="forbid")

    # The sender's type strings -> the names this version models (app/schemas/keldair.py).
    type_aliases: dict[str, str] = Field(default_factory=dict)
    # Our names inside ``data`` -> the sender's ([I] the shape of ``data`` is assumed, see
    # app/schemas/keldair.py): {"id": "applicantId"}.
    data_aliases: dict[str, str] = Field(default_factory=dict)
    tolerance_s: int = Field(default=300, ge=1, le=3600)
    # KeldairHR's guide (docs/ats/keldairhr.md) says the endpoint "can accept unauthenticated
    # webhook requests" and calls
    # signatures "recommended": a tenant whose sender cannot sign may instead authenticate by
    # a secret token in the URL path. Signatures stay the default.
    auth: Literal["signature", "url_token"] = "signature"


class KeldairSecrets(BaseModel):
    """``secrets`` of a KeldairHR connection."""

    model_config = ConfigDict(extra="forbid")

    # Several while a secret is rotated; any of them verifies.
    signing_secrets: list[str] = Field(default_factory=list, repr=False)
    # With auth = "url_token": the path tokens accepted (several while one is rotated).
    url_tokens: list[str] = Field(default_factory=list, repr=False)

    @field_validator("signing_secrets")
    @classmethod
    def _decodable(cls, secrets: list[str]) -> list[str]:
        for index, secret in enumerate(secrets):
            try:
                decode_secret(secret)
            except ValueError:
                # The value itself is never echoed: it is a secret.
                raise ValueError(f"item {index} is not a whsec_ base64 secret") from None
        return secrets


class KeldairConfig:
    """Options and secrets of one connection, validated together."""

    def __init__(self, options: KeldairOptions, secrets: KeldairSecrets) -> None:
        self.options = options
        self.secrets = secrets

    @property
    def keys(self) -> list[bytes]:
        """The HMAC keys of the signing secrets."""
        return [decode_secret(s) for s in self.secrets.signing_secrets]


def parse(options: dict[str, Any], secrets: dict[str, Any]) -> KeldairConfig:
    """Validate; raises ValueError naming the settings at fault, never their values."""
    opts = validated(KeldairOptions, options, "options")
    secs = validated(KeldairSecrets, secrets, "secrets")
    if opts.auth == "signature" and not secs.signing_secrets:
        raise ValueError("secrets.signing_secrets: at least one is required (auth = signature)")
    if opts.auth == "url_token" and not secs.url_tokens:
        raise ValueError("secrets.url_tokens: at least one is required (auth = url_token)")
    return KeldairConfig(opts, secs)


def check(options: dict[str, Any], secrets: dict[str, Any]) -> None:
    """The connection check of :class:`app.sources.base.Source`."""
    config = parse(options, secrets)
    # Only when loaded, not in parse(): a connection stored before this rule keeps receiving
    # until its tenants file is loaded again, rather than answering 401 to every event.
    for index, secret in enumerate(config.secrets.signing_secrets):
        require_strong(secret, what=f"secrets.signing_secrets[{index}]")
    url_token.check(config.secrets.url_tokens, what="secrets.url_tokens")
