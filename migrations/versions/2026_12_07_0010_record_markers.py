"""record.markers, Hirehook's own markers kept apart from request headers

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 12:30:00.000000

Markers (the polled resource, the event name an HR Manager URL carried) used to be stored
among the request headers, where a sender could forge one. They move to a column of their own:
``hirehook-poll-resource`` only from records the poller made (their headers held nothing else),
``hirehook-url-event`` from HR Manager records (the router always replaced a sent one); every
``hirehook-*`` key leaves ``headers``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MOVE = """
UPDATE record SET
    markers = NULLIF(jsonb_strip_nulls(jsonb_build_object(
        'hirehook-poll-resource',
        CASE WHEN headers - 'hirehook-poll-resource' = '{}'::jsonb
             THEN headers -> 'hirehook-poll-resource' END,
        'hirehook-url-event',
        CASE WHEN source = 'hrmanager' THEN headers -> 'hirehook-url-event' END
    )), '{}'::jsonb),
    headers = (SELECT COALESCE(jsonb_object_agg(key, value), '{}'::jsonb)
               FROM jsonb_each(headers) WHERE key NOT LIKE 'hirehook-%')
WHERE headers IS NOT NULL AND EXISTS (
    SELECT 1 FROM jsonb_object_keys(headers) AS k WHERE k LIKE 'hirehook-%'
)
"""
_BACK = """
UPDATE record SET headers = COALESCE(headers, '{}'::jsonb) || markers
WHERE markers IS NOT NULL
"""


def upgrade() -> None:
    op.add_column(
        "record", sa.Column("markers", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.execute(_MOVE)


def downgrade() -> None:
    op.execute(_BACK)
    op.drop_column("record", "markers")
