"""Passwords, login tokens, CSRF tokens and the login rate limit.

- Passwords: argon2id hashes (argon2-cffi's defaults); hashes made with older parameters are
  upgraded at the next login (``needs_rehash``).
- Logins: a random 256-bit token in an HTTP-only cookie; the database keeps only its SHA-256,
  so a copy of the database cannot be used to log in.
- CSRF: every form and every state-changing API call carries ``HMAC(secret, binding)``, where
  the binding is the login token (or, before login, a random pre-login cookie). A page on
  another site can make the browser send the cookies, but cannot read the token.
- Rate limit: at most ``attempts`` password checks within ``window_s`` from one address or for
  one username, counted before each check in the database (``LoginLimiter``); further tries are
  refused until the window has passed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from neopain.errors import NeopainError
from neopain.store import crud

USERNAME = re.compile(r"^[A-Za-z0-9._-]{2,64}$")
MIN_PASSWORD = 10
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    # verified against when the username is unknown, so that a wrong name takes as long as a
    # wrong password and does not reveal which usernames exist; made on first use (a hash
    # costs a noticeable fraction of a second)
    return _HASHER.hash("neopain-dummy-password")


class CredentialsError(NeopainError):
    """A username or password that breaks the account rules (the message says which)."""


def check_username(username: str) -> str:
    """``username`` if it is 2–64 letters, digits, dots, dashes or underscores.

    Raises:
        CredentialsError: any other username.
    """
    if not USERNAME.match(username):
        raise CredentialsError(f"username={username!r} is not valid; use 2–64 letters, digits, "
                               "'.', '-' or '_'")
    return username


def check_password(password: str, *, username: str = "") -> str:
    """``password`` if it has at least 10 characters and is not the username.

    Raises:
        CredentialsError: a shorter password, or one equal to the username.
    """
    if len(password) < MIN_PASSWORD:
        raise CredentialsError(f"the password has {len(password)} characters; use at least "
                               f"{MIN_PASSWORD}")
    if username and password.lower() == username.lower():
        raise CredentialsError("the password must not be the username")
    return password


def hash_password(password: str) -> str:
    """The argon2id hash of a password (salted; two calls give different strings)."""
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; with ``password_hash=None`` (no such user) it spends the
    same time and returns False."""
    try:
        return _HASHER.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether a hash was made with weaker parameters than the current ones."""
    return _HASHER.check_needs_rehash(password_hash)


def new_token() -> str:
    """A random URL-safe token with 256 bits of entropy."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex of a login token: what the database stores."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(secret: bytes, binding: str) -> str:
    """The CSRF token of a browser whose login (or pre-login) cookie is ``binding``."""
    return hmac.new(secret, b"csrf:" + binding.encode(), hashlib.sha256).hexdigest()


def csrf_valid(secret: bytes, binding: str | None, token: str | None) -> bool:
    """Whether ``token`` is the CSRF token of ``binding`` (constant-time comparison)."""
    if not binding or not token:
        return False
    return hmac.compare_digest(csrf_token(secret, binding), token)


class LoginLimiter:
    """The login rate limit: at most ``attempts`` password checks per key (an address, a
    username) within ``window_s`` seconds of the key's first attempt.

    An attempt is counted *before* its password is checked, in the database (one atomic
    update per key; ``crud.reserve_login_attempt``), so the limit holds for concurrent requests
    and across server processes, and survives a restart. A successful login takes its own
    attempt back and clears the account's failures.

    Args:
        attempts: password checks allowed per key and window.
        window_s: the window, seconds.
        clock: wall-clock time in seconds since the epoch (tests pass their own); every server
            process sharing the database must agree on it.
    """

    def __init__(self, *, attempts: int = 5, window_s: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def reserve(self, db: Session, *keys: str) -> float:
        """Count an attempt against every key; 0 when it may go ahead, else the seconds to
        wait (nothing counted)."""
        return crud.reserve_login_attempt(db, keys=keys, limit=self.attempts,
                                          window_s=self.window_s, now=self._now())

    def succeeded(self, db: Session, *keys: str, forget: Sequence[str] = ()) -> None:
        """A reserved attempt was a correct login: take it back, and clear ``forget``."""
        crud.release_login_attempt(
            db, keys=keys, forget=forget,
            expired_before=self._now() - timedelta(seconds=self.window_s))
