"""The record keeps what a nurse was shown: assessments.uncertain is true for a frame or image
the model's referral band referred ("uncertain – look at the baby"), whose label and smoothed
state are then kept but were not shown as an assessment. Earlier rows were never referred.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("assessments", sa.Column("uncertain", sa.Boolean(), nullable=False,
                                           server_default=sa.false()))


def downgrade() -> None:
    # a plain DROP COLUMN (SQLite 3.35+), as 0003: nothing is lost that 0006 could say
    op.drop_column("assessments", "uncertain")
