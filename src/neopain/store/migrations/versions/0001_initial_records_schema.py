"""Initial records schema: users, login sessions, patients, monitoring sessions, assessments,
audit log. Times are naive UTC (read back as aware UTC by ``tables.UtcDateTime``).

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_time"), "audit_log", ["time"])
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("role IN ('admin', 'clinician', 'researcher')",
                           name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_login_sessions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_login_sessions_token_hash")),
    )
    op.create_index(op.f("ix_login_sessions_user_id"), "login_sessions", ["user_id"])
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("record_number", sa.String(length=64), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("gestational_age_weeks", sa.Float(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.CheckConstraint("name <> '' OR record_number <> ''",
                           name=op.f("ck_patients_identified")),
        sa.CheckConstraint("gestational_age_weeks IS NULL OR "
                           "(gestational_age_weeks >= 20 AND gestational_age_weeks <= 45)",
                           name=op.f("ck_patients_gestational_age")),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_patients_created_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
    )
    op.create_index(op.f("ix_patients_record_number"), "patients", ["record_number"])
    op.create_table(
        "monitoring_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint("source IN ('live', 'image', 'video')",
                           name=op.f("ck_monitoring_sessions_source")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"],
                                name=op.f("fk_monitoring_sessions_patient_id_patients")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_monitoring_sessions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitoring_sessions")),
    )
    op.create_index(op.f("ix_monitoring_sessions_patient_id"), "monitoring_sessions",
                    ["patient_id"])
    op.create_table(
        "assessments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("offset_s", sa.Float(), nullable=False),
        sa.Column("face_found", sa.Boolean(), nullable=False),
        sa.Column("label", sa.String(length=8), nullable=True),
        sa.Column("prob_pain", sa.Float(), nullable=True),
        sa.Column("smoothed", sa.Float(), nullable=True),
        sa.Column("state", sa.String(length=8), nullable=True),
        sa.Column("changed", sa.Boolean(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("face_box", sa.String(length=100), nullable=True),
        sa.Column("has_snapshot", sa.Boolean(), nullable=False),
        sa.Column("snapshot", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint("label IS NULL OR label IN ('nopain', 'pain')",
                           name=op.f("ck_assessments_label")),
        sa.CheckConstraint("prob_pain IS NULL OR (prob_pain >= 0 AND prob_pain <= 1)",
                           name=op.f("ck_assessments_prob")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"],
                                name=op.f("fk_assessments_patient_id_patients")),
        sa.ForeignKeyConstraint(["session_id"], ["monitoring_sessions.id"],
                                name=op.f("fk_assessments_session_id_monitoring_sessions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assessments")),
    )
    op.create_index("ix_assessments_patient_time", "assessments", ["patient_id", "time"])
    op.create_index(op.f("ix_assessments_session_id"), "assessments", ["session_id"])


def downgrade() -> None:
    for table in ("assessments", "monitoring_sessions", "patients", "login_sessions", "users",
                  "audit_log"):
        op.drop_table(table)
