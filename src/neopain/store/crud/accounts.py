"""Accounts: users, their logins, the login rate limit and the keys the server processes
share."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from neopain.store.crud.base import stage_audit, commit
from neopain.store.session import StoreError
from neopain.store.tables import (
    ROLES, LoginSession, LoginThrottle, ServerKey, User, UtcDateTime, utc_now,
)


# users ------------------------------------------------------------------------------------------

def count_users(db: Session) -> int:
    """How many accounts exist (the one-time setup page works only while this is 0)."""
    return db.scalar(select(func.count()).select_from(User)) or 0


def create_user(db: Session, *, username: str, password_hash: str, role: str,
                actor: User | None = None) -> User:
    """Add an account.

    Raises:
        StoreError: an unknown role or a username that is taken.
    """
    if role not in ROLES:
        raise StoreError(f"role={role!r} is not a role; valid: {', '.join(ROLES)}")
    if find_user(db, username) is not None:
        raise StoreError(f"username={username!r} is taken; choose another")
    user = User(username=username, password_hash=password_hash, role=role, active=True)
    db.add(user)
    db.flush()
    stage_audit(db, actor, "create", "user", user.id, f"role={role}")
    commit(db, f"create user {username!r}")
    return user


def get_user(db: Session, user_id: int) -> User | None:
    """The user with this id, or None."""
    return db.get(User, user_id)


def find_user(db: Session, username: str) -> User | None:
    """The user with this username, or None."""
    return db.scalar(select(User).where(User.username == username))


def list_users(db: Session) -> list[User]:
    """All accounts by username."""
    return list(db.scalars(select(User).order_by(User.username)))


def update_user(db: Session, user: User, *, actor: User | None, password_hash: str | None = None,
                role: str | None = None, active: bool | None = None) -> User:
    """Change a user's password hash, role or active flag; a new password or deactivation
    ends the user's open logins.

    Raises:
        StoreError: an unknown role.
    """
    changes = []
    if role is not None:
        if role not in ROLES:
            raise StoreError(f"role={role!r} is not a role; valid: {', '.join(ROLES)}")
        user.role = role
        changes.append(f"role={role}")
    if active is not None:
        user.active = active
        changes.append(f"active={active}")
    if password_hash is not None:
        user.password_hash = password_hash
        changes.append("password")
    if active is False or password_hash is not None:
        db.execute(delete(LoginSession).where(LoginSession.user_id == user.id))
    stage_audit(db, actor, "update", "user", user.id, ", ".join(changes))
    commit(db, f"update user {user.username!r}")
    return user


# login sessions ---------------------------------------------------------------------------------

def create_login_session(db: Session, *, user: User, token_hash: str,
                         expires_at: datetime) -> LoginSession:
    """Remember a logged-in browser by the hash of its token; audit the login."""
    login = LoginSession(user_id=user.id, token_hash=token_hash, expires_at=expires_at)
    db.add(login)
    stage_audit(db, user, "login", "user", user.id)
    commit(db, "login")
    return login


def find_login_session(db: Session, token_hash: str) -> LoginSession | None:
    """The unexpired login of an active user with this token hash, or None."""
    login = db.scalar(select(LoginSession).where(LoginSession.token_hash == token_hash)
                      .execution_options(populate_existing=True))
    if login is None or login.expires_at <= utc_now() or not login.user.active:
        return None
    return login


def end_login_session(db: Session, token_hash: str, *, actor: User | None) -> None:
    """Forget a login (logout) and every expired one."""
    db.execute(delete(LoginSession).where(or_(LoginSession.token_hash == token_hash,
                                              LoginSession.expires_at <= utc_now())))
    stage_audit(db, actor, "logout", "user", None if actor is None else actor.id)
    commit(db, "logout")


def _upsert_insert(db: Session) -> Callable[..., Any]:
    """The ``insert`` of the database's dialect, which has ``on_conflict_do_…`` (an atomic
    upsert; SQLAlchemy's generic insert has none). The engine is SQLite's or PostgreSQL's
    (``store.session.DATABASES``)."""
    return sqlite.insert if db.get_bind().dialect.name == "sqlite" else postgresql.insert


# keys shared by the server processes ----------------------------------------------------------

def shared_key(db: Session, *, name: str, size: int = 32) -> bytes:
    """The key ``name`` every server process on this database uses: ``size`` random bytes,
    made by whichever process asks first (an insert that a concurrent one's makes a no-op).

    Raises:
        StoreError: the database cannot be read or written (named by the error's type only).
    """
    insert = _upsert_insert(db)
    try:
        db.execute(insert(ServerKey).values(name=name, value=secrets.token_bytes(size))
                   .on_conflict_do_nothing(index_elements=[ServerKey.name]))
        commit(db, f"make the shared key {name}")
        return db.scalar(select(ServerKey.value).where(ServerKey.name == name))
    except SQLAlchemyError as error:  # e.g. a database locked or gone: a message, no traceback
        db.rollback()
        raise StoreError(f"cannot read or make the server's shared key {name!r}: "
                         f"{type(error).__name__}") from None


# login rate limit -------------------------------------------------------------------------------

def _key_hashes(keys: Sequence[str]) -> list[str]:
    # sorted: concurrent transactions lock the rows in one order (no deadlock on PostgreSQL)
    return sorted({hashlib.sha256(key.encode()).hexdigest() for key in keys})


def _count_attempt(db: Session, key_hash: str, *, limit: int, cutoff: datetime,
                   now: datetime) -> bool:
    """One atomic upsert: a new key, or one whose window started at or before ``cutoff``,
    starts a window with this attempt; a key under ``limit`` counts one more; a key at the
    limit is left as it is (False)."""
    insert = _upsert_insert(db)
    table = LoginThrottle.__table__
    expired = table.c.window_start <= cutoff
    statement = insert(table).values(key_hash=key_hash, attempts=1, window_start=now)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.key_hash],
        set_={"attempts": case((expired, 1), else_=table.c.attempts + 1),
              "window_start": case((expired, literal(now, UtcDateTime())),
                                   else_=table.c.window_start)},
        where=or_(expired, table.c.attempts < limit))
    return db.execute(statement.returning(table.c.attempts)).first() is not None


def reserve_login_attempt(db: Session, *, keys: Sequence[str], limit: int, window_s: float,
                          now: datetime) -> float:
    """Count one login attempt against every key *before* the password is checked.

    Each key moves by one ``INSERT … ON CONFLICT DO UPDATE … WHERE attempts < limit``, which
    the database applies atomically (a row lock on PostgreSQL, the write lock on SQLite), so
    concurrent requests and other server processes can never together check more than
    ``limit`` passwords of a key per window. A window starts at a key's first attempt and lasts
    ``window_s`` seconds. Keys are taken in one order, so two logins cannot deadlock.

    Returns:
        0.0 when the attempt is counted; otherwise the seconds until the refusing key's window
        ends, and nothing is counted.

    Raises:
        StoreError: a database other than SQLite or PostgreSQL.
    """
    cutoff = now - timedelta(seconds=window_s)
    for key_hash in _key_hashes(keys):
        if not _count_attempt(db, key_hash, limit=limit, cutoff=cutoff, now=now):
            start = db.scalar(select(LoginThrottle.window_start)
                              .where(LoginThrottle.key_hash == key_hash))
            db.rollback()  # the other keys' counts of this attempt are taken back too
            if start is None:  # cannot happen while the row is locked; refuse briefly
                return 1.0
            return max((start + timedelta(seconds=window_s) - now).total_seconds(), 0.001)
    commit(db, "count a login attempt")
    return 0.0


def release_login_attempt(db: Session, *, keys: Sequence[str], forget: Sequence[str] = (),
                          expired_before: datetime | None = None) -> None:
    """After a successful login: take back its counted attempt from every key, clear the keys
    in ``forget`` (the account's own: its owner has just proved who they are), and drop the
    windows that started before ``expired_before`` (housekeeping; an expired window is also
    restarted by the next attempt of its key)."""
    db.execute(update(LoginThrottle)
               .where(LoginThrottle.key_hash.in_(_key_hashes(keys)), LoginThrottle.attempts > 0)
               .values(attempts=LoginThrottle.attempts - 1))
    if forget:
        db.execute(delete(LoginThrottle).where(LoginThrottle.key_hash.in_(_key_hashes(forget))))
    if expired_before is not None:
        db.execute(delete(LoginThrottle).where(LoginThrottle.window_start < expired_before))
    commit(db, "release a login attempt")
