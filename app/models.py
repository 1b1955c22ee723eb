"""Tables. Singular snake_case names, timezone-aware ``*_at`` columns, named constraints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
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
from sqlalchemy.dialects.postgresql import JSONB, UUID
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
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Record(Base):
    """One received event; the unique key makes every redelivery harmless."""

    __tablename__ = "record"
    __table_args__ = (UniqueConstraint("tenant_id", "source", "dedupe_key"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    connection_id: Mapped[int] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(Text)
    # False for event types this version does not model: stored, never dispatched.
    known: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(Text, server_default="received")
    headers: Mapped[dict[str, Any]]
    payload: Mapped[dict[str, Any]]
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)
    answer_status: Mapped[int] = mapped_column(SmallInteger)
    answer_headers: Mapped[dict[str, Any]]
    answer_body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = _now()
    processed_at: Mapped[datetime | None]


class Outbox(Base):
    """Work committed together with its record; the queue in Redis is only a hint of it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "available_at", postgresql_where=text("done_at IS NULL")),
    )

    record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("record.id", ondelete="CASCADE"), primary_key=True
    )
    task: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    # The sweeper leaves a row alone until then; jobs push it forward while they retry.
    available_at: Mapped[datetime] = _now()
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    done_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
