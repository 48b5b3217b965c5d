"""Fuzz fixtures: a bounded worker for CLI and image-reader inputs; an in-process server with
a logged-in client, whose exceptions are kept as a server log would keep them."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from fuzz.sandbox import Sandbox
from fuzz.web import seed_records
from neopain.server import security
from neopain.store import crud
from server.conftest import PASSWORD, Server, list_routes, make_server

class ServerLog:
    """The app, wrapped as uvicorn runs it: an exception is logged with its traceback (and a
    WebSocket closed with 1011, as uvicorn does) instead of reaching the test client."""

    def __init__(self, app) -> None:
        self.app = app
        self.text = ""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as error:
            self.text += "".join(traceback.format_exception(error))
            if scope["type"] != "websocket":
                raise
            try:
                await send({"type": "websocket.close", "code": 1011})
            except Exception:  # already closed: nothing more to tell the client
                pass

    def read(self) -> str:
        """The log written since the last call."""
        text, self.text = self.text, ""
        return text


@dataclass
class FuzzServer:
    server: Server
    client: TestClient
    log: ServerLog
    known: dict[str, list[int]]

    @property
    def ids(self) -> list[int]:
        return sorted({i for values in self.known.values() for i in values})

    def routes(self) -> list[tuple[str, str]]:
        return list_routes(self.server.app)


def logged_in(server: Server, log: ServerLog) -> TestClient:
    """A client of ``log``'s app, logged in as the admin ``fuzz``, sending the CSRF token."""
    client = TestClient(log, base_url="http://testserver", raise_server_exceptions=False)
    with server.db() as db:
        crud.create_user(db, username="fuzz", role="admin",
                         password_hash=security.hash_password(PASSWORD))
    response = client.post("/api/login", json={"username": "fuzz", "password": PASSWORD})
    assert response.status_code == 200, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory) -> FuzzServer:
    """One in-process server per module (the fast fake model, the real face detector) with
    two patients, live sessions, an upload and its assessment."""
    server = make_server(tmp_path_factory.mktemp("fuzz-server"), timeline_interval_s=0.0)
    log = ServerLog(server.app)
    client = logged_in(server, log)
    return FuzzServer(server, client, log, seed_records(client))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A worker for CLI and image-reader inputs: 10 s is a hang; over 1 s or 200 MB, a bomb
    (the issue's bound for refusing one)."""
    with Sandbox(tmp_path_factory.mktemp("sandbox"), bound_s=10.0, slow_s=1.0,
                 heavy_mb=200.0) as box:
        yield box
