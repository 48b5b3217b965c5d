"""What a bed device's agent last said, for the Devices page: the records waiting in its
outbox, those it could not keep, its frames per second and its model (so an administrator sees
a device's backlog before revoking it).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMNS = (("queued", sa.Integer()), ("dropped", sa.Integer()), ("fps", sa.Float()),
           ("model", sa.String(200)))


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column("devices", sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    for name, _ in COLUMNS:
        op.drop_column("devices", name)
