"""The bedside monitor's web application: ``create_app(settings)``.

Pages (Jinja2 + small plain JavaScript, every asset served from ``static/``), a JSON API with
an OpenAPI schema at ``/api/openapi.json``, and the live WebSocket. The records store is opened
(and migrated) when the app is created; the pain model is loaded on first use unless one is
passed in. While the app runs (its lifespan), ``sweeper.idle_sweeper`` ends the live sessions
that get no frame for ``settings.session_idle_s``, first when it starts, and
``alarm_engine.alarm_engine`` judges the ward's alarms every half second.
"""

from __future__ import annotations

from datetime import timezone
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from neopain import __version__
from neopain.config import Settings
from neopain.prediction import Predictor
from neopain.server import charts, security
from neopain.server.deps import AccessError, ServerState
from neopain.server.live import LiveService
from neopain.server.chart_worker import chart_job, close_chart_worker, warm_chart_worker
from neopain.server.middleware import (
    CRASH_MESSAGE, BodyLimit, RequestGuard, add_transport_middleware,
)
from neopain.server.render import make_templates, render
from neopain.server.devices import DeviceHub
from neopain.server.routes import api, auth, device_pages, devices, live, pages, uploads, ward
from neopain.server.sweeper import idle_sweeper
from neopain.server.alarm_engine import alarm_engine
from neopain.server.ward import WardHub
from neopain.store import crud
from neopain.store.session import StoreError, open_store

STATIC = Path(__file__).parent / "static"


def create_app(settings: Settings, *, predictor: Predictor | None = None) -> FastAPI:
    """The web application for ``settings`` (database, model, cookies, limits).

    Args:
        settings: ``neopain.config.get_settings()`` or your own.
        predictor: the pain model to use; None loads ``settings.model`` on first use (and
            closes it on shutdown). A predictor passed in stays the caller's to close.

    Raises:
        StoreError: the database cannot be opened or migrated.
    """
    store = open_store(settings.records_url())
    try:
        secret = _secret(settings, store)
    except StoreError:
        store.kw["bind"].dispose()
        raise
    live_service = LiveService(settings, predictor=predictor)
    ward_hub = WardHub()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with idle_sweeper(store, idle_s=settings.session_idle_s), \
                alarm_engine(store, settings=settings, hub=ward_hub):
            await warm_chart_worker(_app, chart_job(charts.share_chart, [], [], by="hour",
                                                    zone=timezone.utc))
            yield
        close_chart_worker(_app)
        live_service.close()
        store.kw["bind"].dispose()

    app = FastAPI(title="neopain bedside monitor", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,  # their pages load scripts from a CDN
                  openapi_url="/api/openapi.json")
    app.state.neopain = ServerState(
        settings=settings, store=store, secret=secret,
        limiter=security.LoginLimiter(attempts=settings.login_attempts,
                                      window_s=settings.login_window_s))
    app.state.templates = make_templates(settings)
    app.state.live = live_service
    app.state.ward = ward_hub
    app.state.devices = DeviceHub(store)
    _add_error_handlers(app)
    for module in (auth, pages, api, uploads, live, ward, devices, device_pages):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, max_bytes=int(settings.max_upload_mb * 1e6) + 1_000_000)
    app.add_middleware(RequestGuard, crash_page=_crash_page)
    add_transport_middleware(app)  # last, so gzip sits outermost
    return app


def _no_such(parameter: object, value: object) -> str:
    """``patient_id`` and ``99999999999999999999999`` → "no patient with id 9999…" (an id is
    never patient data; shown cut to 30 characters)."""
    what = str(parameter).removesuffix("_id").replace("_", " ")
    return f"no {what} with id {str(value)[:30]}"


async def _crash_page(scope: Scope) -> tuple[bytes, str]:
    response = render(Request(scope), "error.html", status=500, message=CRASH_MESSAGE)
    return bytes(response.body), "text/html; charset=utf-8"


def _secret(settings: Settings, store: sessionmaker[Session]) -> bytes:
    """``NEOPAIN_SECRET_KEY``, else the random key kept in the records database: every server
    process on one database signs and accepts the same CSRF tokens and links."""
    value = settings.secret_key
    if value:
        return value.get_secret_value().encode()
    with store() as db:
        return crud.shared_key(db, name="csrf")


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AccessError)
    async def access(request: Request, error: AccessError) -> Response:
        if _wants_json(request):
            body = ({"detail": error.message} | error.data
                    | ({"reason": error.reason} if error.reason else {}))
            return JSONResponse(body, status_code=error.status, headers=error.headers)
        if error.status == 401:
            with request.app.state.neopain.store() as db:
                if crud.count_users(db) == 0:  # a fresh install: make the first admin
                    return RedirectResponse("/setup", status_code=303)
            response = render(request, "login.html", status=401, next=request.url.path,
                              message=error.message)
        else:
            response = render(request, "error.html", status=error.status, message=error.message)
        response.headers.update(error.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        # FastAPI's default reply echoes the input, which may be patient data: keep only
        # where the problem is and what is valid
        problems = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                    for e in error.errors()]
        if _wants_json(request):
            return JSONResponse({"detail": problems}, status_code=422)
        if all(e["loc"][0] == "path" for e in problems):  # an address with an impossible id
            return render(request, "error.html", status=404,
                          message="This page does not exist: " + "; ".join(
                              _no_such(e["loc"][-1], raw["input"])
                              for e, raw in zip(problems, error.errors())))
        text = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
                         for e in problems)
        return render(request, "error.html", status=422, message=f"Not saved: {text}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": error.detail}, status_code=error.status_code,
                                headers=error.headers)
        return render(request, "error.html", status=error.status_code, message=error.detail)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/patients", status_code=303)
