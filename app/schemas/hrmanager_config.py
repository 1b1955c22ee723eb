"""Configuration of a Talentech HR Manager connection, checked when the tenants file is loaded.

A connection authenticates its sender with the webhook signature, the User Data key, or both
(docs/ats/hrmanager.md), and fetches what events name with its API
key. A connection that does not pass these models is refused at load; one broken since is
answered like an unknown tenant, never with a hint of its settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from app.clients.budget import Limits
from app.intake.validation import describe, validated
from app.platform.outbound import check_url
from app.schemas.hrmanager import MODELS, WIRE_NAMES, canonical_name
from app.verifiers.hrmanager import SecretEncoding, decode_secret

# Shared secrets and User Data keys are guessable below this length.
MIN_SECRET_CHARS = 32
# A body field name, or a dotted path into nested objects. No control characters: options are
# stored as JSONB, which cannot hold U+0000.
FieldPath = Annotated[
    str,
    StringConstraints(pattern=r"^[^.\s\x00-\x1f]+(\.[^.\s\x00-\x1f]+)*$", max_length=200),
]
Secret = Annotated[str, StringConstraints(min_length=MIN_SECRET_CHARS, max_length=1024)]
# Characters no JSON encoder escapes (System.Text.Json escapes "+", "<", "&", ...), so the key's
# bytes appear verbatim in the body and can be redacted from what is stored.
UserDataKey = Annotated[
    str,
    StringConstraints(min_length=MIN_SECRET_CHARS, max_length=1024, pattern=r"^[A-Za-z0-9._~-]+$"),
]
ResourcePath = Annotated[str, StringConstraints(pattern=r"^[^?#\s]*\{id\}[^?#\s]*$")]


class HRManagerOptions(BaseModel):
    """``options`` of an HR Manager connection."""

    model_config = ConfigDict(extra="forbid")

    # Inbound: which credentials a request must carry (at least one; see parse()). Unset, a
    # signature is required exactly when a signing secret is configured: the only documented
    # credential is the User Data key, so a connection holding just that accepts on it alone.
    require_signature: bool | None = None
    # [I] The Talentech sample hex-decodes the shared secret; its README says only "secret".
    secret_encoding: SecretEncoding = "hex"  # noqa: S105 - an encoding's name, not a secret
    # [I] Where the webhook's User Data key is in the body (only read with secrets.user_data_key).
    user_data_path: FieldPath = "UserData"
    # [I] Our field name -> the body's names for it, replacing the guesses in
    # app/schemas/hrmanager.py WIRE_NAMES: {"candidate_id": ["CandidateGuid"], "event": ["Hook"]}.
    payload_fields: dict[str, list[FieldPath]] = Field(default_factory=dict)
    # The sender's event names -> the documented ones (a .NET enum sent as a number: {"12": "..."}).
    event_aliases: dict[str, str] = Field(default_factory=dict)
    # [I] Body fields left out of the dedupe key (a per-attempt stamp, should one appear).
    dedupe_ignore: list[FieldPath] = Field(default_factory=list)

    # Outbound (enrichment): app/clients/hrmanager.py.
    customer_alias: str | None = Field(default=None, min_length=1, max_length=200)
    base_url: str | None = None
    candidate_path: ResourcePath | None = None
    position_path: ResourcePath | None = None
    user_path: ResourcePath | None = None
    # Shared by every source (app/workers/fetch.py, app/clients/budget.py).
    coalesce: bool = True
    limits: dict[str, Any] | None = None

    @field_validator("payload_fields")
    @classmethod
    def _known_fields(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, names in value.items():
            if name not in WIRE_NAMES:
                raise ValueError(f"{name!r} is not one of {', '.join(WIRE_NAMES)}")
            if not names:
                raise ValueError(f"{name}: list at least one field name")
        return value

    @field_validator("event_aliases")
    @classmethod
    def _known_events(cls, value: dict[str, str]) -> dict[str, str]:
        for theirs, ours in value.items():
            if canonical_name(ours) not in MODELS:
                raise ValueError(f"{theirs!r} maps to {ours!r}, which is not an HR Manager event")
        return value

    @field_validator("base_url")
    @classmethod
    def _outbound_url(cls, value: str | None) -> str | None:
        # The API key goes to this host: the outbound policy (app/platform/outbound.py) decides.
        return None if value is None else check_url(value)

    @field_validator("limits")
    @classmethod
    def _limits(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            # Checked now rather than at the first API call of a worker.
            try:
                Limits().override(value)
            except ValidationError as exc:
                raise ValueError(describe(exc)) from None
        return value


class HRManagerSecrets(BaseModel):
    """``secrets`` of an HR Manager connection."""

    model_config = ConfigDict(extra="forbid")

    # Every webhook may have its own shared secret while sharing one URL; any of them verifies.
    signing_secrets: list[Secret] = Field(default_factory=list, repr=False)
    user_data_key: UserDataKey | None = Field(default=None, repr=False)
    # The REST API's key (``apikey`` header), for enrichment; issued by HR Manager.
    api_key: str | None = Field(default=None, min_length=1, repr=False)


@dataclass(frozen=True, slots=True)
class HRManagerConfig:
    """Options and secrets of one connection, validated together."""

    options: HRManagerOptions
    secrets: HRManagerSecrets

    @property
    def signature_required(self) -> bool:
        """Whether a request must carry a valid signature (see ``require_signature``)."""
        if self.options.require_signature is None:
            return bool(self.secrets.signing_secrets)
        return self.options.require_signature

    @property
    def keys(self) -> list[bytes]:
        """The HMAC keys of the shared secrets."""
        encoding = self.options.secret_encoding
        return [decode_secret(s, encoding) for s in self.secrets.signing_secrets]


def parse_options(options: dict[str, Any]) -> HRManagerOptions:
    """Validate ``options``; raises ValueError naming the settings at fault."""
    return validated(HRManagerOptions, options, "options")


def parse(options: dict[str, Any], secrets: dict[str, Any]) -> HRManagerConfig:
    """Validate; raises ValueError naming the settings at fault, never their values."""
    opts = parse_options(options)
    secs = validated(HRManagerSecrets, secrets, "secrets")
    if not secs.signing_secrets and secs.user_data_key is None:
        raise ValueError(
            "secrets: set secrets.user_data_key (the key entered in the webhook's User Data) "
            "and/or secrets.signing_secrets (its shared secret), or any sender could post events"
        )
    if opts.require_signature and not secs.signing_secrets:
        raise ValueError(
            "secrets.signing_secrets: required while options.require_signature is true "
            "(the webhook's shared secret); leave require_signature unset to accept on the "
            "User Data key alone"
        )
    if opts.require_signature is False and secs.user_data_key is None:
        raise ValueError(
            "options.require_signature: false needs secrets.user_data_key, or any sender "
            "could post events"
        )
    for index, secret in enumerate(secs.signing_secrets):
        try:
            decode_secret(secret, opts.secret_encoding)
        except ValueError:
            raise ValueError(
                f"secrets.signing_secrets.{index}: not hexadecimal "
                "(options.secret_encoding is hex; set it to utf-8 for a plain-text secret)"
            ) from None
    return HRManagerConfig(opts, secs)


def check(options: dict[str, Any], secrets: dict[str, Any]) -> None:
    """The connection check of :class:`app.sources.base.Source`."""
    parse(options, secrets)
