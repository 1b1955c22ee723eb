"""The secrets and options of an iCIMS connection (docs/icims.md), checked before use.

A connection that does not pass these models is refused when the tenants file is loaded; one
broken since is answered like an unknown customer (401), never with a hint of its settings.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from app.intake.validation import validated
from app.platform.outbound import OutboundUrl
from app.platform.secret_strength import require_strong_secret
from app.schemas.icims import (
    APPLICATION_COMPLETE,
    EVENT_TYPES,
    JOB_EDIT,
    JOB_POSTING,
    JOB_UNPOSTING,
    LINK_EVENTS,
    ONBOARD_PORTAL_TASK,
    ONCE_EVENTS,
    STATUS_FLOW_UPDATE,
    IcimsEvent,
)
from app.schemas.keys import credential_id

ProfileKind = Literal["people", "jobs", "applicantworkflows"]
PROFILE_KINDS: tuple[ProfileKind, ...] = ("people", "jobs", "applicantworkflows")
# [I] The recruiting workflow names its job in ``baseprofile`` and its person in
# ``associatedprofile`` (Workflows API examples post them as bare ids); read as an id or as
# {"id": ...}.
WORKFLOW_JOB_FIELD = "baseprofile"
WORKFLOW_PERSON_FIELD = "associatedprofile"
# [I] iCIMS field ids behind the normalized columns; a connection may list others under
# ``options.enrichment_fields``. The workflow's two profile links are always asked for.
DEFAULT_ENRICHMENT_FIELDS: dict[ProfileKind, list[str]] = {
    "people": ["email", "firstname", "lastname"],
    "jobs": ["joblocation", "jobtitle"],
    "applicantworkflows": [WORKFLOW_PERSON_FIELD, WORKFLOW_JOB_FIELD, "status"],
}
FieldId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.]{1,100}$")]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]

# What a link template may use: the per-record token, the record id and the event's own fields.
LINK_FIELDS = frozenset(
    {
        "token",
        "record_id",
        "eventType",
        "customerId",
        "userId",
        "systemId",
        "personId",
        "jobId",
        "newStatus",
        "returnUrl",
        "incompleteUrl",
        "portalUrl",
    }
)
# The profiles validation can read for each event: those its payload names, by id
# (docs/ats/icims.md, event table), or through the recruiting workflow (Application Complete's job).
# The first is where ``package_field`` is read unless ``package_profile`` says otherwise.
# [I] Onboard Portal Task names the new hire, and its job where a rel="job" link names one
# (app/schemas/icims.py); its onboarding workflow has no id there.
VALIDATION_PROFILES: dict[str, tuple[ProfileKind, ...]] = {
    APPLICATION_COMPLETE: ("applicantworkflows", "people", "jobs"),
    STATUS_FLOW_UPDATE: ("applicantworkflows", "people", "jobs"),
    JOB_POSTING: ("jobs",),
    JOB_EDIT: ("jobs",),
    JOB_UNPOSTING: ("jobs",),
    ONBOARD_PORTAL_TASK: ("people", "jobs"),
}
# iCIMS asks for Application Complete to be "as failsafe as possible": an error there shows
# the candidate a failure at the end of their application. Unless the connection says
# otherwise, it is recorded and answered even when validation fails or cannot run.
FAILSAFE_EVENTS = frozenset({APPLICATION_COMPLETE})
# A repeat of the newest event of its thread is a duplicate however late it comes (a user
# retrying the next day after calling support, docs/ats/icims.md scenario 5): a re-run, a re-posting
# is
# a new thread head first (A->B, B->A, A->B; post, unpost, post). Only Job Edit keeps a
# window: it carries customerId, userId and systemId alone, so the same user's retry and
# next edit look alike. A repeat after 10 minutes costs one more job update delivered,
# a repeat taken for a retry would lose an edit. docs/icims.md, "Duplicates".
DEFAULT_DEDUPE_WINDOWS_S = {JOB_EDIT: 600}
API_HOSTS = {"us": "https://api.icims.com", "eu": "https://api-eu.icims.com"}


class ConfigError(Exception):
    """The connection's configuration is unusable; the message names the setting, never a value."""


class _Strict(BaseModel):
    # A typo in an option must fail loudly, not silently switch a feature off.
    model_config = ConfigDict(extra="forbid")


class PackageRule(_Strict):
    """What must be filled in before this package can be ordered."""

    required: dict[ProfileKind, list[FieldId]] = Field(default_factory=dict)


# "refuse": the actor's error (docs/icims.md); "accept": recorded and answered as if valid,
# the failure noted beside the payload.
OnFailure = Literal["refuse", "accept"]


class ValidationRules(_Strict):
    """Checks run against the iCIMS API inside the request, before the event is recorded."""

    enabled: bool = True
    # Required whatever the package.
    required: dict[ProfileKind, list[FieldId]] = Field(default_factory=dict)
    # Either the trigger status decides the package (Status Flow Update only) ...
    status_packages: dict[str, str] | None = None
    # ... or the user picks it in a field of a profile (default: the event's first profile in
    # VALIDATION_PROFILES, e.g. the recruiting workflow, or the job for the job events).
    package_field: FieldId | None = None
    package_profile: ProfileKind | None = None
    packages: dict[str, PackageRule] = Field(default_factory=dict)
    # What a failed rule answers, and what an iCIMS API that could not be asked (slow,
    # throttled, failing, refusing) answers; None: the event type's default (FAILSAFE_EVENTS).
    on_invalid: OnFailure | None = None
    on_api_error: OnFailure | None = None
    # The longest validation may take; never more than the request's budget allows.
    timeout_s: float = Field(default=10.0, gt=0, le=25)

    @model_validator(mode="after")
    def _one_package_source(self) -> ValidationRules:
        if self.status_packages is not None and self.package_field is not None:
            raise ValueError("set status_packages or package_field, not both")
        for package in (self.status_packages or {}).values():
            if package not in self.packages:
                raise ValueError(f"status_packages names package {package!r}, not in packages")
        if self.package_field is not None and not self.packages:
            raise ValueError("package_field needs at least one entry in packages")
        if self.package_profile is not None and self.package_field is None:
            raise ValueError("package_profile needs package_field")
        return self

    def package_profile_for(self, event_type: str) -> ProfileKind:
        """The profile ``package_field`` is read from for ``event_type``."""
        return self.package_profile or VALIDATION_PROFILES[event_type][0]

    def on_failure(self, event_type: str, *, api_error: bool) -> OnFailure:
        """What a failed rule (or, with ``api_error``, an unreachable API) answers."""
        chosen = self.on_api_error if api_error else self.on_invalid
        if chosen is not None:
            return chosen
        return "accept" if event_type in FAILSAFE_EVENTS else "refuse"

    def fields(self, event_type: str) -> dict[ProfileKind, list[str]]:
        """Every field any outcome may need, per profile, so one fetch per profile suffices."""
        wanted: dict[ProfileKind, set[str]] = {kind: set() for kind in PROFILE_KINDS}
        for kind, names in self.required.items():
            wanted[kind].update(names)
        for rule in self.packages.values():
            for kind, names in rule.required.items():
                wanted[kind].update(names)
        if self.package_field is not None:
            wanted[self.package_profile_for(event_type)].add(self.package_field)
        return {kind: sorted(names) for kind, names in wanted.items() if names}

    def profiles(self) -> set[ProfileKind]:
        """The profiles the rules name (not counting the package field's)."""
        named = {kind for kind, names in self.required.items() if names}
        for rule in self.packages.values():
            named.update(kind for kind, names in rule.required.items() if names)
        return named

    def required_for(self, package: str | None) -> dict[ProfileKind, list[str]]:
        """The fields that must be filled for ``package`` (None: no package chosen)."""
        out: dict[ProfileKind, list[str]] = {k: list(v) for k, v in self.required.items()}
        if package is not None and package in self.packages:
            for kind, names in self.packages[package].required.items():
                out.setdefault(kind, []).extend(n for n in names if n not in out.get(kind, []))
        return out


class EventSettings(_Strict):
    """How one event type is answered for this connection."""

    # e.g. "https://assess.example.com/start/{token}"; required for the 303 events.
    link_template: str | None = None
    validation: ValidationRules | None = None
    # How long a repeat of the newest event of its thread stays a duplicate; 0 means forever
    # and None the event type's default (see DEFAULT_DEDUPE_WINDOWS_S). Not for ONCE_EVENTS.
    dedupe_window_s: int | None = Field(default=None, ge=0)


class ApiSettings(_Strict):
    """Calls from Hirehook to the customer's iCIMS REST API (OAuth 2.0 client credentials)."""

    client_id: NonEmpty
    # The customer's token URL, as iCIMS issued it with the API credentials. It and base_url
    # receive the credentials: checked by the outbound policy (app/platform/outbound.py).
    token_url: OutboundUrl
    region: Literal["us", "eu"] = "us"
    # Overrides the regional host (a proxy, a sandbox, the test suite's fake).
    base_url: OutboundUrl | None = None
    # [I] Which client authentication iCIMS's token endpoint wants is not documented publicly.
    token_auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_post"  # noqa: S105 - a method name, not a secret
    # [I] Some identity providers in front of iCIMS want an audience; sent only when set.
    audience: str | None = None

    @property
    def api_base(self) -> str:
        """Scheme and host of the REST API for this customer."""
        return (self.base_url or API_HOSTS[self.region]).rstrip("/")


class IcimsOptions(_Strict):
    """``options`` of an iCIMS connection."""

    events: dict[str, EventSettings] = Field(default_factory=dict)
    # The sender's eventType string -> the name this version models (see app/schemas/icims.py).
    type_aliases: dict[str, str] = Field(default_factory=dict)
    oauth_client_id: str | None = Field(default=None, min_length=1)
    # iCIMS's own example token reply says 86400 s.
    oauth_token_expires_s: int = Field(default=86400, ge=1)
    # When set, the HMAC ``user=`` must equal it.
    hmac_user: str | None = None
    # Accepted clock difference of x-icims-date.
    hmac_tolerance_s: int = Field(default=300, ge=1)
    # Validation against the iCIMS API stops this long before the request's budget ends, so
    # the record can still be committed and answered in time.
    commit_reserve_s: float = Field(default=2.0, ge=0)
    # [I] Whether iCIMS hashes the gzip'd or the plain body is unknown (docs/ats/icims.md).
    hmac_body_hash: Literal["either", "decoded", "wire"] = "either"
    # [I] How iCIMS names profile types in {{profileType.IntegrationFieldId}}; the API path
    # names (people, jobs, applicantworkflows) unless mapped here.
    field_placeholder_profiles: dict[ProfileKind, str] = Field(default_factory=dict)
    api: ApiSettings | None = None
    # Fields the workers fetch per profile for the normalized records (see DEFAULT_...).
    enrichment_fields: dict[ProfileKind, list[FieldId]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_ENRICHMENT_FIELDS.items()}
    )


class IcimsSecrets(_Strict):
    """``secrets`` of an iCIMS connection (encrypted at rest)."""

    basic_username: str | None = Field(default=None, min_length=1)
    basic_password: str | None = Field(default=None, min_length=1)
    # Several while a secret is rotated; any of them verifies.
    hmac_secrets: list[NonEmpty] = Field(default_factory=list)
    oauth_client_secrets: list[NonEmpty] = Field(default_factory=list)
    api_client_secret: str | None = Field(default=None, min_length=1)


class IcimsConfig:
    """Options and secrets of one connection, validated together."""

    def __init__(self, options: IcimsOptions, secrets: IcimsSecrets) -> None:
        self.options = options
        self.secrets = secrets

    @classmethod
    def parse(cls, options: dict[str, Any], secrets: dict[str, Any]) -> IcimsConfig:
        """Validate; raises :class:`ConfigError` whose message names settings, never values."""
        try:
            opts = validated(IcimsOptions, options, "options")
            secs = validated(IcimsSecrets, secrets, "secrets")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        config = cls(opts, secs)
        config._check()
        return config

    def _check(self) -> None:
        self._check_auth()
        for event_type, settings in self.options.events.items():
            self._check_event(event_type, settings)

    def _check_auth(self) -> None:
        o, s = self.options, self.secrets
        if (s.basic_username is None) != (s.basic_password is None):
            raise ConfigError("secrets: basic_username and basic_password go together")
        if bool(s.oauth_client_secrets) != (o.oauth_client_id is not None):
            raise ConfigError(
                "options.oauth_client_id and secrets.oauth_client_secrets go together"
            )
        if not (self.basic_enabled or self.hmac_enabled or self.oauth_enabled):
            raise ConfigError("no authentication configured: set Basic, HMAC or OAuth secrets")
        for alias, target in o.type_aliases.items():
            if target not in EVENT_TYPES:
                raise ConfigError(f"options.type_aliases.{alias}: unknown event type {target!r}")

    def _check_event(self, event_type: str, settings: EventSettings) -> None:
        where = f"options.events.{event_type}"
        if event_type not in EVENT_TYPES:
            raise ConfigError(f"{where}: unknown event type")
        if event_type in LINK_EVENTS and settings.link_template is None:
            raise ConfigError(f"{where}.link_template: required for a 303 answer")
        if event_type not in LINK_EVENTS and settings.link_template is not None:
            raise ConfigError(f"{where}.link_template: this event is answered 200")
        if settings.link_template is not None:
            check_link_template(settings.link_template, where=f"{where}.link_template")
        rules = settings.validation
        if rules is None or not rules.enabled:
            return
        readable = VALIDATION_PROFILES[event_type]
        named = rules.profiles()
        if rules.package_field is not None:
            named.add(rules.package_profile_for(event_type))
        unreadable = sorted(named - set(readable))
        if unreadable:
            raise ConfigError(
                f"{where}.validation: {', '.join(unreadable)} not available for this event "
                f"(it names {', '.join(readable)})"
            )
        if rules.status_packages is not None and event_type != STATUS_FLOW_UPDATE:
            raise ConfigError(f"{where}.validation.status_packages: no status here")
        if self.options.api is None or self.secrets.api_client_secret is None:
            raise ConfigError(f"{where}.validation needs options.api and secrets.api_client_secret")

    def fields_for(self, event_type: str) -> dict[ProfileKind, list[str]]:
        """The fields each profile is fetched with for ``event_type``.

        Validation and enrichment both ask for exactly these, so what validation fetched
        inside the request is the very cache entry the worker looks for afterwards.
        """
        wanted: dict[ProfileKind, set[str]] = {
            kind: set(self.options.enrichment_fields.get(kind, ())) for kind in PROFILE_KINDS
        }
        wanted["applicantworkflows"].update((WORKFLOW_PERSON_FIELD, WORKFLOW_JOB_FIELD))
        settings = self.options.events.get(event_type)
        rules = settings.validation if settings is not None else None
        if rules is not None and rules.enabled:
            for kind, names in rules.fields(event_type).items():
                wanted[kind].update(names)
        return {kind: sorted(names) for kind, names in wanted.items()}

    @property
    def auth(self) -> IcimsAuth:
        """The settings requests are authenticated with."""
        return IcimsAuth.of(self.options, self.secrets)

    @property
    def basic_enabled(self) -> bool:
        """Basic credentials are configured."""
        return self.auth.basic_enabled

    @property
    def hmac_enabled(self) -> bool:
        """HMAC secrets are configured."""
        return self.auth.hmac_enabled

    @property
    def oauth_enabled(self) -> bool:
        """OAuth client credentials are configured."""
        return self.auth.oauth_enabled

    def dedupe_window_s(self, event_type: str) -> int:
        """Seconds within which a repeat of its thread's newest event is a duplicate; 0 for
        as long as that record is kept."""
        settings = self.options.events.get(event_type)
        if settings is not None and settings.dedupe_window_s is not None:
            return settings.dedupe_window_s
        return DEFAULT_DEDUPE_WINDOWS_S.get(event_type, 0)

    def event_type(self, sent: str) -> str:
        """The modelled name of the sender's ``eventType``."""
        return self.options.type_aliases.get(sent, sent)

    def placeholder(self, kind: ProfileKind, field: str) -> str:
        """A field reference iCIMS replaces with the field's label: ``{{people.usssn}}``."""
        profile = self.options.field_placeholder_profiles.get(kind, kind)
        return "{{" + f"{profile}.{field}" + "}}"


def check(options: dict[str, Any], secrets: dict[str, Any]) -> None:
    """Refuse an unusable configuration when it is loaded; raises ValueError."""
    try:
        config = IcimsConfig.parse(options, secrets)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    # Only when loaded, not in parse(): a connection stored before this rule keeps receiving
    # until its tenants file is loaded again, rather than refusing every event.
    for what, value in _named_secrets(config.secrets):
        require_strong_secret(value, what=what)
    # Only when loaded too: a stored connection with such a window keeps receiving, and its
    # repeats stay duplicates forever (app/routers/icims/events.py).
    for event_type in ONCE_EVENTS:
        settings = config.options.events.get(event_type)
        if settings is not None and settings.dedupe_window_s:
            raise ValueError(
                f"options.events.{event_type}.dedupe_window_s: its ids name one action for "
                "good, so a repeat is a duplicate forever"
            )


def _named_secrets(s: IcimsSecrets) -> list[tuple[str, str]]:
    # The brute-force guard (app/intake/guard.py) only slows guessing down; the length of the
    # credentials iCIMS presents is what makes it hopeless.
    named = [("secrets.basic_password", s.basic_password)]
    named += [(f"secrets.hmac_secrets[{i}]", v) for i, v in enumerate(s.hmac_secrets)]
    named += [
        (f"secrets.oauth_client_secrets[{i}]", v) for i, v in enumerate(s.oauth_client_secrets)
    ]
    # [I] The API client secret is iCIMS's, not chosen here; assumed to be issued at 32
    # characters or more like the others (its format is not documented publicly).
    named.append(("secrets.api_client_secret", s.api_client_secret))
    return [(what, value) for what, value in named if value is not None]


@dataclass(frozen=True, slots=True)
class IcimsAuth:
    """Only what authenticating a request needs, read leniently.

    A connection whose options broke after it was loaded still proves (or fails) a sender's
    credentials with these: a sender that fails gets the unknown customer's 401, and only one
    that passes is told the integration is misconfigured.
    """

    basic_username: str | None = None
    basic_password: str | None = field(default=None, repr=False)
    hmac_secrets: tuple[str, ...] = field(default=(), repr=False)
    hmac_user: str | None = None
    hmac_tolerance_s: int = 300
    hmac_body_hash: Literal["either", "decoded", "wire"] = "either"
    oauth_client_id: str | None = None
    oauth_client_secrets: tuple[str, ...] = field(default=(), repr=False)
    oauth_token_expires_s: int = 86400

    @classmethod
    def read(cls, options: dict[str, Any], secrets: dict[str, Any]) -> IcimsAuth | None:
        """The credentials settings, or None if even they are unusable."""
        try:
            secs = IcimsSecrets.model_validate(secrets)
            opts = _AuthOptions.model_validate(options)
        except ValidationError:
            return None
        return cls.of(opts, secs)

    @classmethod
    def of(cls, opts: _AuthOptions | IcimsOptions, secs: IcimsSecrets) -> IcimsAuth:
        """From validated models (the full options or just their authentication part)."""
        return cls(
            basic_username=secs.basic_username,
            basic_password=secs.basic_password,
            hmac_secrets=tuple(secs.hmac_secrets),
            hmac_user=opts.hmac_user,
            hmac_tolerance_s=opts.hmac_tolerance_s,
            hmac_body_hash=opts.hmac_body_hash,
            oauth_client_id=opts.oauth_client_id,
            oauth_client_secrets=tuple(secs.oauth_client_secrets),
            oauth_token_expires_s=opts.oauth_token_expires_s,
        )

    @property
    def basic_enabled(self) -> bool:
        """Basic credentials are configured."""
        return self.basic_username is not None and self.basic_password is not None

    @property
    def hmac_enabled(self) -> bool:
        """HMAC secrets are configured."""
        return bool(self.hmac_secrets)

    @property
    def oauth_enabled(self) -> bool:
        """OAuth client credentials are configured."""
        return self.oauth_client_id is not None and bool(self.oauth_client_secrets)


class _AuthOptions(BaseModel):
    # The authentication options of IcimsOptions, ignoring everything else.
    model_config = ConfigDict(extra="ignore")

    oauth_client_id: str | None = Field(default=None, min_length=1)
    oauth_token_expires_s: int = Field(default=86400, ge=1)
    hmac_user: str | None = None
    hmac_tolerance_s: int = Field(default=300, ge=1)
    hmac_body_hash: Literal["either", "decoded", "wire"] = "either"


def credential_ids(options: dict[str, Any], secrets: dict[str, Any]) -> list[str]:
    """The identities this connection's requests present before their body is read: the Basic
    username, the HMAC ``user=`` and the OAuth client id."""
    config = IcimsConfig.parse(options, secrets)
    found: list[str] = []
    if config.secrets.basic_username is not None:
        found.append(credential_id("basic", config.secrets.basic_username))
    if config.options.hmac_user is not None:
        found.append(credential_id("hmac", config.options.hmac_user))
    if config.options.oauth_client_id is not None:
        found.append(credential_id("oauth", config.options.oauth_client_id))
    return found


def check_link_template(template: str, *, where: str) -> None:
    """An absolute http(s) URL whose ``{placeholders}`` are all in :data:`LINK_FIELDS`."""
    parts = urlsplit(template)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ConfigError(f"{where}: must be an absolute https URL")
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    for name in names:
        # Exact names only: str.format would otherwise allow attribute and index lookups.
        if name not in LINK_FIELDS:
            raise ConfigError(f"{where}: unknown placeholder {{{name}}}")


def render_link(template: str, event: IcimsEvent, *, token: str, record_id: str) -> str:
    """The link for one record: template placeholders filled, each value URL-encoded."""
    values: dict[str, str] = {"token": token, "record_id": record_id}
    for key, value in event.model_dump(by_alias=True).items():
        if key in LINK_FIELDS and isinstance(value, str):
            values[key] = value
    encoded = {name: quote(values.get(name, ""), safe="") for name in LINK_FIELDS}
    return template.format_map(encoded)
