"""Bed devices (``neopain agent``): devices with a hashed token, their bindings to live
sessions, and a device's record id on each assessment it sent, unique per device so that a
record sent twice is stored once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_by", sa.Integer(), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_devices_created_by_users")),
        sa.ForeignKeyConstraint(["revoked_by"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_devices_revoked_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("name", name=op.f("uq_devices_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_devices_token_hash")),
    )
    op.create_table(
        "device_bindings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("bound_at", sa.DateTime(), nullable=False),
        sa.Column("bound_by", sa.Integer(), nullable=True),
        sa.Column("unbound_at", sa.DateTime(), nullable=True),
        sa.Column("unbound_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"],
                                name=op.f("fk_device_bindings_device_id_devices")),
        sa.ForeignKeyConstraint(["session_id"], ["monitoring_sessions.id"],
                                name=op.f("fk_device_bindings_session_id_monitoring_sessions")),
        sa.ForeignKeyConstraint(["bound_by"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_device_bindings_bound_by_users")),
        sa.ForeignKeyConstraint(["unbound_by"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_device_bindings_unbound_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_bindings")),
    )
    op.create_index(op.f("ix_device_bindings_device_id"), "device_bindings", ["device_id"])
    op.create_index(op.f("ix_device_bindings_session_id"), "device_bindings", ["session_id"])
    for column in ("device_id", "session_id"):
        op.create_index(f"uq_device_bindings_open_{column.split('_')[0]}", "device_bindings",
                        [column], unique=True, sqlite_where=sa.text("unbound_at IS NULL"),
                        postgresql_where=sa.text("unbound_at IS NULL"))
    with op.batch_alter_table("assessments") as batch:
        batch.add_column(sa.Column("device_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("record_id", sa.String(64), nullable=True))
        batch.create_foreign_key(op.f("fk_assessments_device_id_devices"), "devices",
                                 ["device_id"], ["id"])
    op.create_index("uq_assessments_device_record", "assessments", ["device_id", "record_id"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("uq_assessments_device_record", table_name="assessments")
    with op.batch_alter_table("assessments") as batch:
        batch.drop_constraint(op.f("fk_assessments_device_id_devices"), type_="foreignkey")
        batch.drop_column("record_id")
        batch.drop_column("device_id")
    op.drop_table("device_bindings")
    op.drop_table("devices")
