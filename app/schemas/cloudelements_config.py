"""Configuration of a Cloud Elements callback connection, checked when it is loaded.

[C] An element instance with a Callback Notification Signature Key
(``event.notification.signature.key``) signs each notification with
``Elements-Webhook-Signature: sha256=<Base64(HMAC-SHA256(key as UTF-8, raw body))>``
(docs/ats/cloudelements.md). Header name, prefix and encoding are options, defaulting to that.

[C] That key is optional in Cloud Elements (docs/ats/cloudelements.md): an instance without one
sends unsigned
notifications. Those are refused; such a connection instead authenticates its instance by a
secret token in the callback URL (``auth = "url_token"``), as KeldairHR connections may.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.intake.validation import validated
from app.platform.secret_strength import require_strong_secret
from app.verifiers import url_token

DEFAULT_HEADER = "Elements-Webhook-Signature"
# The project's floor for shared secrets: a shorter HMAC key can be searched offline from one
# signed notification.
MIN_KEY_CHARS = 32


class CloudElementsOptions(BaseModel):
    """``options`` of a ``cloudelements`` connection."""

    model_config = ConfigDict(extra="forbid")

    signature_header: str = Field(default=DEFAULT_HEADER, min_length=1, max_length=100)
    signature_prefix: str = Field(default="sha256=", max_length=32)
    signature_encoding: Literal["base64", "hex"] = "base64"
    # [I] Where an event object carries the object's updated date (Cloud Elements normalizes
    # only objectId, objectType and eventType; the rest varies by element). The first present
    # one joins the dedupe key, so a later change of the same object is a new record.
    updated_date_fields: list[str] = Field(
        default_factory=lambda: ["updatedDate", "updatedOn", "lastModifiedDate", "date"],
        max_length=20,
    )
    # objectType -> the subject kind its objectId is recorded under; by default the house
    # vocabulary ("candidates" -> "person", "jobs" -> "job"), else the objectType itself.
    subject_kinds: dict[str, str] = Field(default_factory=dict)
    # "url_token": the instance has no signature key and calls back
    # /v1/cloud-elements/<tenant>/events/<token> instead. Signatures stay the default.
    auth: Literal["signature", "url_token"] = "signature"


class CloudElementsSecrets(BaseModel):
    """``secrets`` of a ``cloudelements`` connection."""

    model_config = ConfigDict(extra="forbid")

    # The instance's event.notification.signature.key; several while it is rotated.
    signature_keys: list[str] = Field(default_factory=list, max_length=16, repr=False)
    # With auth = "url_token": the tokens accepted in the callback URL (two while rotating).
    url_tokens: list[str] = Field(default_factory=list, max_length=16, repr=False)

    @field_validator("signature_keys")
    @classmethod
    def _long_enough(cls, keys: list[str]) -> list[str]:
        for index, key in enumerate(keys):
            # The message never contains the key; the instance's key must be changed to match.
            require_strong_secret(
                key, what=f"item {index} (the instance's signature key)", min_length=MIN_KEY_CHARS
            )
        return keys


class CloudElementsConfig:
    """Options and secrets of one connection, validated together."""

    def __init__(self, options: CloudElementsOptions, secrets: CloudElementsSecrets) -> None:
        self.options = options
        self.secrets = secrets

    @property
    def keys(self) -> list[bytes]:
        """[C] The HMAC keys: each signature key as UTF-8."""
        return [k.encode() for k in self.secrets.signature_keys]


def parse_options(options: dict[str, Any]) -> CloudElementsOptions:
    """Validate ``options``; ValueError naming the setting at fault."""
    return validated(CloudElementsOptions, options, "options")


def parse(options: dict[str, Any], secrets: dict[str, Any]) -> CloudElementsConfig:
    """Validate; raises ValueError naming the settings at fault, never their values."""
    opts = parse_options(options)
    secs = validated(CloudElementsSecrets, secrets, "secrets")
    if opts.auth == "signature" and not secs.signature_keys:
        raise ValueError(
            "secrets.signature_keys: at least one is required (auth = signature); an instance "
            'without a signature key is connected with auth = "url_token"'
        )
    if opts.auth == "url_token" and not secs.url_tokens:
        raise ValueError("secrets.url_tokens: at least one is required (auth = url_token)")
    return CloudElementsConfig(opts, secs)


def check(options: dict[str, Any], secrets: dict[str, Any]) -> None:
    """The connection check of :class:`app.sources.base.Source`."""
    config = parse(options, secrets)
    url_token.check(config.secrets.url_tokens, what="secrets.url_tokens")
