"""HTML responses: Jinja2 templates with the user, a CSRF token and local times; cookies with
the flags the settings ask for; the view grants that let a page's pictures and charts ride on
the page's one audit row."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import HTTPConnection

from neopain import __version__
from neopain.config import Settings
from neopain.server import security
from neopain.server.deps import PRELOGIN_COOKIE, csrf_binding, server_state
from neopain.store.tables import Patient, utc_now

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
FLASH_COOKIE = "neopain_flash"
FLASH_MAX = 300
FLASH_AGE_S = 60
VIEW_GRANT_AGE_S = 600
"""A page's pictures load within seconds of it; a grant is not a pass for later."""


def display_zone(settings: Settings) -> tzinfo | None:
    """The zone of days and hours shown to users: the settings' or the server's local one."""
    return ZoneInfo(settings.timezone) if settings.timezone else None


def local_time(value: datetime, zone: tzinfo | None) -> datetime:
    """A stored (aware UTC) time as clock time in ``zone`` (None: the server's local zone);
    every page, table and chart converts through here."""
    return value.astimezone(zone)


def day_start(day: date, zone: tzinfo | None) -> datetime:
    """The first instant of ``day`` in ``zone`` (None: the server's local zone), aware."""
    start = datetime.combine(day, time())
    return start.replace(tzinfo=zone) if zone is not None else start.astimezone()


def day_end(day: date, zone: tzinfo | None) -> datetime:
    """The first instant after ``day`` in ``zone``, aware."""
    return day_start(day + timedelta(days=1), zone)


def duration_text(seconds: float | None) -> str:
    """``"1 h 05 min"``, ``"4 min 20 s"``, ``"12 s"``; ``"–"`` for None."""
    if seconds is None:
        return "–"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def asset_version(directory: Path = STATIC) -> str:
    """``neopain.__version__`` and a digest of the files under ``directory``, e.g.
    ``"0.1.0-3f9a1c2b7d"``: the ``?v=`` of every /static/ address a page gives. Browsers keep
    static files for a while (``middleware.STATIC_CACHE``); a new address after an upgrade, or
    any change of a file, keeps them from mixing a new page with an old script."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"{__version__}-{digest.hexdigest()[:10]}"


def make_templates(settings: Settings) -> Jinja2Templates:
    """The page templates, with filters ``localtime`` (clock time in the display zone),
    ``duration``, ``percent`` and ``patient_label``, and globals ``static_url(name)`` (the
    address of a static file, with ``asset_version()``, computed here once) and
    ``rendered_at()`` (now, aware: when the page was made)."""
    templates = Jinja2Templates(directory=TEMPLATES)
    zone = display_zone(settings)
    version = asset_version()

    def static_url(name: str) -> str:
        return f"/static/{name}?v={version}"

    def localtime(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        return "" if value is None else local_time(value, zone).strftime(fmt)

    def percent(value: float | None) -> str:
        return "–" if value is None else f"{value:.0%}"

    templates.env.filters["localtime"] = localtime
    templates.env.filters["percent"] = percent
    templates.env.filters["duration"] = duration_text
    templates.env.filters["patient_label"] = patient_label
    templates.env.globals["static_url"] = static_url
    templates.env.globals["rendered_at"] = utc_now
    return templates


def patient_label(patient: Patient) -> str:
    """How a patient is named on pages: name, record number, or both."""
    if patient.name and patient.record_number:
        return f"{patient.name} ({patient.record_number})"
    return patient.name or patient.record_number


def cookie_secure(connection: HTTPConnection) -> bool:
    """Whether cookies get the Secure flag: the setting, or whether the request was HTTPS."""
    setting = server_state(connection).settings.secure_cookies
    return connection.url.scheme in ("https", "wss") if setting is None else setting


def set_cookie(response: Response, connection: HTTPConnection, name: str, value: str, *,
               max_age: int | None = None) -> None:
    """An HTTP-only, SameSite=Lax cookie for the whole site."""
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax",
                        secure=cookie_secure(connection), path="/")


def flash(response: Response, request: Request, notice: str) -> None:
    """Show ``notice`` on the next page this browser renders (after a redirect), once.

    Signed with the server's secret, so no other site and no link can put text in the notice
    bar (a ``?message=`` query parameter could).
    """
    signed = URLSafeTimedSerializer(server_state(request).secret, salt="flash").dumps(
        notice[:FLASH_MAX])
    set_cookie(response, request, FLASH_COOKIE, signed, max_age=FLASH_AGE_S)


def _flashed(request: Request) -> str:
    signed = request.cookies.get(FLASH_COOKIE)
    if not signed:
        return ""
    try:
        notice = URLSafeTimedSerializer(server_state(request).secret, salt="flash").loads(
            signed, max_age=FLASH_AGE_S)
    except BadSignature:  # forged, or older than FLASH_AGE_S (SignatureExpired)
        return ""
    return notice if isinstance(notice, str) else ""


def view_grant(request: Request, *, user_id: int, patient_id: int) -> str:
    """A token for the addresses of the pictures and charts a page of ``patient_id`` shows
    (``?view=…``): the page's own audit row covers them, so each adds none. Signed with the
    server's secret and bound to the user and to this login (a new login needs a new page
    view); it holds ids and a digest of the login cookie only."""
    return URLSafeTimedSerializer(server_state(request).secret, salt="view").dumps(
        [user_id, patient_id, _login_digest(request)])


def _login_digest(request: Request) -> str:
    return hashlib.sha256((csrf_binding(request) or "").encode()).hexdigest()[:16]


def view_granted(request: Request, token: str, *, user_id: int, patient_id: int) -> bool:
    """Whether ``token`` came from ``view_grant`` for this user and patient, within
    ``VIEW_GRANT_AGE_S`` (a request without it is audited on its own)."""
    if not token:
        return False
    try:
        granted = URLSafeTimedSerializer(server_state(request).secret, salt="view").loads(
            token, max_age=VIEW_GRANT_AGE_S)
    except BadSignature:
        return False
    return granted == [user_id, patient_id, _login_digest(request)]


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> Response:
    """A page from ``templates/``; pages are never cached (they may show patient data). A
    notice left by ``flash`` is shown as the page's message (unless it has its own) and
    forgotten."""
    state = server_state(request)
    binding = csrf_binding(request)
    new_binding = None
    if binding is None:
        binding = new_binding = security.new_token()
    notice = _flashed(request)
    if notice and not context.get("message"):
        context["message"] = notice
    context.update(user=getattr(request.state, "user", None),
                   csrf_token=security.csrf_token(state.secret, binding))
    templates: Jinja2Templates = request.app.state.templates
    response = templates.TemplateResponse(request, template, context, status_code=status)
    if new_binding is not None:
        set_cookie(response, request, PRELOGIN_COOKIE, new_binding)
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")
    response.headers["Cache-Control"] = "no-store"
    return response
