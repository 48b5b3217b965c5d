"""A live session's "Calibrate at rest": table session_calibrations (who, when, from how many
frames, for which model, and the reference as JSON), the newest applying to the session.

Revision ID: 0004
Revises: 0003
Create Date: 2027-01-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["monitoring_sessions.id"],
                                name=op.f("fk_session_calibrations_session_id_monitoring_sessions")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_session_calibrations_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_calibrations")),
    )
    op.create_index(op.f("ix_session_calibrations_session_id"), "session_calibrations",
                    ["session_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_session_calibrations_session_id"), table_name="session_calibrations")
    op.drop_table("session_calibrations")
