"""Configuration of an ``hmac`` connection (a sender that signs the raw body with an HMAC in one
header), checked when it is loaded.

A connection names a ``preset`` (an ATS whose scheme is written down here) and may override any
of its settings, or sets them all itself. The presets, and where each fact comes from
(docs/ats/hmac-signers.md; [C] confirmed from the vendor's own page, [I] inferred):

* ``ashby`` [C] (developers.ashbyhq.com, "Authenticating webhooks"): ``Ashby-Signature:
  sha256=<hex HMAC-SHA256(secret, raw body)>``; the event name is the body's ``action``. Ashby
  documents no event id: a repeat is recognised by the digest of its body.
* ``greenhouse`` [I] (secondary write-ups, not Greenhouse's page): ``Signature: sha256 <hex
  HMAC-SHA256(secret key, raw body)>`` (a space, not ``=``); the event name is the body's
  ``action``; [I] the event id is the ``Greenhouse-Event-ID`` header. Kept configurable:
  override any of these on the connection if Greenhouse turns out to differ.

Lever is not a preset: what it signs is not confirmed (docs/ats/hmac-signers.md).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.intake.validation import validated
from app.verifiers.hmac import Algorithm, Encoding, Signed

# A shared secret shorter than this is guessable, or a placeholder left in the file.
MIN_SECRET_CHARS = 32

Preset = Literal["ashby", "greenhouse"]

PRESETS: dict[str, dict[str, Any]] = {
    # [C] Ashby's "Authenticating webhooks" page.
    "ashby": {
        "signature_header": "Ashby-Signature",
        "algorithm": "sha256",
        "encoding": "hex",
        "prefix": "sha256=",
        "event_path": "action",
    },
    # [I] Secondary write-ups of Greenhouse's webhooks; every value may be overridden.
    "greenhouse": {
        "signature_header": "Signature",
        "algorithm": "sha256",
        "encoding": "hex",
        "prefix": "sha256 ",
        "event_path": "action",
        "id_header": "Greenhouse-Event-ID",
    },
}

_HEADER = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$"
_PATH = r"^[^.\s][^\s]{0,255}$"


class HmacOptions(BaseModel):
    """``options`` of an ``hmac`` connection; unset settings come from the ``preset``."""

    model_config = ConfigDict(extra="forbid")

    preset: Preset | None = None
    # The header carrying the signature, e.g. "Ashby-Signature".
    signature_header: str | None = Field(default=None, pattern=_HEADER)
    algorithm: Algorithm | None = None
    encoding: Encoding | None = None
    # What precedes the signature in the header: "sha256=", "sha256 " or nothing.
    prefix: str | None = Field(default=None, max_length=32)
    # A header with the Unix time of the signature; then requests older or newer than
    # tolerance_s are refused, and ``signed`` may include it.
    timestamp_header: str | None = Field(default=None, pattern=_HEADER)
    tolerance_s: int = Field(default=300, ge=1, le=86_400)
    signed: Signed | None = None
    # Where the event's name is: a dotted JSON path in the body ("action", "event.type") or a
    # header; the header wins when both are set and it is present.
    event_path: str | None = Field(default=None, pattern=_PATH)
    event_header: str | None = Field(default=None, pattern=_HEADER)
    # Where the event's id, the dedupe key, is; without one, a digest of the body is the key.
    id_path: str | None = Field(default=None, pattern=_PATH)
    id_header: str | None = Field(default=None, pattern=_HEADER)


class HmacSecrets(BaseModel):
    """``secrets`` of an ``hmac`` connection."""

    model_config = ConfigDict(extra="forbid")

    # Several while a secret is rotated; any of them verifies.
    signing_secrets: list[str] = Field(min_length=1, max_length=10, repr=False)


class Scheme(BaseModel):
    """The connection's scheme, its preset and its own settings merged."""

    model_config = ConfigDict(frozen=True)

    signature_header: str
    algorithm: Algorithm = "sha256"
    encoding: Encoding = "hex"
    prefix: str = ""
    timestamp_header: str | None = None
    tolerance_s: int = 300
    signed: Signed = "body"
    event_path: str | None = None
    event_header: str | None = None
    id_path: str | None = None
    id_header: str | None = None


class HmacConfig:
    """Options, secrets and the merged scheme of one connection, validated together."""

    def __init__(self, options: HmacOptions, secrets: HmacSecrets, scheme: Scheme) -> None:
        self.options = options
        self.secrets = secrets
        self.scheme = scheme

    @property
    def keys(self) -> list[bytes]:
        """The HMAC keys of the signing secrets (as UTF-8, as the ATSs use them)."""
        return [s.encode() for s in self.secrets.signing_secrets]


def parse_options(options: dict[str, Any]) -> tuple[HmacOptions, Scheme]:
    """The options and the scheme they give; ValueError naming the setting at fault."""
    opts = validated(HmacOptions, options, "options")
    merged = dict(PRESETS[opts.preset]) if opts.preset else {}
    merged.update(opts.model_dump(exclude_unset=True, exclude={"preset"}))
    if not merged.get("signature_header"):
        raise ValueError("options.signature_header: required (or a preset)")
    if merged.get("signed") == "timestamp.body" and not merged.get("timestamp_header"):
        raise ValueError("options.timestamp_header: required when signed = timestamp.body")
    if not merged.get("event_path") and not merged.get("event_header"):
        raise ValueError("options.event_path: an event_path or an event_header is required")
    return opts, validated(Scheme, merged, "options")


def parse(options: dict[str, Any], secrets: dict[str, Any]) -> HmacConfig:
    """Validate; raises ValueError naming the settings at fault, never their values."""
    opts, scheme = parse_options(options)
    secs = validated(HmacSecrets, secrets, "secrets")
    for index, secret in enumerate(secs.signing_secrets):
        if len(secret) < MIN_SECRET_CHARS:
            # The value itself is never echoed: it is a secret.
            raise ValueError(
                f"secrets.signing_secrets[{index}]: at least {MIN_SECRET_CHARS} characters "
                "are required"
            )
    return HmacConfig(opts, secs, scheme)


def check(options: dict[str, Any], secrets: dict[str, Any]) -> None:
    """The connection check of :class:`app.sources.base.Source`."""
    parse(options, secrets)
