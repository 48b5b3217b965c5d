"""What the HTTP/WebSocket audit found (issue 16): ids beyond the database's range, crashes
answered without the security headers and with a traceback in the log, TLS without HSTS."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from neopain.server import security
from neopain.server.deps import MAX_ROW_ID
from neopain.store import crud

HUGE = "99999999999999999999999"  # beyond 64 bits: the driver overflowed and the route gave 500
ID_PATHS = [
    f"/api/patients/{HUGE}", f"/patients/{HUGE}", f"/patients/{HUGE}/profile",
    f"/api/sessions/{HUGE}", f"/api/sessions/{HUGE}/assessments",
    f"/assessments/{HUGE}/snapshot.jpg", f"/sessions/{HUGE}/timeline.svg",
    f"/api/patients/{MAX_ROW_ID + 1}", "/api/patients/0", "/api/patients/-1",
    f"/api/patients?offset={HUGE}", "/api/patients?offset=1e23", "/api/patients?offset=-1",
]


@pytest.mark.parametrize("path", ID_PATHS)
def test_ids_outside_the_database_range_are_422_or_404_never_500(server, caplog, path):
    """The audit: integer ids beyond 64 bits answered 500 with a traceback in the log."""
    caplog.set_level(logging.INFO)
    response = server.client("admin").get(path)
    assert response.status_code in (404, 422), response.text
    assert "Traceback" not in caplog.text


def test_the_largest_valid_id_is_a_plain_404(server):
    response = server.client("admin").get(f"/api/patients/{MAX_ROW_ID}")
    assert response.status_code == 404
    assert response.json()["detail"] == f"No patient with id {MAX_ROW_ID}."


def test_a_websocket_to_an_id_beyond_the_range_is_closed_not_crashed(server, caplog):
    caplog.set_level(logging.INFO)
    client = server.client("admin")
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect(f"/ws/sessions/{HUGE}") as socket:
            socket.receive_json()
    assert closed.value.code in (1008, 4404)
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("path", ["/patients?q=Silva", "/api/patients?q=Silva"])
def test_a_crash_is_a_500_with_the_security_headers_and_no_traceback(server, caplog,
                                                                     monkeypatch, path):
    """The audit: 500 replies lacked the security headers and Cache-Control, and the log held
    the full traceback, whose last line quoted the exception's text."""
    caplog.set_level(logging.DEBUG)
    client = server.client("clinician")

    def crash(*args, **kwargs):
        raise RuntimeError("cannot find Baby Silva")

    monkeypatch.setattr(crud, "search_patients", crash)
    quiet = TestClient(server.app, raise_server_exceptions=True, cookies=client.cookies)
    response = quiet.get(path)  # raise_server_exceptions: nothing escapes the app
    assert response.status_code == 500 and "Silva" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1 and logged[0].exc_info is None
    message = logged[0].getMessage()
    # where: the innermost frame inside neopain (the route that called the failing function)
    assert "RuntimeError at neopain/server/routes/" in message and "Silva" not in message


def test_pages_and_api_are_no_store_and_static_assets_may_be_cached(server):
    client = server.client("clinician")
    assert client.get("/api/me").headers["cache-control"] == "no-store"
    assert client.get("/patients").headers["cache-control"] == "no-store"
    static = client.get("/static/app.css")
    assert static.status_code == 200 and "no-store" not in static.headers.get("cache-control", "")


def test_hsts_is_sent_over_https_only(server):
    secure = TestClient(server.app, base_url="https://testserver").get("/login")
    plain = TestClient(server.app, base_url="http://testserver").get("/login")
    assert secure.headers["strict-transport-security"].startswith("max-age=")
    assert "strict-transport-security" not in plain.headers


def test_concurrent_wrong_logins_check_exactly_the_limit_across_server_processes(tmp_path, make,
                                                                                 monkeypatch):
    """The audit: the attempt was counted after the slow password check, so 30 simultaneous
    wrong passwords for one username were all checked. Two apps on one database stand for two
    server processes; every password check is slowed so that all requests overlap."""
    first = make(tmp_path)
    second = make(tmp_path)  # same data_dir: same SQLite file, its own limiter
    with first.db() as db:
        crud.create_user(db, username="nurse", role="clinician",
                         password_hash=security.hash_password("correct horse battery"))
    checked, lock = [], threading.Lock()
    real_verify = security.verify_password

    def slow_verify(password_hash, password):
        with lock:
            checked.append(password)
        time.sleep(0.3)
        return real_verify(password_hash, password)

    monkeypatch.setattr(security, "verify_password", slow_verify)
    clients = [first.client(), second.client()]

    def attempt(index):
        return clients[index % 2].post("/api/login", json={"username": "nurse",
                                                           "password": f"wrong {index:04d}!!"})

    with ThreadPoolExecutor(max_workers=30) as pool:
        statuses = sorted(r.status_code for r in pool.map(attempt, range(30)))
    limit = first.settings.login_attempts
    assert len(checked) == limit
    assert statuses == [401] * limit + [429] * (30 - limit)
