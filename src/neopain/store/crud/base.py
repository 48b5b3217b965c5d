"""What every data-access function shares: committing with a readable error, and audit rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from neopain.store.session import StoreError
from neopain.store.tables import AuditEntry, User


def commit(db: Session, what: str) -> None:
    """Commit; a broken constraint becomes a ``StoreError`` naming ``what`` and the constraint,
    never the values."""
    try:
        db.commit()
    except IntegrityError as error:
        db.rollback()
        # the constraint's name, never the values (they may be patient data)
        # the first line names the constraint; PostgreSQL's DETAIL line would echo the values
        reason = (str(error.orig).splitlines() or [""])[0]
        raise StoreError(f"{what}: refused by the database ({reason})") from None


SYSTEM = "system"
"""The actor of what the server does by itself (e.g. ending an idle session) in the audit log."""


def stage_audit(db: Session, actor: User | str | None, action: str, object_type: str = "",
                object_id: int | None = None, detail: str = "") -> None:
    """Add an audit row to the transaction in progress (committed with the change it records).

    ``actor``: the user, ``SYSTEM`` for the server itself, None for the command line.
    """
    if isinstance(actor, User):
        user_id, username = actor.id, actor.username
    else:
        user_id, username = None, actor or ""
    db.add(AuditEntry(user_id=user_id, username=username, action=action,
                      object_type=object_type, object_id=object_id, detail=detail[:200]))


def audit(db: Session, *, actor: User | None, action: str, object_type: str = "",
          object_id: int | None = None, detail: str = "") -> None:
    """Record that ``actor`` did ``action`` (e.g. ``"view"``) on an object, and commit.

    ``detail`` must not hold patient data: name the page or field, never a value.
    """
    stage_audit(db, actor, action, object_type, object_id, detail)
    commit(db, f"audit {action}")


def list_audit(db: Session, *, upto: int | None = None, username: str = "", action: str = "",
               since: datetime | None = None, until: datetime | None = None, limit: int = 200,
               offset: int = 0) -> list[AuditEntry]:
    """Audit rows, newest first, that match every filter given: ``username`` and ``action``
    exactly, ``since`` ≤ time < ``until`` (aware datetimes). ``upto`` (a row id) pins the
    listing to the rows that existed when its first page was read, so rows added meanwhile
    shift no page: paging by ``offset`` then neither skips nor repeats a row."""
    statement = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
    if upto is not None:
        statement = statement.where(AuditEntry.id <= upto)
    if username:
        statement = statement.where(AuditEntry.username == username)
    if action:
        statement = statement.where(AuditEntry.action == action)
    if since is not None:
        statement = statement.where(AuditEntry.time >= since)
    if until is not None:
        statement = statement.where(AuditEntry.time < until)
    return list(db.scalars(statement))
