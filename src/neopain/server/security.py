"""Passwords, login tokens, CSRF tokens and the login rate limit.

- Passwords: argon2id hashes (argon2-cffi's defaults); hashes made with older parameters are
  upgraded at the next login (``needs_rehash``).
- Logins: a random 256-bit token in an HTTP-only cookie; the database keeps only its SHA-256,
  so a copy of the database cannot be used to log in.
- CSRF: every form and every state-changing API call carries ``HMAC(secret, binding)``, where
  the binding is the login token (or, before login, a random pre-login cookie). A page on
  another site can make the browser send the cookies, but cannot read the token.
- Rate limit: after ``attempts`` failed logins within ``window_s`` from one address or for one
  username, further tries are refused until the window has passed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import defaultdict, deque

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from neopain.errors import NeopainError

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
    """Counts failed logins per key (an address, a username) in a sliding window.

    Args:
        attempts: failures allowed within the window; the next try is refused.
        window_s: the window, seconds.
        clock: a monotonic clock in seconds (tests pass their own).
    """

    def __init__(self, *, attempts: int = 5, window_s: float = 300.0,
                 clock: object = time.monotonic) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures

    def retry_after(self, *keys: str) -> float:
        """Seconds until any of ``keys`` may try again; 0 when all may try now."""
        now = self.clock()
        with self._lock:
            waits = [failures[0] + self.window_s - now for key in keys
                     if len(failures := self._recent(key, now)) >= self.attempts]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        """Count one failed login against each key."""
        now = self.clock()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        """Forget the failures of each key."""
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
