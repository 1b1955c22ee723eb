"""console sessions kept server-side, so logging out ends them

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 12:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_session",
        # SHA-256 of the random session id the cookie carries: the table alone opens nothing.
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["admin_key.id"],
            name=op.f("fk_console_session_key_id_admin_key"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_console_session")),
    )
    op.create_index("ix_console_session_expires_at", "console_session", ["expires_at"])
    # Revoking a key deletes its sessions (ON DELETE CASCADE): found by index, not a scan.
    op.create_index("ix_console_session_key_id", "console_session", ["key_id"])


def downgrade() -> None:
    op.drop_index("ix_console_session_key_id", table_name="console_session")
    op.drop_index("ix_console_session_expires_at", table_name="console_session")
    op.drop_table("console_session")
