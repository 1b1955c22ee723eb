"""What the admin operations take and return; the admin API documents these, the CLI prints
them as JSON. No model here ever carries a secret value: only which secrets are set."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.store.query import STATES, RecordState

# One list of record states for the API, the CLI and the console (derived in the store).
RECORD_STATES: tuple[str, ...] = STATES
# PostgreSQL's bigint, which every id column is.
INT64_MAX = 2**63 - 1
# Times a filter can name: what Python and PostgreSQL both hold, a day inside Python's
# calendar either way so that converting to UTC or a day-long default window cannot overflow.
TIME_MIN = datetime(1, 1, 2, tzinfo=UTC)
TIME_MAX = datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC)
_TIME_RANGE = (
    # isoformat, not strftime: %Y does not pad year 1 to four digits on every platform.
    f"times must be between {TIME_MIN.isoformat().replace('+00:00', 'Z')} and "
    f"{TIME_MAX.isoformat().replace('+00:00', 'Z')} "
    "(UTC, after applying the offset)"
)


def storable_time(value: datetime) -> datetime:
    """``value`` if it lies within :data:`TIME_MIN` and :data:`TIME_MAX`, a time without an
    offset taken as UTC (so it compares with the others); ValueError otherwise."""
    try:
        utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-23:59 is a valid ISO time whose UTC is in year 10000.
        raise ValueError(_TIME_RANGE) from None
    if not TIME_MIN <= utc <= TIME_MAX:
        raise ValueError(_TIME_RANGE)
    return value if value.tzinfo else utc


StoredTime = Annotated[datetime, AfterValidator(storable_time)]
"""A time an operator gives (a filter, a window) that the database can compare with."""

RowId = Annotated[int, Field(ge=1, le=INT64_MAX)]
"""The id of a row (a bigint the database assigns from 1)."""


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class AdminKeyView(_Out):
    """An admin key as listed: never the key, only its first characters."""

    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class CreatedAdminKey(AdminKeyView):
    """A key just created: the only time the key itself is shown."""

    key: str


class SecretsView(_Out):
    """What can be said of a connection's secrets without revealing them."""

    names: list[str] = Field(description="The secret settings that are set (names only).")
    fingerprint: str = Field(
        description="A keyed hash of all the secrets: it changes when any of them changes."
    )


class ConnectionView(_Out):
    """One connection, its secrets reduced to names and a fingerprint."""

    id: int
    tenant: str
    source: str
    name: str
    account: str | None
    enabled: bool
    options: dict[str, Any]
    secrets: SecretsView
    created_at: datetime
    updated_at: datetime


class DestinationView(_Out):
    """Where the tenant's normalized events go (its signing secret is never shown)."""

    url: str
    enabled: bool
    secret_set: bool


class TenantView(_Out):
    """One tenant and how many of its connections are enabled."""

    id: int
    slug: str
    name: str
    connections: int
    enabled_connections: int
    created_at: datetime
    updated_at: datetime


class TenantDetail(TenantView):
    """A tenant with its connections and destination."""

    connection_list: list[ConnectionView]
    destination: DestinationView | None


class TenantCreate(BaseModel):
    """A new tenant."""

    model_config = ConfigDict(extra="forbid")

    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    name: str = Field(min_length=1)


class TenantUpdate(BaseModel):
    """A tenant's new name."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)


class DestinationSet(BaseModel):
    """Where the tenant's normalized events go, and the ``whsec_`` secret they are signed with
    (write-only, like every secret here)."""

    model_config = ConfigDict(extra="forbid")

    url: str
    secret: str = Field(min_length=1, repr=False)
    enabled: bool = True


class ConnectionCreate(BaseModel):
    """A new connection; ``secrets`` are checked by the source and stored encrypted."""

    model_config = ConfigDict(extra="forbid")

    tenant: str
    source: str = Field(min_length=1)
    name: str = "default"
    account: str | None = None
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, Any] = Field(default_factory=dict, repr=False)


class ConnectionUpdate(BaseModel):
    """Changes to a connection; absent fields stay as they are (secrets: see rotate)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    account: str | None = None
    enabled: bool | None = None
    options: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _no_null(self) -> ConnectionUpdate:
        # Absent means unchanged; null means "clear", which only the account can be.
        nulled = sorted(
            name for name in self.model_fields_set - {"account"} if getattr(self, name) is None
        )
        if nulled:
            raise ValueError(f"{', '.join(nulled)} cannot be null (leave it out to keep it)")
        return self


class SecretsRotate(BaseModel):
    """New secrets for a connection: replace them all, or (``merge``) only those given."""

    model_config = ConfigDict(extra="forbid")

    secrets: dict[str, Any] = Field(repr=False)
    merge: bool = False


class RecordSummary(_Out):
    """A record as listed."""

    id: uuid.UUID
    tenant: str
    source: str
    event_type: str
    known: bool
    state: RecordState = Field(description="Where the record stands, delivery included.")
    subjects: dict[str, Any]
    received_at: datetime
    processed_at: datetime | None
    answer_status: int | None


class RecordPage(_Out):
    """One page of records; pass ``next_cursor`` back for the next (None: no more)."""

    records: list[RecordSummary]
    next_cursor: str | None


class Body(_Out):
    """Bytes as stored: base64 always, and the text when they are UTF-8."""

    base64: str
    text: str | None
    size: int


class AnswerView(_Out):
    """The answer the sender was given (and every duplicate after it)."""

    status: int | None
    headers: dict[str, Any]
    body: Body


class WorkView(_Out):
    """An outbox or delivery row: how far the stage got."""

    created_at: datetime
    available_at: datetime
    attempts: int
    done_at: datetime | None
    last_error: str | None
    last_status: int | None = None
    task: str | None = None


class DeadLetterView(_Out):
    """A dead letter."""

    id: int
    record_id: uuid.UUID
    tenant: str
    source: str
    stage: str
    kind: str
    reason: str
    detail: str
    attempts: int
    created_at: datetime
    resolved_at: datetime | None
    resolution: str | None
    note: str | None


class ReplayRef(_Out):
    """A replay that included a record."""

    id: int
    actor: str
    created_at: datetime
    count: int


class QuarantineView(_Out):
    """Why a quarantined record does not fit its model, parsed again with its connection's
    current options (so it shows what is still missing after a change)."""

    connection_id: int
    problems: list[str] = Field(description="Each reason, as the dead letter states it.")
    missing: dict[str, list[str]] = Field(
        description="Each field the event lacked, with the body names tried for it."
    )
    body_fields: list[str] = Field(
        description="The names in the stored body (dotted for nested objects), to map from."
    )


class AttemptView(_Out):
    """One attempt to deliver a record's event."""

    attempted_at: datetime
    latency_ms: int | None
    status: int | None = Field(description="The destination's HTTP status; null if unreached.")
    error: str | None = Field(description="Why it failed; null for a delivered attempt.")
    answer: str | None = Field(
        description="The first 512 bytes of the destination's answer (as text, undecodable "
        "bytes replaced); null once erased."
    )
    answer_size: int | None = Field(description="The whole answer's size in bytes.")


class WrittenView(_Out):
    """A normalized row the record names: the version its delivered event carried, and the
    row's version now (a later event may have moved it forward)."""

    kind: str
    external_id: str
    delivered_version: int | None
    version: int | None
    fetched_at: datetime | None
    deleted: bool


class RecordDetail(RecordSummary):
    """One record's whole story."""

    dedupe_key: str
    thread: str | None
    headers: dict[str, Any]
    raw_body: Body
    payload: Any
    answer: AnswerView | None
    ack_ms: int | None
    outbox: WorkView | None
    delivery: WorkView | None
    dead_letters: list[DeadLetterView]
    replays: list[ReplayRef]
    quarantine: QuarantineView | None = None
    attempts: list[AttemptView] = Field(default_factory=list)
    written: list[WrittenView] = Field(default_factory=list)


class RecordQuery(BaseModel):
    """Record filters, as the API's query string and the CLI's options give them."""

    tenant: str | None = None
    source: str | None = None
    event_type: str | None = None
    # An unknown state is refused with the valid ones, not answered with nothing.
    state: RecordState | None = None
    received_from: StoredTime | None = None
    received_to: StoredTime | None = None
    person: str | None = None
    job: str | None = None
    application: str | None = None


class ReplayFilters(RecordQuery):
    """Record filters in a replay's body: a misspelt one is refused, not ignored (ignoring it
    would replay more than was meant)."""

    model_config = ConfigDict(extra="forbid")


class ReplayRequest(BaseModel):
    """Replay these records, or every record matching ``filters`` (one of the two, never
    both). A filtered replay matching more than ``REPLAY_CONFIRM_ABOVE`` records (1,000) runs
    only with ``confirm``: ask with ``dry_run`` first, then send the count it returned."""

    model_config = ConfigDict(extra="forbid")

    record_ids: list[uuid.UUID] = Field(default_factory=list, max_length=10_000)
    filters: ReplayFilters | None = None
    dry_run: bool = Field(
        False, description="Only count the records that would be replayed; change nothing."
    )
    confirm: int | None = Field(
        None,
        ge=0,
        le=INT64_MAX,
        description="The most records this replay may reopen (the dry run's count): needed "
        "when filters match more than 1,000 records, refused when more match than this.",
    )


class ReplayResult(_Out):
    """What a replay did (or, on a dry run, would do): records whose enrichment runs again,
    deliveries that failed and are tried again (one the destination acknowledged is never
    sent twice)."""

    id: int | None = Field(description="The replay's entry in the log; null on a dry run.")
    matched: int
    enrichments: int
    deliveries: int
    dry_run: bool = False
    # Matched records whose bodies were erased or purged by retention: never replayed.
    skipped_erased: int = 0


class DeadLetterAction(BaseModel):
    """Dead letters to retry or discard: by id, or every open one matching the filters."""

    model_config = ConfigDict(extra="forbid")

    ids: list[RowId] = Field(default_factory=list, max_length=10_000)
    kind: Literal["configuration", "pipeline"] | None = None
    stage: Literal["intake", "enrichment", "delivery"] | None = None
    tenant: str | None = None
    source: str | None = None
    reason: str | None = Field(None, max_length=200, description="One reason of a cause.")
    all: bool = Field(False, description="Required to act on every open letter (no filter).")
    note: str | None = Field(None, max_length=2000)


class ErasureRequest(BaseModel):
    """Forget one candidate of one tenant and source (the ATS's person/candidate id)."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=100)
    candidate_id: str = Field(min_length=1, max_length=500)
    # The candidate's e-mail address, when known: records of any source of the tenant whose
    # bodies hold it are erased too (without it, the address the normalized candidate holds).
    email: str | None = Field(
        default=None, min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"
    )


class ErasureView(_Out):
    """The audit of an erasure: what was erased (rows per table, Redis keys), when, by whom."""

    audit_id: int
    tenant: str
    source: str
    candidate_id: str
    actor: str
    erased_at: datetime
    counts: dict[str, int]


class DeadLetterGroup(_Out):
    """Open dead letters of one cause (kind), reason and stage; retry them all with
    ``POST /v1/admin/dead-letters/retry`` and these three as filters."""

    kind: str
    reason: str
    stage: str
    count: int
    oldest: datetime
    newest: datetime
    tenants: list[str]
    sources: list[str]


class RefusalView(_Out):
    """Requests refused within one minute for one tenant, source, status, reason and
    address (``*``: addresses past the per-minute cap)."""

    minute: datetime
    tenant: str = Field(description="As the path or connection named it; empty if none.")
    source: str
    status: int
    reason: str
    address: str
    count: int
    last_at: datetime


class ActionResult(_Out):
    """How many things an action changed."""

    count: int
    still_failing: int = Field(
        0,
        description="Of those retried, how many failed again at once: a quarantined event "
        "that still does not fit has a new open letter in place of the retried one.",
    )


class BacklogView(_Out):
    """Work not done now for one tenant and source."""

    pending: int
    oldest_age_s: float | None


class SourceStats(_Out):
    """One tenant's records of one source over the window."""

    tenant: str
    source: str
    records: int
    states: dict[str, int]
    duplicates: int | None = Field(
        description="Copies answered with a record's stored answer, counted per hour: every "
        "hour the window touches counts whole (kept 8 days; null if Redis did not answer)."
    )
    duplicate_ratio: float | None = Field(
        description="duplicates / (records + duplicates), to 3 decimals (a percentage to one "
        "decimal)."
    )
    ack_p50_ms: float | None = Field(description="Median ack time, in ms to 1 decimal.")
    ack_p99_ms: float | None = Field(description="99th percentile ack time, in ms to 1 decimal.")
    enrichment_backlog: BacklogView
    delivery_backlog: BacklogView


class Stats(_Out):
    """Statistics per tenant and source over ``[since, until)``."""

    since: datetime
    until: datetime
    sources: list[SourceStats]


class PayloadFieldsSet(BaseModel):
    """Body field names for a connection's ``options.payload_fields``: each key given replaces
    that field's names (an empty list goes back to the built-in guesses); others are kept."""

    model_config = ConfigDict(extra="forbid")

    payload_fields: dict[str, list[str]] = Field(
        min_length=1,
        description='Our field -> the body\'s names for it: {"position_id": ["Id"]}.',
    )


class PayloadFieldsResult(_Out):
    """The connection as changed, and what became of its quarantined records."""

    connection: ConnectionView
    reparsed: int = Field(description="Quarantined records that now fit and were released.")
    still_quarantined: int = Field(description="Those that still do not fit.")
