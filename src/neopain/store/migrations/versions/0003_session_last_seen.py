"""Live sessions end themselves after a while without frames: monitoring_sessions.last_seen_at
(when the session's stream last connected or sent a frame), filled from the newest assessment of
each existing session.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("monitoring_sessions", sa.Column("last_seen_at", sa.DateTime(), nullable=True))
    op.execute("UPDATE monitoring_sessions SET last_seen_at = (SELECT max(assessments.time) "
               "FROM assessments WHERE assessments.session_id = monitoring_sessions.id)")


def downgrade() -> None:
    # a plain DROP COLUMN (SQLite 3.35+): a batch copy of the table would break the foreign
    # keys of assessments that point at it
    op.drop_column("monitoring_sessions", "last_seen_at")
