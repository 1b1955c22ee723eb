"""delivery_attempt and refusal: a record's every delivery attempt, and refused requests

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 13:00:00.000000

``delivery_attempt`` keeps one row per attempt to deliver a record's event (when, the status,
the latency, at most 512 bytes of the answer, why it failed); it goes with the tenant's
retention, and an erasure clears its answer bytes. ``refusal`` counts refused requests (401,
413, 429) per tenant, source, reason, address and minute; kept seven days.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_attempt",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("record_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "attempted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("status", sa.SmallInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("answer", sa.LargeBinary(), nullable=True),
        sa.Column("answer_size", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["record_key.id"],
            name=op.f("fk_delivery_attempt_record_id_record_key"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_delivery_attempt_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempt")),
    )
    op.create_index("ix_delivery_attempt_record", "delivery_attempt", ["record_id", "attempted_at"])
    op.create_index("ix_delivery_attempt_tenant", "delivery_attempt", ["tenant_id", "attempted_at"])
    op.create_table(
        "refusal",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant", sa.Text(), server_default="", nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refusal")),
        sa.UniqueConstraint(
            "minute",
            "tenant",
            "source",
            "status",
            "reason",
            "address",
            name=op.f("uq_refusal_minute_tenant_source_status_reason_address"),
        ),
    )
    op.create_index("ix_refusal_tenant", "refusal", ["tenant", "source", "minute"])


def downgrade() -> None:
    op.drop_index("ix_refusal_tenant", table_name="refusal")
    op.drop_table("refusal")
    op.drop_index("ix_delivery_attempt_tenant", table_name="delivery_attempt")
    op.drop_index("ix_delivery_attempt_record", table_name="delivery_attempt")
    op.drop_table("delivery_attempt")
