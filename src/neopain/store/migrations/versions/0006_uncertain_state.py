"""A bed can be ``uncertain`` (a model's referral band holds both labels: look at the baby):
live_status.state and live_status.held_state accept it, and held_state widens to 16 characters
to hold it. Downgrading turns an uncertain status into what the older schema can say: the state
``cannot_assess`` (no number was vouched for) and the held state unknown.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATES = ("pain", "nopain", "cannot_assess", "no_face")
HELD = ("pain", "nopain")


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _constrain(*, states: tuple[str, ...], held: tuple[str, ...], held_length: int,
               was_length: int) -> None:
    """Replace live_status's two CHECK constraints (SQLite: by copying the table; nothing
    points at live_status, so the copy keeps every foreign key)."""
    with op.batch_alter_table("live_status") as batch:
        batch.drop_constraint(op.f("ck_live_status_state"), type_="check")
        batch.drop_constraint(op.f("ck_live_status_held_state"), type_="check")
        batch.alter_column("held_state", type_=sa.String(length=held_length),
                           existing_type=sa.String(length=was_length), existing_nullable=True)
        batch.create_check_constraint(op.f("ck_live_status_state"),
                                      f"state IN ({_listed(states)})")
        batch.create_check_constraint(op.f("ck_live_status_held_state"),
                                      f"held_state IS NULL OR held_state IN ({_listed(held)})")


def upgrade() -> None:
    _constrain(states=(*STATES[:2], "uncertain", *STATES[2:]), held=(*HELD, "uncertain"),
               held_length=16, was_length=8)


def downgrade() -> None:
    op.execute("UPDATE live_status SET state = 'cannot_assess' WHERE state = 'uncertain'")
    op.execute("UPDATE live_status SET held_state = NULL WHERE held_state = 'uncertain'")
    _constrain(states=STATES, held=HELD, held_length=8, was_length=16)
