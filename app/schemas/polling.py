"""Polling configuration, the Cloud Elements way (docs/ats/cloudelements.md).

A connection to an ATS without webhooks carries ``options.polling``::

    refresh_interval_min = 15
    [resources.candidates]
    url = "/candidates?updatedAfter=${gmtDate:yyyy-MM-dd'T'HH:mm:ss.SSS'Z'}"
    idField = "id"
    datesConfiguration = { updatedDateField = "updatedOn", createdDateField = "createdOn" }
    pagination = { type = "page_id", limit = 100 }

[C] The shape mirrors Cloud Elements' ``event.poller.configuration`` (url, idField,
datesConfiguration with updated/created field, format and time zone) and its
``event.poller.refresh_interval`` in minutes; polling runs in UTC unless a time zone is given
(docs/ats/cloudelements.md). [C] The URL placeholders ``${gmtDate:<Java date format>}``,
``${epoch}`` and ``${epoch:s}`` are Cloud Elements' (docs/ats/cloudelements.md); ``${isoDate}`` is
ours, the
plain ISO-8601 form SmartRecruiters documents for ``updatedAfter`` (``2013-10-20T19:20:30+01:00``,
docs/ats/smartrecruiters.md). ``pagination``, ``objectType``, ``subject``, ``overlap_s``, ``auth``
and
``base_url`` are ours: Cloud Elements pages through its own hub, we call the ATS directly.

The Cloud Elements instance configuration itself (``event.poller.*`` keys, hub URLs with a
``where`` clause), or the whole ``/instances`` body around it, is accepted as it is pasted and
mapped onto this model (:func:`from_cloud_elements`, :func:`from_hub_url`).

Another ATS without webhooks is a new configuration of this model, not new code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal
from urllib.parse import quote, unquote_plus, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from app.intake.validation import describe
from app.platform.outbound import check_url
from app.schemas.java_date import JavaDateFormat

# The format of Cloud Elements' example (docs/ats/cloudelements.md) and of SmartRecruiters'
# createdOn/updatedOn values.
DEFAULT_DATE_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
# Event-type prefixes whose subject kind is the house's, not the resource's own name.
_SUBJECT_KINDS = {
    "candidate": "person",
    "applicant": "person",
    "person": "person",
    "job": "job",
    "position": "job",
}


def subject_kind(object_type: str) -> str:
    """The house's subject kind for an object type ("candidates" -> "person", "job" -> "job");
    an unknown type is its own kind."""
    name = object_type.lower()
    singular = name[:-1] if name.endswith("s") and len(name) > 1 else name
    return _SUBJECT_KINDS.get(singular, object_type)


# --- Dates (the Java patterns themselves: app.schemas.java_date) ----------------------------


def zone_named(name: str) -> tzinfo:
    """A time zone by name; ``GMT`` and ``UTC`` (Cloud Elements' and the default) are UTC."""
    if name.upper() in ("GMT", "UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


class DateReader:
    """Reads one date field of an item: a Java pattern in a zone, or epoch milliseconds/seconds."""

    def __init__(self, fmt: str, zone_name: str) -> None:
        self.zone = zone_named(zone_name)
        self._epoch_scale: float | None = None
        self._java: JavaDateFormat | None = None
        if fmt in ("epoch", "epoch:ms"):
            self._epoch_scale = 1000.0
        elif fmt == "epoch:s":
            self._epoch_scale = 1.0
        else:
            self._java = JavaDateFormat(fmt)

    def read(self, value: Any) -> datetime:
        """The moment ``value`` names, in UTC; ValueError if it cannot be read."""
        try:
            return self._read(value)
        except (OverflowError, OSError) as exc:
            # An epoch past time_t or float range, or a year-1/9999 date moved across UTC.
            raise ValueError(f"out of range ({exc})") from None

    def _read(self, value: Any) -> datetime:
        if self._epoch_scale is not None:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError("not an epoch number")
            return datetime.fromtimestamp(float(value) / self._epoch_scale, UTC)
        if not isinstance(value, str):
            raise ValueError("not a string")
        assert self._java is not None
        try:
            return self._java.parse(value, self.zone).astimezone(UTC)
        except ValueError:
            # [I] An ATS that writes another ISO-8601 variant than configured (no fraction, an
            # offset instead of Z) still names an unambiguous moment: accept it.
            moment = datetime.fromisoformat(value)
            return (moment if moment.tzinfo else moment.replace(tzinfo=self.zone)).astimezone(UTC)


# --- URL templates --------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\$\{(gmtDate|epoch|isoDate)(?::([^}]*))?\}")


def _renderer(name: str, argument: str | None, zone: tzinfo = UTC) -> Callable[[datetime], str]:
    if name == "gmtDate":
        java = JavaDateFormat(argument or DEFAULT_DATE_FORMAT)
        return lambda since: java.format(since.astimezone(zone))
    if name == "epoch":
        if argument not in (None, "s", "ms"):
            raise ValueError(f"${{epoch:{argument}}}: use ${{epoch}} (ms) or ${{epoch:s}}")
        scale = 1 if argument == "s" else 1000
        # Floor, never round up: a cursor must not skip the millisecond it names.
        return lambda since: str(int(since.timestamp() * scale))
    if argument is not None:
        raise ValueError("${isoDate} takes no format")
    return lambda since: since.astimezone(zone).isoformat(timespec="milliseconds")


def check_template(url: str) -> None:
    """Refuse a template with an unknown placeholder or date format."""
    for match in _PLACEHOLDER.finditer(url):
        _renderer(match.group(1), match.group(2))
    leftover = _PLACEHOLDER.sub("", url)
    if "${" in leftover:
        raise ValueError("unknown placeholder (use ${gmtDate:<format>}, ${epoch} or ${isoDate})")


def render_template(url: str, since: datetime, zone: tzinfo = UTC) -> str:
    """``url`` with every placeholder replaced by ``since``, percent-encoded (an offset's ``+``
    would otherwise reach the ATS as a space).

    Dates are written in ``zone``: [C] "unless configured for a specific time zone, polling
    occurs in UTC" (docs/ats/cloudelements.md), so a resource whose dates are configured in another
    zone is asked
    for them in that zone, ``${gmtDate:…}`` included (its name is Cloud Elements' and says GMT,
    what it renders with the default zone). ``${epoch}`` names the same instant in any zone.
    """
    return _PLACEHOLDER.sub(
        lambda m: quote(_renderer(m.group(1), m.group(2), zone)(since), safe=""), url
    )


# --- Cloud Elements' instance configuration, pasted as it is ---------------------------------

# [C] The keys of a Cloud Elements element instance's polling configuration
# (docs/ats/cloudelements.md). A tenant
# moving from Cloud Elements pastes that block as ``options.polling``; each key is mapped here.
CE_API_KEY = "api.key"
CE_SIGNATURE_KEY = "event.notification.signature.key"
_CE_REFRESH = "event.poller.refresh_interval"
_CE_RESOURCES = "event.poller.configuration"
_CE_VENDOR_TYPE = "event.vendor.type"
_CE_ENABLED = "event.notification.enabled"
# Meaningless here, accepted and ignored: Hirehook records what it polls itself, so there is no
# callback to send, nor to sign. The signature key is a secret: it is dropped when the
# connection is loaded (lift_secrets), never stored.
CE_IGNORED = frozenset({"event.notification.callback.url", CE_SIGNATURE_KEY})
_CE_KEYS = frozenset({CE_API_KEY, _CE_REFRESH, _CE_RESOURCES, _CE_VENDOR_TYPE, _CE_ENABLED})
# The rest of a whole /instances request body, around its "configuration".
_CE_BODY_IGNORED = frozenset({"element", "tags", "name"})
_CE_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")
_CE_HUB = re.compile(r"/hubs/[A-Za-z0-9_-]+(/[^?]+)(?:\?(.*))?", re.DOTALL)
_CE_CONDITION = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*'((?:[^']|'')*)'\s*")
_CE_AND = re.compile(r"\s+and\s+", re.IGNORECASE)


def _is_cloud_elements(raw: dict[str, Any]) -> bool:
    return "configuration" in raw or any(k == CE_API_KEY or k.startswith("event.") for k in raw)


def _json_block(raw: Any) -> Any:
    # A tenants file (TOML) may hold the block as the JSON Cloud Elements shows, in a string.
    if isinstance(raw, str) and raw.lstrip().startswith("{"):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not a JSON object ({exc})") from None
    return raw


def _unwrap(raw: dict[str, Any]) -> dict[str, Any]:
    """The ``configuration`` object of a pasted /instances body; anything else as it is."""
    if isinstance(raw.get("configuration"), dict):
        unknown = set(raw) - _CE_BODY_IGNORED - {"configuration"}
        if unknown:
            raise ValueError(f"{', '.join(sorted(unknown))}: not part of a Cloud Elements body")
        return dict(raw["configuration"])
    return raw


def from_cloud_elements(raw: dict[str, Any]) -> dict[str, Any]:
    """A Cloud Elements instance configuration mapped onto this model's names.

    ``event.poller.refresh_interval`` (minutes, a string or a number) is
    ``refresh_interval_min``, ``event.poller.configuration`` is ``resources`` (its resources'
    ``url``, ``idField`` and ``datesConfiguration`` are this model's own names);
    ``event.vendor.type`` must be ``polling`` and ``event.notification.enabled`` true (anything
    else asks for no polling); :data:`CE_IGNORED` are ignored. ``api.key`` is a secret and does
    not stay in ``options``: see :func:`lift_secrets`. This model's own keys may sit beside
    them (``base_url``, ``auth``, ``initial_lookback_min``); other keys are refused.
    """
    config = _unwrap(raw)
    if CE_API_KEY in config:
        raise ValueError(
            f"{CE_API_KEY}: a secret, not an option (options are stored and shown in clear); "
            "put it in secrets.api_key (loading a tenants file or the admin API moves it there "
            "unless secrets.api_key holds another value)"
        )
    vendor = config.get(_CE_VENDOR_TYPE, "polling")
    if not isinstance(vendor, str) or vendor.lower() != "polling":
        raise ValueError(
            f"{_CE_VENDOR_TYPE}: only a polling configuration maps onto the poller; an instance "
            "with webhooks calls back /v1/cloud-elements/<tenant>/events instead"
        )
    enabled = config.get(_CE_ENABLED, True)
    if enabled not in (True, "true", "True"):
        raise ValueError(
            f"{_CE_ENABLED}: false would poll nothing; disable the connection instead "
            "(enabled = false) or drop the key"
        )
    native = {k: v for k, v in config.items() if k not in _CE_KEYS and k not in CE_IGNORED}
    for ce_name, name in ((_CE_REFRESH, "refresh_interval_min"), (_CE_RESOURCES, "resources")):
        if ce_name not in config:
            continue
        if name in native:
            raise ValueError(f"{ce_name} and {name} are the same setting; give one")
        native[name] = config[ce_name]
    refresh = native.get("refresh_interval_min")
    if isinstance(refresh, str):
        try:
            native["refresh_interval_min"] = float(refresh)
        except ValueError:
            raise ValueError(f'{_CE_REFRESH}: a number of minutes, e.g. "15"') from None
    return native


def from_hub_url(url: str) -> str:
    """A Cloud Elements hub URL as a path on the ATS's own API.

    [C] Cloud Elements polls its hub, e.g.
    ``/hubs/humancapital/candidates?where=updatedAfter='${gmtDate:…}'`` (docs/ats/cloudelements.md);
    Hirehook calls
    the ATS directly, so the ``/hubs/<hub>`` prefix goes and each ``name='value'`` condition of
    the ``where`` clause (joined by ``and``) becomes the query parameter ``name=value``. [I] The
    hub's resource and field names are taken to be the ATS's: SmartRecruiters' ``GET
    /candidates`` does take ``updatedAfter`` [C]; for another ATS set ``url`` in its own terms.
    Any other URL is returned as it is.
    """
    if not url.startswith("/hubs/"):
        return url
    # Placeholders may hold quotes ('T', 'Z'): set aside while the where clause is read.
    kept: list[str] = []

    def keep(found: re.Match[str]) -> str:
        kept.append(found.group(0))
        return f"\x00{len(kept) - 1}\x00"

    match = _CE_HUB.fullmatch(_CE_PLACEHOLDER.sub(keep, url))
    if match is None:
        raise ValueError("a Cloud Elements hub URL is /hubs/<hub>/<resource>?where=...")
    params = []
    for part in (match.group(2) or "").split("&"):
        name, _, value = part.partition("=")
        if name != "where":
            if part:
                params.append(part)
            continue
        clause = unquote_plus(value)
        for condition in _CE_AND.split(clause.strip()):
            found = _CE_CONDITION.fullmatch(condition)
            if found is None:
                raise ValueError(
                    "where: only name='value' conditions joined by and map onto the ATS's "
                    f"query parameters, not {condition.strip()!r:.60}"
                )
            literal = found.group(2).replace("''", "'")
            params.append(f"{found.group(1)}={quote(literal, safe='')}")
    rebuilt = match.group(1) + ("?" + "&".join(params) if params else "")
    return re.sub(r"(?:%00|\x00)(\d+)(?:%00|\x00)", lambda m: kept[int(m.group(1))], rebuilt)


def lift_secrets(
    options: dict[str, Any], secrets: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``options`` and ``secrets`` with a pasted Cloud Elements block's secrets out of
    ``options``, which are stored and shown in clear: ``api.key`` becomes ``secrets.api_key``
    (the poller's default credential, [C] SmartRecruiters' X-SmartToken), and the callback's
    signature key, which polling never uses, is dropped. Never raises: what cannot be moved
    (``secrets.api_key`` already set to another value, a block that does not parse) stays, and
    the connection's check then names it."""
    raw = options.get("polling")
    try:
        block = _json_block(raw)
    except ValueError:
        return options, secrets
    if not isinstance(block, dict) or not _is_cloud_elements(block):
        return options, secrets
    wrapped = isinstance(block.get("configuration"), dict)
    config = dict(block["configuration"] if wrapped else block)
    secrets = dict(secrets)
    config.pop(CE_SIGNATURE_KEY, None)
    if CE_API_KEY in config and secrets.get("api_key") in (None, config[CE_API_KEY]):
        secrets["api_key"] = config.pop(CE_API_KEY)
    body = {**block, "configuration": config} if wrapped else config
    return {**options, "polling": body}, secrets


# --- the configuration ----------------------------------------------------------------------


class _Model(BaseModel):
    # Cloud Elements' names are camelCase (idField, datesConfiguration); ours are accepted
    # in either spelling so a pasted Cloud Elements block loads as it is.
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class DatesConfiguration(_Model):
    """[C] Cloud Elements' ``datesConfiguration``; the defaults are SmartRecruiters' fields."""

    updated_date_field: str | None = "updatedOn"
    updated_date_format: str = DEFAULT_DATE_FORMAT
    updated_date_timezone: str = "UTC"
    created_date_field: str | None = "createdOn"
    created_date_format: str = DEFAULT_DATE_FORMAT
    created_date_timezone: str = "UTC"

    @model_validator(mode="after")
    def _readable(self) -> DatesConfiguration:
        if self.updated_date_field is None and self.created_date_field is None:
            raise ValueError("name an updatedDateField or a createdDateField")
        self.updated_reader()
        self.created_reader()
        return self

    def updated_reader(self) -> DateReader:
        """Reads the updated date."""
        return DateReader(self.updated_date_format, self.updated_date_timezone)

    def created_reader(self) -> DateReader:
        """Reads the created date."""
        return DateReader(self.created_date_format, self.created_date_timezone)


class Pagination(_Model):
    """How a list is paged. ``page_id``: [C] SmartRecruiters' ``pageId`` cursor, the next one in
    ``nextPageId`` (or a ``Link: rel="next"`` header); ``offset``: ``offset`` + ``limit``;
    ``none``: one request returns everything."""

    type: Literal["page_id", "offset", "none"] = "page_id"
    # [C] SmartRecruiters lists take limit 1-100 (docs/ats/smartrecruiters.md).
    limit: int = Field(default=100, ge=1, le=100)
    limit_param: str = Field(default="limit", min_length=1)
    page_param: str = Field(default="pageId", min_length=1)
    next_field: str = Field(default="nextPageId", min_length=1)
    offset_param: str = Field(default="offset", min_length=1)
    # [C] SmartRecruiters' list result is {limit, offset, totalFound, content[]}.
    items_field: str = Field(default="content", min_length=1)
    total_field: str = Field(default="totalFound", min_length=1)


class ResourceConfig(_Model):
    """One polled resource: where to list it and how to read its items."""

    url: str = Field(min_length=2)
    id_field: str = Field(default="id", min_length=1)
    dates_configuration: DatesConfiguration = Field(default_factory=DatesConfiguration)
    pagination: Pagination = Field(default_factory=Pagination)
    # The event type is "<objectType>.created|updated"; default: the resource name without a
    # trailing "s" ("candidates" -> "candidate.updated").
    object_type: str | None = Field(default=None, min_length=1)
    # The subject kind the item's id is recorded under ({"person": id}); default from the
    # object type (candidate -> person, job -> job), else the object type itself.
    subject: str | None = Field(default=None, min_length=1)
    # How far before the newest date seen the next poll starts again: items sharing the
    # boundary timestamp, or written while a poll ran, are read twice rather than missed
    # (the dedupe key makes the second reading a no-op). Must exceed the clock skew between
    # the ATS and this host.
    overlap_s: float = Field(default=60.0, ge=0, le=86400)
    # The rate-budget route the list calls spend; default "GET <path>" ("GET /candidates" is
    # SmartRecruiters' one-at-a-time route).
    route: str | None = Field(default=None, min_length=1)

    @field_validator("url", mode="before")
    @classmethod
    def _hub(cls, url: Any) -> Any:
        return from_hub_url(url) if isinstance(url, str) else url

    @field_validator("url")
    @classmethod
    def _template(cls, url: str) -> str:
        if not url.startswith("/") or url.startswith("//"):
            raise ValueError("must be a path on the API (starting with /), e.g. /candidates?...")
        check_template(url)
        return url

    def event_prefix(self, name: str) -> str:
        """The event type's prefix for resource ``name``."""
        if self.object_type:
            return self.object_type
        return name[:-1] if name.endswith("s") and len(name) > 1 else name

    def subject_kind(self, name: str) -> str:
        """The subject kind the item's id is recorded under."""
        return self.subject or subject_kind(self.event_prefix(name))

    def url_zone(self) -> tzinfo:
        """The time zone the URL's dates are written in: the one the dates it filters on are
        configured in (the updated date's, else the created date's)."""
        dates = self.dates_configuration
        if dates.updated_date_field is not None:
            return zone_named(dates.updated_date_timezone)
        return zone_named(dates.created_date_timezone)

    def budget_route(self) -> str:
        """The rate-budget route of this resource's list calls."""
        return self.route or f"GET {urlsplit(self.url).path}"


class Auth(_Model):
    """How the poller authenticates: one header carrying one of the connection's secrets.
    The default is SmartRecruiters' ``X-SmartToken: <secrets.api_key>`` [C]."""

    header: str = Field(default="X-SmartToken", min_length=1)
    secret: str = Field(default="api_key", min_length=1)
    # e.g. "Bearer " for an OAuth access token in ``Authorization``.
    prefix: str = ""


class PollingOptions(_Model):
    """``options.polling`` of a connection."""

    # [C] Cloud Elements' event.poller.refresh_interval, in minutes.
    refresh_interval_min: float = Field(default=15, gt=0, le=1440)
    # Defaults to the connection's options.base_url.
    base_url: str | None = None
    auth: Auth = Field(default_factory=Auth)
    resources: dict[str, ResourceConfig] = Field(min_length=1)
    # The first poll of a resource (no cursor yet) starts this far back; older history is a
    # back-fill (`hirehook poll --since`). Default: one refresh interval.
    initial_lookback_min: float | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _cloud_elements(cls, raw: Any) -> Any:
        raw = _json_block(raw)
        if isinstance(raw, dict) and _is_cloud_elements(raw):
            return from_cloud_elements(raw)
        return raw

    @field_validator("resources")
    @classmethod
    def _names(cls, resources: dict[str, ResourceConfig]) -> dict[str, ResourceConfig]:
        for name in resources:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
                raise ValueError(f"resource name {name!r}: use letters, digits, _ . -")
        return resources

    @property
    def refresh_interval(self) -> timedelta:
        """How often each resource is polled."""
        return timedelta(minutes=self.refresh_interval_min)

    @property
    def initial_lookback(self) -> timedelta:
        """How far back a resource's first poll starts."""
        if self.initial_lookback_min is None:
            return self.refresh_interval
        return timedelta(minutes=self.initial_lookback_min)


def _base_url(url: str) -> str:
    # Polled documents carry personal data and the request the credential: the outbound
    # policy (app/platform/outbound.py) decides.
    return check_url(url).rstrip("/")


class PollingConfig:
    """A connection's polling options with its base URL and credential resolved."""

    def __init__(self, options: PollingOptions, base_url: str, credential: str) -> None:
        self.options = options
        self.base_url = base_url
        self._credential = credential

    def __repr__(self) -> str:
        return f"PollingConfig(base_url={self.base_url!r}, resources={list(self.resources)})"

    @property
    def resources(self) -> dict[str, ResourceConfig]:
        """The polled resources by name."""
        return self.options.resources

    def headers(self) -> dict[str, str]:
        """The headers of every poll request (the credential included: never log them)."""
        auth = self.options.auth
        return {auth.header: f"{auth.prefix}{self._credential}", "accept": "application/json"}


def parse(options: dict[str, Any], secrets: dict[str, Any]) -> PollingConfig:
    """Validate a connection's ``options.polling``; ValueError naming the setting at fault
    (never a secret's value)."""
    raw = options.get("polling")
    try:
        raw = _json_block(raw)
        if isinstance(raw, dict) and _is_cloud_elements(raw):
            raw = from_cloud_elements(raw)
    except ValueError as exc:
        # Mapped here rather than only in the model, so the message names no "body".
        raise ValueError(f"options.polling: {exc}") from None
    try:
        polling = PollingOptions.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"options.polling: {describe(exc)}") from None
    base = polling.base_url or options.get("base_url")
    if not isinstance(base, str) or not base:
        raise ValueError("options.polling.base_url (or options.base_url) is required")
    try:
        base = _base_url(base)
    except ValueError as exc:
        where = "options.polling.base_url" if polling.base_url else "options.base_url"
        raise ValueError(f"{where}: {exc}") from None
    credential = secrets.get(polling.auth.secret)
    if not isinstance(credential, str) or not credential:
        raise ValueError(
            f"secrets.{polling.auth.secret}: required by options.polling.auth (a string)"
        )
    return PollingConfig(polling, base, credential)


def check(options: dict[str, Any], secrets: dict[str, Any]) -> None:
    """The tenants-file check of a polled connection (any source)."""
    if "polling" in options:
        parse(options, secrets)
