"""privacy: record_key (dedupe authority), record partitioned by month, retention, erasure audit

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-28 22:00:00.000000

The flat ``record`` table is converted in place: its keys and first answers are copied to
``record_key``, its rows to a new ``record`` partitioned by ``received_at`` (one partition per
month from the oldest row to two months ahead), and the work tables' foreign keys move to
``record_key``. The downgrade copies everything back into one flat table; a record whose
bodies were purged comes back with empty ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WORK_TABLES = ("outbox", "delivery", "dead_letter")


def _month(moment: datetime, offset: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + offset
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def _partitions(since: datetime, now: datetime) -> None:
    # The same names and bounds as app/store/partitions.py; a migration does not import the
    # application, whose code moves on after this revision.
    month = _month(since, 0)
    last = _month(now, 2)
    while month <= last:
        following = _month(month, 1)
        op.execute(
            f"CREATE TABLE IF NOT EXISTS record_p{month:%Y_%m} PARTITION OF record "
            f"FOR VALUES FROM ('{month.isoformat()}') TO ('{following.isoformat()}')"
        )
        month = following


def upgrade() -> None:
    op.add_column("tenant", sa.Column("retention_days", sa.Integer(), nullable=True))
    op.execute(
        """
        CREATE TABLE record_key (
            id uuid NOT NULL,
            tenant_id bigint NOT NULL,
            connection_id bigint NOT NULL,
            source text NOT NULL,
            dedupe_key text NOT NULL,
            answer_status smallint,
            answer_headers jsonb,
            answer_body bytea,
            received_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_record_key PRIMARY KEY (id),
            CONSTRAINT uq_record_key_tenant_id_source_dedupe_key
                UNIQUE (tenant_id, source, dedupe_key),
            CONSTRAINT fk_record_key_tenant_id_tenant FOREIGN KEY (tenant_id)
                REFERENCES tenant (id) ON DELETE CASCADE,
            CONSTRAINT fk_record_key_connection_id_connection FOREIGN KEY (connection_id)
                REFERENCES connection (id) ON DELETE CASCADE
        )
        """
    )
    op.execute("CREATE INDEX ix_record_key_connection_id ON record_key (connection_id)")
    op.execute(
        """
        INSERT INTO record_key (id, tenant_id, connection_id, source, dedupe_key,
                                answer_status, answer_headers, answer_body, received_at)
        SELECT id, tenant_id, connection_id, source, dedupe_key,
               answer_status, answer_headers, answer_body, received_at
        FROM record
        """
    )
    for table in _WORK_TABLES:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT fk_{table}_record_id_record")
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT fk_{table}_record_id_record_key "
            "FOREIGN KEY (record_id) REFERENCES record_key (id) ON DELETE CASCADE"
        )

    op.execute("ALTER TABLE record RENAME TO record_flat")
    op.execute("DROP INDEX ix_record_thread")
    op.execute("DROP INDEX ix_record_connection_id")
    op.execute("ALTER TABLE record_flat DROP CONSTRAINT pk_record")
    op.execute("ALTER TABLE record_flat DROP CONSTRAINT uq_record_tenant_id_source_dedupe_key")
    op.execute(
        """
        CREATE TABLE record (
            id uuid NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            tenant_id bigint NOT NULL,
            connection_id bigint NOT NULL,
            source text NOT NULL,
            dedupe_key text NOT NULL,
            event_type text NOT NULL,
            known boolean NOT NULL,
            state text NOT NULL DEFAULT 'received',
            subjects jsonb NOT NULL DEFAULT '{}'::jsonb,
            thread text,
            headers jsonb,
            payload jsonb,
            raw_body bytea,
            processed_at timestamptz,
            purged_at timestamptz,
            CONSTRAINT pk_record PRIMARY KEY (id, received_at),
            CONSTRAINT fk_record_id_record_key FOREIGN KEY (id)
                REFERENCES record_key (id) ON DELETE CASCADE
        ) PARTITION BY RANGE (received_at)
        """
    )
    op.execute(
        "CREATE INDEX ix_record_subject ON record "
        "(tenant_id, source, (COALESCE(subjects ->> 'person', subjects ->> 'candidate')))"
    )
    op.execute(
        "CREATE INDEX ix_record_thread ON record (tenant_id, source, thread, received_at) "
        "WHERE thread IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX ix_record_unpurged ON record (tenant_id, received_at) WHERE purged_at IS NULL"
    )
    now = datetime.now(UTC)
    oldest = op.get_bind().execute(sa.text("SELECT min(received_at) FROM record_flat")).scalar()
    _partitions(min(oldest, now) if oldest is not None else now, now)
    op.execute(
        """
        INSERT INTO record (id, received_at, tenant_id, connection_id, source, dedupe_key,
                            event_type, known, state, subjects, thread, headers, payload,
                            raw_body, processed_at)
        SELECT id, received_at, tenant_id, connection_id, source, dedupe_key, event_type,
               known, state, subjects, thread, headers, payload, raw_body, processed_at
        FROM record_flat
        """
    )
    op.execute("DROP TABLE record_flat")

    op.execute(
        """
        CREATE TABLE erasure (
            id bigserial NOT NULL,
            tenant text NOT NULL,
            source text NOT NULL,
            candidate_id text NOT NULL,
            actor text NOT NULL,
            counts jsonb NOT NULL,
            erased_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_erasure PRIMARY KEY (id)
        )
        """
    )
    op.execute("CREATE INDEX ix_erasure_subject ON erasure (tenant, source, candidate_id)")
    for table in ("outbox", "delivery"):
        op.execute(f"CREATE INDEX ix_{table}_done ON {table} (done_at) WHERE done_at IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX ix_outbox_done, ix_delivery_done")
    op.execute("DROP TABLE erasure")
    for table in _WORK_TABLES:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT fk_{table}_record_id_record_key")

    op.execute("ALTER TABLE record RENAME TO record_part")
    op.execute("DROP INDEX ix_record_subject, ix_record_thread, ix_record_unpurged")
    op.execute("ALTER TABLE record_part DROP CONSTRAINT pk_record")
    op.execute(
        """
        CREATE TABLE record (
            id uuid NOT NULL,
            tenant_id bigint NOT NULL,
            connection_id bigint NOT NULL,
            source text NOT NULL,
            dedupe_key text NOT NULL,
            event_type text NOT NULL,
            known boolean NOT NULL,
            state text NOT NULL DEFAULT 'received',
            headers jsonb NOT NULL,
            payload jsonb NOT NULL,
            raw_body bytea NOT NULL,
            answer_status smallint,
            answer_headers jsonb,
            answer_body bytea,
            received_at timestamptz NOT NULL DEFAULT now(),
            processed_at timestamptz,
            subjects jsonb NOT NULL DEFAULT '{}'::jsonb,
            thread text,
            CONSTRAINT pk_record PRIMARY KEY (id),
            CONSTRAINT uq_record_tenant_id_source_dedupe_key
                UNIQUE (tenant_id, source, dedupe_key),
            CONSTRAINT fk_record_tenant_id_tenant FOREIGN KEY (tenant_id)
                REFERENCES tenant (id) ON DELETE CASCADE,
            CONSTRAINT fk_record_connection_id_connection FOREIGN KEY (connection_id)
                REFERENCES connection (id) ON DELETE CASCADE
        )
        """
    )
    # A key whose record went with a dropped partition comes back as an empty, purged record:
    # its dedupe key and first answer still guard against a re-delivery.
    op.execute(
        """
        INSERT INTO record (id, tenant_id, connection_id, source, dedupe_key, event_type, known,
                            state, headers, payload, raw_body, answer_status, answer_headers,
                            answer_body, received_at, processed_at, subjects, thread)
        SELECT k.id, k.tenant_id, k.connection_id, k.source, k.dedupe_key,
               COALESCE(r.event_type, 'unknown'), COALESCE(r.known, false),
               COALESCE(r.state, 'purged'), COALESCE(r.headers, '{}'::jsonb),
               COALESCE(r.payload, 'null'::jsonb), COALESCE(r.raw_body, ''::bytea),
               k.answer_status, k.answer_headers, k.answer_body, k.received_at, r.processed_at,
               COALESCE(r.subjects, '{}'::jsonb), r.thread
        FROM record_key k LEFT JOIN record_part r ON r.id = k.id
        """
    )
    op.execute("DROP TABLE record_part")
    op.execute("CREATE INDEX ix_record_connection_id ON record (connection_id)")
    op.execute(
        "CREATE INDEX ix_record_thread ON record (tenant_id, source, thread, received_at) "
        "WHERE thread IS NOT NULL"
    )
    for table in _WORK_TABLES:
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT fk_{table}_record_id_record "
            "FOREIGN KEY (record_id) REFERENCES record (id) ON DELETE CASCADE"
        )
    op.execute("DROP TABLE record_key")
    op.drop_column("tenant", "retention_days")
