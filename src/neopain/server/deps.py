"""Access checks as FastAPI dependencies: the database session, the logged-in user, the role a
route needs, and the CSRF check of state-changing requests.

A route states what it needs in its signature (``user: Carer``); there are no checks inside
route bodies. ``tests/server/test_access.py`` calls every route of the app without a login and
with each role, so a route added without a check fails there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, NamedTuple
from urllib.parse import urlsplit

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import HTTPConnection

from neopain.config import Settings
from neopain.server import security
from neopain.store import crud
from neopain.store.tables import ROLES, User

SESSION_COOKIE = "neopain_session"
PRELOGIN_COOKIE = "neopain_prelogin"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CARE_ROLES = ("admin", "clinician")
MAX_ROW_ID = 2**31 - 1
"""The largest row id: PostgreSQL's ``integer`` (SQLite's is larger). Ids beyond it are
refused with 422 before any query, instead of overflowing the database driver."""


class AccessError(Exception):
    """Refused: ``status`` 401 (log in), 403 (role or CSRF), 404 or 429 (too many logins);
    ``message`` for the user (never patient data); ``headers`` such as Retry-After;
    ``reason``: a word a program acts on (the device API's ``revoked``), "" for none;
    ``data``: more fields of a JSON answer for a program (never patient data)."""

    def __init__(self, status: int, message: str, *,
                 headers: dict[str, str] | None = None, reason: str = "",
                 data: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.reason = reason
        self.data = data or {}


@dataclass
class ServerState:
    """What the routes share: settings, the store, the CSRF secret, the login limiter."""

    settings: Settings
    store: sessionmaker[Session]
    secret: bytes
    limiter: security.LoginLimiter


def server_state(connection: HTTPConnection) -> ServerState:
    """The app's ``ServerState`` (set by ``create_app``)."""
    return connection.app.state.neopain


def get_db(connection: HTTPConnection) -> Iterator[Session]:
    """A database session for one request, closed afterwards."""
    with server_state(connection).store() as db:
        yield db


Db = Annotated[Session, Depends(get_db)]


def optional_user(connection: HTTPConnection, db: Db) -> User | None:
    """The user of the login cookie, or None (no cookie, expired, deactivated)."""
    token = connection.cookies.get(SESSION_COOKIE)
    login = crud.find_login_session(db, security.hash_token(token)) if token else None
    user = None if login is None else login.user
    connection.state.user = user
    return user


class Refusal(NamedTuple):
    """Why a live stream may not go on, as a WebSocket close code and a reason for the page."""

    code: int
    reason: str


ENDED = Refusal(4409, "This session has ended; start a new one.")


def live_refusal(db: Session, *, token_hash: str, session_id: int) -> Refusal | None:
    """Whether the login ``token_hash`` may stream into live session ``session_id`` *now*:
    None, or the refusal (4401 log in again, 4403 role, 4404 no such session, 4409 ended).

    Checked when the socket opens, inside the transaction that saves a frame, and twice a
    second while the socket is open, so logout, deactivation, a new password or a changed role end a
    stream within a second, in any server process.
    """
    login = crud.find_login_session(db, token_hash)
    if login is None:
        return Refusal(4401, "Please log in.")
    if login.user.role not in CARE_ROLES:
        return Refusal(4403, "Live monitoring needs the role admin or clinician.")
    session = crud.get_session(db, session_id, fresh=True)
    if session is None or session.source != "live":
        return Refusal(4404, f"No live session with id {session_id}.")
    if session.ended_at is not None:
        return ENDED
    return None


def same_origin(connection: HTTPConnection) -> bool:
    """Whether a WebSocket comes from a page of this site (its Origin names this host); a
    client that sends no Origin is not a browser (scripts, the benchmark) and still needs the
    login cookie. SameSite=Lax cookies also reach sockets opened by sibling sites (another
    port or subdomain), so sockets check the origin themselves."""
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == connection.headers.get("host")


def current_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    """The logged-in user.

    Raises:
        AccessError: 401 when nobody is logged in.
    """
    if user is None:
        raise AccessError(401, "Please log in.")
    return user


def require_role(*roles: str) -> Callable[[User], User]:
    """A dependency that lets only users with one of ``roles`` through (403 for others)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; valid: {', '.join(ROLES)}")

    def check(user: Annotated[User, Depends(current_user)]) -> User:
        if user.role not in roles:
            raise AccessError(403, f"This needs the role {' or '.join(roles)}; "
                                   f"you are logged in as {user.role}.")
        return user

    return check


RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
"""A row id in a path (``/patients/{patient_id}``): 1 to ``MAX_ROW_ID``, else 422."""
Offset = Annotated[int, Query(ge=0, le=MAX_ROW_ID)]
"""How many rows to skip in a listing: 0 to ``MAX_ROW_ID``, else 422."""

Viewer = Annotated[User, Depends(require_role(*ROLES))]
"""Any logged-in user: may view records."""
Carer = Annotated[User, Depends(require_role(*CARE_ROLES))]
"""An admin or clinician: may add and change patient data, monitor and upload."""
Admin = Annotated[User, Depends(require_role("admin"))]
"""An admin: may manage users and read the audit log."""


def csrf_binding(connection: HTTPConnection) -> str | None:
    """What the CSRF token is bound to: the login cookie, else the pre-login cookie."""
    return connection.cookies.get(SESSION_COOKIE) or connection.cookies.get(PRELOGIN_COOKIE)


async def csrf_protect(request: Request) -> None:
    """Refuse a POST/PUT/PATCH/DELETE whose CSRF token (header or form field) is missing or
    does not match the browser's cookie (403)."""
    if request.method not in UNSAFE_METHODS:
        return
    token = request.headers.get(CSRF_HEADER)
    if token is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        token = value if isinstance(value, str) else None
    if not security.csrf_valid(server_state(request).secret, csrf_binding(request), token):
        raise AccessError(403, "The form has expired or did not come from this site; reload "
                               "the page and try again.")
