"""ASGI middleware of the monitor: headers on every response, a log line without patient data,
crashes answered without a traceback, the request body limit, and gzip where it is safe.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``: it must also see WebSockets, and it
must answer a crash itself. Starlette's ``ServerErrorMiddleware`` sits outside every user
middleware, so a 500 it writes misses these headers, and it re-raises, which makes uvicorn log
the full traceback (whose last line may quote patient data).
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("neopain.server")

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
HSTS = "max-age=31536000"
"""Sent over https only: a browser that saw it keeps to https for this host for a year."""
STATIC_CACHE = "public, max-age=600, must-revalidate"
"""Static assets: their addresses carry no version, so a browser keeps one ten minutes (an
upgrade reaches every screen soon), then asks again and gets 304 while its ETag still holds."""
CRASH_MESSAGE = "Internal error; the administrator can find it in the server log."
COMPRESSED_PATHS = re.compile(r"/static/.*|/api/openapi\.json|/patients/\d+/charts/\w+\.svg"
                              r"|/sessions/\d+/timeline\.svg")
"""The responses gzip may compress: none holds a secret (the CSRF token, a login) next to text
taken from the request. An HTML page can hold both, and then the size of its compressed body
tells an attacker who can add text how much of it matches the secret (BREACH); these paths
answer HTML too when they fail (a login page, an error page), so HTML is never compressed."""
PACKAGE_ROOT = Path(__file__).resolve().parents[1]

CrashPage = Callable[[Scope], Awaitable[tuple[bytes, str]]]
"""Builds the HTML body of a crash page for a request: (body, content type)."""


def printable(path: str) -> str:
    """A request path as it may enter the log: control characters escaped (a percent-encoded
    newline in a URL would otherwise forge a log line)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)


def crash_site(error: BaseException) -> str:
    """Where an exception was raised, without its message: ``Type at file:line in function``
    for the innermost frame inside neopain (else the innermost frame).

    The message is left out because it may quote patient data (a name in a failed query).
    """
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ == "builtins" \
        else f"{kind.__module__}.{kind.__qualname__}"
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if Path(f.filename).resolve().is_relative_to(PACKAGE_ROOT)]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return name
    where = Path(frame.filename)
    if where.resolve().is_relative_to(PACKAGE_ROOT):
        where = where.resolve().relative_to(PACKAGE_ROOT.parent)
    return f"{name} at {where.as_posix()}:{frame.lineno} in {frame.name}"


class RequestGuard:
    """Adds the security headers (and HSTS over https) to every HTTP response,
    ``Cache-Control: no-store`` to every page and API reply and ``STATIC_CACHE`` to static
    assets (a route may set its own);
    logs method, path (never the query string), status and time; answers an exception no
    route handled with a 500 that has these headers too, and logs where it happened (type,
    file, line) without its message or traceback. A WebSocket that crashes is closed with
    1011.

    Args:
        app: the ASGI app.
        crash_page: the HTML 500 page (JSON is sent under ``/api/``).
    """

    def __init__(self, app: ASGIApp, *, crash_page: CrashPage) -> None:
        self.app = app
        self.crash_page = crash_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, response_started = 500, False
        extra = list(SECURITY_HEADERS.items())
        if scope.get("scheme") == "https":
            extra.append(("Strict-Transport-Security", HSTS))
        cacheable = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                headers = message.setdefault("headers", [])
                present = {name.lower() for name, _ in headers}
                headers.extend((k.lower().encode(), v.encode()) for k, v in extra)
                if b"cache-control" not in present:
                    headers.append((b"cache-control",
                                    STATIC_CACHE.encode() if cacheable else b"no-store"))
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as error:  # noqa: BLE001 - any crash gets a clean 500, never a traceback
            log.error("%s %s failed: %s", scope["method"], printable(scope["path"]),
                      crash_site(error))
            if not response_started:
                await self._crash_reply(scope, send_with_headers)
        finally:
            log.info("%s %s %d %.0f ms", scope["method"], printable(scope["path"]), status,
                     (time.perf_counter() - started) * 1000)

    async def _crash_reply(self, scope: Scope, send: Send) -> None:
        if scope["path"].startswith("/api/"):
            body, kind = json.dumps({"detail": CRASH_MESSAGE}).encode(), "application/json"
        else:
            try:
                body, kind = await self.crash_page(scope)
            except Exception as error:  # noqa: BLE001 - the page itself failed: plain text
                log.error("the error page failed: %s", crash_site(error))
                body, kind = CRASH_MESSAGE.encode(), "text/plain; charset=utf-8"
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", kind.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        closed = False

        async def tracking_send(message: Message) -> None:
            nonlocal closed
            if message["type"] in ("websocket.close", "websocket.http.response.start"):
                closed = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:  # noqa: BLE001 - as for HTTP: one log line, a clean close
            log.error("WS %s failed: %s", printable(scope["path"]), crash_site(error))
            if not closed:
                try:
                    await send({"type": "websocket.close", "code": 1011,
                                "reason": "Internal error."})
                except Exception:  # noqa: BLE001 - the client is already gone
                    pass


class BodyLimit:
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
        body = json.dumps({"detail": f"The upload is larger than the limit of {limit:g} MB."}
                          ).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class CompressAssets:
    """gzip (Starlette's ``GZipMiddleware``) for the requests whose path matches ``paths``
    and the replies that are not HTML; every other request passes untouched.

    Args:
        app: the ASGI app.
        paths: the paths that may be compressed (whole path), ``COMPRESSED_PATHS`` by default.
        minimum_size: bodies under this many bytes go as they are.
    """

    def __init__(self, app: ASGIApp, *, paths: re.Pattern[str] = COMPRESSED_PATHS,
                 minimum_size: int = 500) -> None:
        self.app = app
        self.paths = paths
        self.minimum_size = minimum_size
        self._gzip = GZipMiddleware(app, minimum_size=minimum_size, exclude_content_types=(
            *DEFAULT_EXCLUDED_CONTENT_TYPES, "text/html"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.paths.fullmatch(scope["path"]):
            await self._gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def add_transport_middleware(app: Starlette) -> None:
    """Add ``CompressAssets`` around ``app``'s other middleware (call after adding them)."""
    app.add_middleware(CompressAssets)
