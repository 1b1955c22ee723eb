"""Tables. Singular snake_case names, timezone-aware ``*_at`` columns, named constraints."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base sharing one naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSONB,
        datetime: DateTime(timezone=True),
    }


def _now() -> Any:
    return mapped_column(server_default=func.now())


class Tenant(Base):
    """One of the vendor's customers."""

    __tablename__ = "tenant"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(Text, unique=True)
    name: Mapped[str] = mapped_column(Text)
    # Days a record's bodies and the normalized documents are kept (docs/privacy.md); NULL
    # falls back to HIREHOOK_RETENTION_DAYS, and with that unset they are kept.
    retention_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Connection(Base):
    """A tenant's link to one ATS: inbound credentials, outbound API credentials, options."""

    __tablename__ = "connection"
    __table_args__ = (
        UniqueConstraint("tenant_id", "source", "name"),
        # The ATS's own account id (iCIMS customerId, ...) routes shared endpoints.
        Index(
            "uq_connection_source_account",
            "source",
            "account",
            unique=True,
            postgresql_where=text("account IS NOT NULL"),
        ),
        Index("ix_connection_credential_ids", "credential_ids", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text, server_default="default")
    account: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Fernet token of a JSON object; never leaves the process in clear text.
    secrets: Mapped[bytes] = mapped_column(LargeBinary)
    options: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    # Fingerprints of the identities a sender presents (a Basic username, an HMAC user, an
    # OAuth client id), so a request is tied to its connection before its body is read.
    credential_ids: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default=text("'{}'::text[]")
    )
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


# Partitions of ``record`` are named by the month they hold (record_p2026_11); they are made
# and dropped at run time (app/store/partitions.py), so the models do not list them.
RECORD_PARTITION = re.compile(r"^record_p\d{4}_\d{2}$")


class RecordKey(Base):
    """The dedupe authority: one slim row per (tenant, source, key) with the first answer.

    It outlives its record's bodies (retention, erasure, a dropped partition), so a re-delivery
    is a duplicate forever and replays its first answer. Work rows reference it, not ``record``:
    a foreign key to a partitioned table would have to carry its partition key.
    """

    __tablename__ = "record_key"
    __table_args__ = (
        UniqueConstraint("tenant_id", "source", "dedupe_key"),
        # Deleting a connection cascades here; without an index that is a sequential scan.
        Index("ix_record_key_connection_id", "connection_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    connection_id: Mapped[int] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(Text)
    # NULL for a record nobody was answered for (it arrived by polling).
    answer_status: Mapped[int | None] = mapped_column(SmallInteger)
    answer_headers: Mapped[dict[str, Any] | None]
    answer_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = _now()


class Record(Base):
    """One received event, partitioned by the month it was received in.

    Its key row (``record_key``, same id and ``received_at``) is written by the same statement.
    ``headers``, ``payload`` and ``raw_body`` are NULL once purged by retention or erased.
    """

    __tablename__ = "record"
    __table_args__ = (
        # Erasure finds a candidate's records by the id the event named (docs/privacy.md).
        Index(
            "ix_record_subject",
            "tenant_id",
            "source",
            text("(COALESCE(subjects ->> 'person', subjects ->> 'candidate'))"),
        ),
        # The newest record of one thread (an iCIMS workflow, ...) decides whether a repeat is
        # the same delivery again or a new event (see app/schemas/icims.py).
        # The admin API's record listing pages by (received_at, id), newest first.
        Index("ix_record_received", "received_at", "id"),
        Index(
            "ix_record_thread",
            "tenant_id",
            "source",
            "thread",
            "received_at",
            postgresql_where=text("thread IS NOT NULL"),
        ),
        # What the retention purge still has to empty, oldest first, per tenant.
        Index(
            "ix_record_unpurged",
            "tenant_id",
            "received_at",
            postgresql_where=text("purged_at IS NULL"),
        ),
        {"postgresql_partition_by": "RANGE (received_at)"},
    )

    # The key row's id; (id, received_at) is the primary key, as a partitioned table's must
    # include the partition key. Ids are uuid7, so they are time-ordered too.
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("record_key.id", ondelete="CASCADE"), primary_key=True
    )
    received_at: Mapped[datetime] = mapped_column(primary_key=True, server_default=func.now())
    tenant_id: Mapped[int] = mapped_column(BigInteger)
    connection_id: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(Text)
    # False for event types this version does not model: stored, never dispatched.
    known: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(Text, server_default="received")
    # The ids the event names ({"person": ..., "job": ..., "application": ...}), derived once
    # from the typed event at intake so workers never re-read them from the raw payload.
    subjects: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    thread: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any] | None]
    payload: Mapped[dict[str, Any] | None]
    raw_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    processed_at: Mapped[datetime | None]
    # When retention or an erasure emptied the bodies.
    purged_at: Mapped[datetime | None]
    # Milliseconds from the request's arrival to the row being written: the sender's wait,
    # less the commit and the answer's send. NULL for a polled record.
    ack_ms: Mapped[int | None] = mapped_column(Integer)
    # Hirehook's own markers (the polled resource, an HR Manager URL's event name), never
    # taken from a request header; NULL when there are none.
    markers: Mapped[dict[str, Any] | None]


class Outbox(Base):
    """Work committed together with its record; the queue in Redis is only a hint of it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "available_at", postgresql_where=text("done_at IS NULL")),
        # The clean-up job deletes finished rows oldest first (app/admin/privacy.py).
        Index("ix_outbox_done", "done_at", postgresql_where=text("done_at IS NOT NULL")),
    )

    record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("record_key.id", ondelete="CASCADE"), primary_key=True
    )
    task: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    # The sweeper leaves a row alone until then; jobs push it forward while they retry.
    available_at: Mapped[datetime] = _now()
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    done_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class Destination(Base):
    """Where a tenant wants normalized events delivered (Standard Webhooks); optional."""

    __tablename__ = "destination"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), unique=True)
    url: Mapped[str] = mapped_column(Text)
    # Fernet token of the whsec_ signing secret.
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class _Normalized:
    """Columns every normalized resource shares: who owns it, where it came from, how fresh."""

    # sort_order keeps the shared key columns first and the bookkeeping last in each table.
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True, sort_order=-4)
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), sort_order=-3
    )
    source: Mapped[str] = mapped_column(Text, sort_order=-2)
    external_id: Mapped[str] = mapped_column(Text, sort_order=-1)
    document: Mapped[dict[str, Any]] = mapped_column(sort_order=1)
    source_updated_at: Mapped[datetime | None] = mapped_column(sort_order=2)
    fetched_at: Mapped[datetime] = mapped_column(sort_order=3)
    # Microseconds since the epoch at which the fetch was sent; an upsert only moves it forward.
    version: Mapped[int] = mapped_column(BigInteger, sort_order=4)
    deleted_at: Mapped[datetime | None] = mapped_column(sort_order=5)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), sort_order=6)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), sort_order=7)


class Candidate(_Normalized, Base):
    """A person as the ATS last described them."""

    __tablename__ = "candidate"
    __table_args__ = (UniqueConstraint("tenant_id", "source", "external_id"),)

    first_name: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)


class Job(_Normalized, Base):
    """A job (position, requisition) as the ATS last described it."""

    __tablename__ = "job"
    __table_args__ = (UniqueConstraint("tenant_id", "source", "external_id"),)

    title: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(Text)


class Application(_Normalized, Base):
    """A candidate's application to a job (iCIMS: recruiting workflow)."""

    __tablename__ = "application"
    __table_args__ = (
        UniqueConstraint("tenant_id", "source", "external_id"),
        Index("ix_application_candidate", "tenant_id", "source", "candidate_external_id"),
    )

    candidate_external_id: Mapped[str | None] = mapped_column(Text)
    job_external_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(Text)


class Delivery(Base):
    """One normalized event owed to the tenant's destination; the outbox of the delivery stage."""

    __tablename__ = "delivery"
    __table_args__ = (
        Index("ix_delivery_pending", "available_at", postgresql_where=text("done_at IS NULL")),
        Index("ix_delivery_done", "done_at", postgresql_where=text("done_at IS NOT NULL")),
        # Deleting a tenant cascades here; without an index that is a sequential scan.
        Index("ix_delivery_tenant_id", "tenant_id"),
    )

    record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("record_key.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(Text)
    # The exact bytes signed and sent, so every attempt carries the same event.
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _now()
    available_at: Mapped[datetime] = _now()
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    done_at: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(SmallInteger)
    last_error: Mapped[str | None] = mapped_column(Text)


class DeadLetter(Base):
    """A record a stage gave up on, with why; listed, retried after a fix, or discarded."""

    __tablename__ = "dead_letter"
    __table_args__ = (
        # intake: an authentic event that did not fit its model, kept until it is re-parsed.
        CheckConstraint("stage IN ('intake', 'enrichment', 'delivery')", name="stage"),
        # A tenant's configuration problem is not a pipeline fault: they are fixed by others.
        CheckConstraint("kind IN ('configuration', 'pipeline')", name="kind"),
        Index(
            "uq_dead_letter_open",
            "record_id",
            "stage",
            unique=True,
            postgresql_where=text("resolved_at IS NULL"),
        ),
        Index("ix_dead_letter_kind", "kind", "created_at"),
        Index("ix_dead_letter_tenant_id", "tenant_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("record_key.id", ondelete="CASCADE"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()
    resolved_at: Mapped[datetime | None]
    # "retried" or "discarded".
    resolution: Mapped[str | None] = mapped_column(Text)
    # Why it was discarded (or retried), as the operator wrote it.
    note: Mapped[str | None] = mapped_column(Text)


class PollCursor(Base):
    """How far a poller has read one resource of one connection; advanced in the same
    transaction as the records of the page it read, so a crash resumes where it committed."""

    __tablename__ = "poll_cursor"

    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connection.id", ondelete="CASCADE"), primary_key=True
    )
    resource: Mapped[str] = mapped_column(Text, primary_key=True)
    position: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    polled_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = _now()


class WebhookSubscription(Base):
    """A webhook subscription made at an ATS for one connection (SmartRecruiters), with the
    secrets that subscription uses.

    A row is ``pending`` from just before the ATS is asked to activate it until its activation
    handshake arrives (or ``activation_expires_at`` passes): only then is a handshake for the
    connection accepted, so nobody else can register a secret for it. Keys generated at the ATS
    live here rather than in the connection's secrets, which the tenants file replaces.
    """

    __tablename__ = "webhook_subscription"
    __table_args__ = (
        UniqueConstraint("connection_id", "external_id"),
        CheckConstraint("status IN ('pending', 'active', 'failed', 'deleted')", name="status"),
        # One activation at a time per connection: a handshake names no subscription, so it is
        # matched to the only pending one.
        Index(
            "uq_webhook_subscription_pending",
            "connection_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"))
    # The ATS's id of the subscription.
    external_id: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="pending")
    callback_url: Mapped[str] = mapped_column(Text)
    # [{"name": ..., "version": ...}] as subscribed.
    events: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    # Fernet token of {"hook_secret": ..., "signing_keys": [{key, created_at, expires_at}]}.
    secrets: Mapped[bytes] = mapped_column(LargeBinary)
    activation_expires_at: Mapped[datetime | None]
    activated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Erasure(Base):
    """The audit of one erasure: whose data, on whose request, and how much was erased.

    The candidate id is kept in clear so the request can be shown to be fulfilled; the tenant
    by slug, so the audit outlives a deleted tenant.
    """

    __tablename__ = "erasure"
    __table_args__ = (Index("ix_erasure_subject", "tenant", "source", "candidate_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    candidate_id: Mapped[str] = mapped_column(Text)
    # Who asked: "cli:<user>", "smartrecruiters:candidate.deleted", an admin's name, ...
    actor: Mapped[str] = mapped_column(Text)
    # Rows touched per table ({"record": 3, "candidate": 1, ...}) and Redis keys deleted.
    counts: Mapped[dict[str, Any]]
    erased_at: Mapped[datetime] = _now()


class AdminKey(Base):
    """A key to the admin API; only its SHA-256 digest is stored, the key is shown once."""

    __tablename__ = "admin_key"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    # The first characters of the key, so an operator can tell keys apart in a listing.
    prefix: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ConsoleSession(Base):
    """A console login: the cookie carries a random id, this table its digest. Logging out
    deletes the row, so a copy of the cookie opens nothing after; a session whose key is
    revoked opens nothing either (the lookup joins the live key). In PostgreSQL, not Redis:
    a console must keep working (and a logout keep holding) while Redis is away."""

    __tablename__ = "console_session"
    __table_args__ = (
        Index("ix_console_session_expires_at", "expires_at"),
        # Revoking a key deletes its sessions (ON DELETE CASCADE): found by index, not a scan.
        Index("ix_console_session_key_id", "key_id"),
    )

    digest: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    key_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("admin_key.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime]


class Replay(Base):
    """One replay asked for through the admin API or CLI: who, when, what, how many."""

    __tablename__ = "replay"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # The admin key's name, or "cli:<user>" for the command line.
    actor: Mapped[str] = mapped_column(Text)
    filters: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    record_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(UUID(as_uuid=True)), server_default=text("'{}'::uuid[]")
    )
    count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()


class DeliveryAttempt(Base):
    """One attempt to deliver a record's event: when, how the destination answered, how long
    it took, and why it failed. Kept with the tenant's retention (the record's bodies); an
    erasure clears ``answer``."""

    __tablename__ = "delivery_attempt"
    __table_args__ = (
        Index("ix_delivery_attempt_record", "record_id", "attempted_at"),
        # Retention deletes a tenant's oldest attempts.
        Index("ix_delivery_attempt_tenant", "tenant_id", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("record_key.id", ondelete="CASCADE"))
    tenant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tenant.id", ondelete="CASCADE"))
    attempted_at: Mapped[datetime] = _now()
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    # None when the destination was not reached (or there was none).
    status: Mapped[int | None] = mapped_column(SmallInteger)
    error: Mapped[str | None] = mapped_column(Text)
    # The first bytes of the destination's answer (app.store.attempts.ANSWER_MAX), and how
    # long the whole answer was.
    answer: Mapped[bytes | None] = mapped_column(LargeBinary)
    answer_size: Mapped[int | None] = mapped_column(Integer)


class Refusal(Base):
    """Requests refused with a 401, 413 or 429, counted per minute, tenant (as the path named
    it, "" when it named none), source, status, reason and sender's address: no body, no
    credential. Kept seven days (app.intake.refusals)."""

    __tablename__ = "refusal"
    __table_args__ = (
        UniqueConstraint("minute", "tenant", "source", "status", "reason", "address"),
        Index("ix_refusal_tenant", "tenant", "source", "minute"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    minute: Mapped[datetime]
    tenant: Mapped[str] = mapped_column(Text, server_default="")
    source: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(SmallInteger)
    reason: Mapped[str] = mapped_column(Text)
    address: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer)
    last_at: Mapped[datetime]
