"""Log in, log out, and the one-time setup of the first admin (only while no user exists)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from neopain.server import security
from neopain.server.deps import (
    PRELOGIN_COOKIE, SESSION_COOKIE, AccessError, Db, Viewer, csrf_protect, optional_user,
    server_state,
)
from neopain.server.render import render, set_cookie
from neopain.server.schemas import LoginIn, LoginOut, UserOut
from neopain.store import crud
from neopain.store.tables import User, utc_now

router = APIRouter()
LOGIN_ENDED = ("Monitoring stopped: your login has ended (logged out, account changed or "
               "deactivated). Log in again to go on.")
_SETUP_LOCK = threading.Lock()  # two browsers racing through setup create one admin


def _safe_next(target: str | None) -> str:
    # only paths of this site: "//host" or "https://..." would send the user elsewhere
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/patients"


def _check_login(request: Request, db: Session, username: str, password: str) -> User:
    state = server_state(request)
    account = f"user:{username.strip().lower()}"
    keys = (f"address:{request.client.host if request.client else '-'}", account)
    wait = state.limiter.reserve(db, *keys)  # counted before the (slow) password check
    if wait > 0:
        raise AccessError(429, f"Too many failed logins; try again in {int(wait) + 1} s.",
                          headers={"Retry-After": str(int(wait) + 1)})
    user = crud.find_user(db, username.strip())
    if not security.verify_password(None if user is None else user.password_hash, password) \
            or user is None or not user.active:
        crud.audit(db, actor=user, action="login_failed", object_type="user",
                   object_id=None if user is None else user.id,
                   detail="" if user is not None else "unknown username")
        raise AccessError(401, "Wrong username or password.")
    state.limiter.succeeded(db, *keys, forget=[account])
    if security.needs_rehash(user.password_hash):
        crud.update_user(db, user, actor=user, password_hash=security.hash_password(password))
    return user


def _start_login(request: Request, response: Response, db: Session, user: User) -> str:
    token = security.new_token()
    hours = server_state(request).settings.session_hours
    crud.create_login_session(db, user=user, token_hash=security.hash_token(token),
                              expires_at=utc_now() + timedelta(hours=hours))
    set_cookie(response, request, SESSION_COOKIE, token, max_age=int(hours * 3600))
    response.delete_cookie(PRELOGIN_COOKIE, path="/")
    return token


@router.get("/login", include_in_schema=False)
def login_page(request: Request, db: Db,
               user: Annotated[User | None, Depends(optional_user)],
               next: str = "/patients",  # noqa: A002 - the query parameter's name
               ended: bool = False) -> Response:
    if crud.count_users(db) == 0:
        return RedirectResponse("/setup", status_code=303)
    if user is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    # a fixed text, never one from the address: the live page comes here when its login ended
    return render(request, "login.html", next=_safe_next(next),
                  message=LOGIN_ENDED if ended else "")


@router.post("/login", include_in_schema=False, dependencies=[Depends(csrf_protect)])
def login_form(request: Request, db: Db, username: Annotated[str, Form(max_length=64)],
               password: Annotated[str, Form(max_length=1024)],
               next: Annotated[str, Form()] = "/patients") -> Response:  # noqa: A002
    try:
        user = _check_login(request, db, username, password)
    except AccessError as error:
        response = render(request, "login.html", status=error.status, next=_safe_next(next),
                          message=error.message, username=username)
        response.headers.update(error.headers)
        return response
    response = RedirectResponse(_safe_next(next), status_code=303)
    _start_login(request, response, db, user)
    return response


@router.post("/logout", include_in_schema=False, dependencies=[Depends(csrf_protect)])
def logout(request: Request, db: Db, user: Viewer) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    crud.end_login_session(db, security.hash_token(token), actor=user)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/setup", include_in_schema=False)
def setup_page(request: Request, db: Db) -> Response:
    if crud.count_users(db) > 0:
        raise AccessError(403, "Setup is done: an account exists. Ask an admin for yours.")
    return render(request, "setup.html")


@router.post("/setup", include_in_schema=False, dependencies=[Depends(csrf_protect)])
def setup(request: Request, db: Db, username: Annotated[str, Form(max_length=64)],
          password: Annotated[str, Form(max_length=1024)],
          password_again: Annotated[str, Form(max_length=1024)]) -> Response:
    with _SETUP_LOCK:
        if crud.count_users(db) > 0:
            raise AccessError(403, "Setup is done: an account exists. Ask an admin for yours.")
        try:
            security.check_username(username)
            security.check_password(password, username=username)
            if password != password_again:
                raise security.CredentialsError("the two passwords differ")
        except security.CredentialsError as error:
            return render(request, "setup.html", status=422, message=str(error),
                          username=username)
        user = crud.create_user(db, username=username, role="admin",
                                password_hash=security.hash_password(password))
    response = RedirectResponse("/patients", status_code=303)
    _start_login(request, response, db, user)
    return response


@router.post("/api/login", response_model=LoginOut, tags=["auth"])
def api_login(request: Request, response: Response, db: Db, body: LoginIn) -> LoginOut:
    """Log in; the reply sets the login cookie and gives the CSRF token for later calls.

    Only JSON is accepted, which a page on another site cannot send without CORS (FastAPI
    also parses a body sent without any Content-Type, which such a page can send).
    """
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise AccessError(415, "Send the credentials as application/json.")
    user = _check_login(request, db, body.username, body.password)
    token = _start_login(request, response, db, user)
    return LoginOut(user=UserOut.of(user),
                    csrf_token=security.csrf_token(server_state(request).secret, token))


@router.get("/api/me", response_model=LoginOut, tags=["auth"])
def api_me(request: Request, user: Viewer) -> LoginOut:
    """Who is logged in, and the CSRF token for POST/PATCH calls."""
    token = request.cookies.get(SESSION_COOKIE, "")
    return LoginOut(user=UserOut.of(user),
                    csrf_token=security.csrf_token(server_state(request).secret, token))


@router.post("/api/logout", status_code=204, tags=["auth"],
             dependencies=[Depends(csrf_protect)])
def api_logout(request: Request, db: Db, user: Viewer) -> Response:
    """End this login."""
    crud.end_login_session(db, security.hash_token(request.cookies.get(SESSION_COOKIE, "")),
                           actor=user)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
