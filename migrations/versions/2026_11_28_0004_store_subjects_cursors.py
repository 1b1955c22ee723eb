"""store: credential ids, record subjects and threads, optional answers, poll cursors

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 19:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "connection",
        sa.Column(
            "credential_ids",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_connection_credential_ids",
        "connection",
        ["credential_ids"],
        postgresql_using="gin",
    )
    op.add_column(
        "record",
        sa.Column(
            "subjects",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("record", sa.Column("thread", sa.Text(), nullable=True))
    for column in ("answer_status", "answer_headers", "answer_body"):
        op.alter_column("record", column, nullable=True)
    op.create_index("ix_record_connection_id", "record", ["connection_id"])
    op.create_index(
        "ix_record_thread",
        "record",
        ["tenant_id", "source", "thread", "received_at"],
        postgresql_where=sa.text("thread IS NOT NULL"),
    )
    op.create_index("ix_delivery_tenant_id", "delivery", ["tenant_id"])
    op.create_index("ix_dead_letter_tenant_id", "dead_letter", ["tenant_id"])
    op.drop_constraint(op.f("ck_dead_letter_stage"), "dead_letter", type_="check")
    op.create_check_constraint(
        op.f("ck_dead_letter_stage"), "dead_letter", "stage IN ('intake', 'enrichment', 'delivery')"
    )
    op.create_table(
        "poll_cursor",
        sa.Column("connection_id", sa.BigInteger(), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column(
            "position",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connection.id"],
            name=op.f("fk_poll_cursor_connection_id_connection"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connection_id", "resource", name=op.f("pk_poll_cursor")),
    )


def downgrade() -> None:
    op.drop_table("poll_cursor")
    op.execute("DELETE FROM dead_letter WHERE stage = 'intake'")
    op.drop_constraint(op.f("ck_dead_letter_stage"), "dead_letter", type_="check")
    op.create_check_constraint(
        op.f("ck_dead_letter_stage"), "dead_letter", "stage IN ('enrichment', 'delivery')"
    )
    op.drop_index("ix_dead_letter_tenant_id", table_name="dead_letter")
    op.drop_index("ix_delivery_tenant_id", table_name="delivery")
    op.drop_index("ix_record_thread", table_name="record")
    op.drop_index("ix_record_connection_id", table_name="record")
    # Records that were never answered (polled) cannot satisfy NOT NULL again.
    op.execute("DELETE FROM record WHERE answer_status IS NULL")
    for column in ("answer_status", "answer_headers", "answer_body"):
        op.alter_column("record", column, nullable=False)
    op.drop_column("record", "thread")
    op.drop_column("record", "subjects")
    op.drop_index("ix_connection_credential_ids", table_name="connection")
    op.drop_column("connection", "credential_ids")
