"""The ward station and its alarms: live_status (each live session's stream as it stands),
alarms (one row per alarm with its transitions; one unresolved alarm per session and rule),
alarm_pauses and alarm_limits (a patient's own limits); assessments indexed by session and
time (the station's 10-minute trends).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _fk(table: str, column: str, target: str, ondelete: str | None = None
        ) -> sa.ForeignKeyConstraint:
    referred = target.split(".")[0]
    return sa.ForeignKeyConstraint([column], [target], ondelete=ondelete,
                                   name=op.f(f"fk_{table}_{column}_{referred}"))


def upgrade() -> None:
    op.create_table(
        "live_status",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("smoothed", sa.Float(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("first_frame_at", sa.DateTime(), nullable=False),
        sa.Column("last_frame_at", sa.DateTime(), nullable=False),
        sa.Column("last_assessed_at", sa.DateTime(), nullable=True),
        sa.Column("held_state", sa.String(length=8), nullable=True),
        sa.Column("pain_since", sa.DateTime(), nullable=True),
        sa.Column("streaming", sa.Boolean(), nullable=False),
        sa.Column("stream_started_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("state IN ('pain', 'nopain', 'cannot_assess', 'no_face')",
                           name=op.f("ck_live_status_state")),
        sa.CheckConstraint("held_state IS NULL OR held_state IN ('pain', 'nopain')",
                           name=op.f("ck_live_status_held_state")),
        _fk("live_status", "session_id", "monitoring_sessions.id"),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_live_status")),
    )
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=8), nullable=False),
        sa.Column("priority", sa.String(length=8), nullable=False),
        sa.Column("condition_since", sa.DateTime(), nullable=False),
        sa.Column("limit_s", sa.Float(), nullable=False),
        sa.Column("raised_at", sa.DateTime(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(), nullable=True),
        sa.Column("acknowledged_by", sa.Integer(), nullable=True),
        sa.Column("escalated_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("resolution", sa.String(length=32), nullable=False),
        sa.CheckConstraint("rule IN ('pain', 'link', 'noface')", name=op.f("ck_alarms_rule")),
        sa.CheckConstraint("priority IN ('high', 'medium', 'low')",
                           name=op.f("ck_alarms_priority")),
        _fk("alarms", "session_id", "monitoring_sessions.id"),
        _fk("alarms", "patient_id", "patients.id"),
        _fk("alarms", "acknowledged_by", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarms")),
    )
    op.create_index(op.f("ix_alarms_session_id"), "alarms", ["session_id"])
    op.create_index(op.f("ix_alarms_patient_id"), "alarms", ["patient_id"])
    op.create_index("ix_assessments_session_time", "assessments", ["session_id", "time"])
    op.create_index(op.f("ix_alarms_resolved_at"), "alarms", ["resolved_at"])
    op.create_index("uq_alarms_active", "alarms", ["session_id", "rule"], unique=True,
                    sqlite_where=sa.text("resolved_at IS NULL"),
                    postgresql_where=sa.text("resolved_at IS NULL"))
    op.create_table(
        "alarm_pauses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        _fk("alarm_pauses", "session_id", "monitoring_sessions.id"),
        _fk("alarm_pauses", "user_id", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm_pauses")),
    )
    op.create_index(op.f("ix_alarm_pauses_session_id"), "alarm_pauses", ["session_id"])
    op.create_table(
        "alarm_limits",
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("pain_s", sa.Float(), nullable=True),
        sa.Column("stale_s", sa.Float(), nullable=True),
        sa.Column("noface_s", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        _fk("alarm_limits", "patient_id", "patients.id"),
        _fk("alarm_limits", "updated_by", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_alarm_limits")),
    )


def downgrade() -> None:
    op.drop_table("alarm_limits")
    op.drop_index(op.f("ix_alarm_pauses_session_id"), table_name="alarm_pauses")
    op.drop_table("alarm_pauses")
    op.drop_index("uq_alarms_active", table_name="alarms")
    op.drop_index(op.f("ix_alarms_resolved_at"), table_name="alarms")
    op.drop_index(op.f("ix_alarms_patient_id"), table_name="alarms")
    op.drop_index(op.f("ix_alarms_session_id"), table_name="alarms")
    op.drop_table("alarms")
    op.drop_table("live_status")
    op.drop_index("ix_assessments_session_time", table_name="assessments")
