"""admin: admin API keys, the replay log, dead-letter notes, each record's ack time

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 22:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now(name: str) -> sa.Column[Any]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "admin_key",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        _now("created_at"),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_key")),
        sa.UniqueConstraint("name", name=op.f("uq_admin_key_name")),
        sa.UniqueConstraint("digest", name=op.f("uq_admin_key_digest")),
    )
    op.create_table(
        "replay",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column(
            "filters",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "record_ids",
            postgresql.ARRAY(postgresql.UUID(as_uuid=True)),
            server_default=sa.text("'{}'::uuid[]"),
            nullable=False,
        ),
        sa.Column("count", sa.Integer(), nullable=False),
        _now("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replay")),
    )
    op.add_column("dead_letter", sa.Column("note", sa.Text(), nullable=True))
    op.add_column("record", sa.Column("ack_ms", sa.Integer(), nullable=True))
    op.create_index("ix_record_received", "record", ["received_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_record_received", table_name="record")
    op.drop_column("record", "ack_ms")
    op.drop_column("dead_letter", "note")
    op.drop_table("replay")
    op.drop_table("admin_key")
