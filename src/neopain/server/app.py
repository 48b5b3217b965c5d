"""The bedside monitor's web application: ``create_app(settings)``.

Pages (Jinja2 + small plain JavaScript, every asset served from ``static/``), a JSON API with
an OpenAPI schema at ``/api/openapi.json``, and the live WebSocket. The records store is opened
(and migrated) when the app is created; the pain model is loaded on first use unless one is
passed in.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neopain import __version__
from neopain.config import Settings
from neopain.prediction import Predictor
from neopain.server import security
from neopain.server.deps import AccessError, ServerState
from neopain.server.live import LiveService
from neopain.server.render import make_templates, render
from neopain.server.routes import api, auth, live, pages, uploads
from neopain.store import crud
from neopain.store.session import open_store

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    # every script, style, image and socket comes from this server: bedside networks are closed
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                               "media-src 'self' blob: mediastream:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
}


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
    live_service = LiveService(settings, predictor=predictor)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        live_service.close()
        store.kw["bind"].dispose()

    app = FastAPI(title="neopain bedside monitor", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,  # their pages load scripts from a CDN
                  openapi_url="/api/openapi.json")
    app.state.neopain = ServerState(
        settings=settings, store=store, secret=_secret(settings),
        limiter=security.LoginLimiter(attempts=settings.login_attempts,
                                      window_s=settings.login_window_s))
    app.state.templates = make_templates(settings)
    app.state.live = live_service
    _add_error_handlers(app)
    for module in (auth, pages, api, uploads, live):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(_BodyLimit, max_bytes=int(settings.max_upload_mb * 1e6) + 1_000_000)
    app.add_middleware(_PathLog)
    return app


def _secret(settings: Settings) -> bytes:
    value = settings.secret_key
    return value.get_secret_value().encode() if value else secrets.token_bytes(32)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AccessError)
    async def access(request: Request, error: AccessError) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": error.message}, status_code=error.status,
                                headers=error.headers)
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
        text = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
                         for e in problems)
        return render(request, "error.html", status=422, message=f"Not saved: {text}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": error.detail}, status_code=error.status_code,
                                headers=error.headers)
        return render(request, "error.html", status=error.status_code, message=error.detail)

    @app.exception_handler(Exception)
    async def crash(request: Request, error: Exception) -> Response:
        # the type only: an exception's text may quote patient data
        log.error("%s %s failed: %s", request.method, request.url.path, type(error).__name__)
        message = "Internal error; the administrator can find it in the server log."
        if _wants_json(request):
            return JSONResponse({"detail": message}, status_code=500)
        return render(request, "error.html", status=500, message=message)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/patients", status_code=303)


class _PathLog:
    """Access log with the path only: query strings (a patient search) never reach the log;
    adds the security headers to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.setdefault("headers", [])
                headers.extend((k.lower().encode(), v.encode())
                               for k, v in SECURITY_HEADERS.items())
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            log.info("%s %s %d %.0f ms", scope["method"], scope["path"], status,
                     (time.perf_counter() - started) * 1000)


class _BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whether or not they declare a length."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        too_large = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                too_large = True
                raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if not too_large:  # whatever the app answers to a cut-off body is replaced
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            pass
        if too_large:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        limit = self.max_bytes / 1e6
        body = (f'{{"detail": "The upload is larger than the limit of {limit:g} MB."}}'
                ).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
