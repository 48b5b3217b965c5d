"""What the HTTP/WebSocket audit found (issue 16): ids beyond the database's range, crashes
answered without the security headers and with a traceback in the log, TLS without HSTS."""

from __future__ import annotations

import logging
from pathlib import Path
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
    # two data folders, one records database (database_url): the limit is shared through it
    first = make(tmp_path / "a")
    second = make(tmp_path / "b")
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


def test_the_records_database_is_private_to_its_owner(tmp_path):
    """The audit: the SQLite file was created 0644 in a 0755 folder."""
    import os
    import stat

    from neopain.store.session import open_store

    from sqlalchemy import text

    folder = tmp_path / "data" / "neopain"
    factory = open_store(f"sqlite:///{folder / 'records.sqlite3'}")
    with factory() as db:  # an open connection keeps the -wal and -shm files
        db.execute(text("SELECT 1"))
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(folder.parent).st_mode) == 0o700
        for name in ("records.sqlite3", "records.sqlite3-wal", "records.sqlite3-shm"):
            assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600, name
    shared = tmp_path / "shared"  # a folder the operator made: its mode is theirs
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    open_store(f"sqlite:///{shared / 'records.sqlite3'}")
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o755


def test_a_query_string_cannot_put_text_in_the_notice_bar_but_a_flash_can(server, frames):
    """The audit: ``?message=`` put any text into a patient page's alert bar (a link could make
    a page say "Dose 10x"). Notices now travel in a signed cookie, shown once."""
    import cv2

    client = server.client("clinician")
    patient_id = client.post("/api/patients", json={"record_number": "HC-3"}).json()["id"]
    page = client.get(f"/patients/{patient_id}", params={"message": "Give 10x the dose"})
    assert "Give 10x the dose" not in page.text
    photo = cv2.imencode(".jpg", frames.face())[1].tobytes()
    done = client.post(f"/patients/{patient_id}/upload",
                       files={"file": ("a.jpg", photo, "image/jpeg")})
    assert done.status_code == 200  # followed the redirect to the history
    assert "The image was assessed (a face found); 1 assessment saved." in done.text
    assert "was assessed" not in client.get(f"/patients/{patient_id}").text  # once only
    client.cookies.set("neopain_flash", "forged-notice")
    assert "forged" not in client.get(f"/patients/{patient_id}").text


def test_serve_trusts_no_proxy_unless_told(tmp_path, monkeypatch, make):
    """The audit: uvicorn trusted X-Forwarded-For from 127.0.0.1 by default, so any process on
    the server could pose as any client address (and dodge the per-address login limit)."""
    import uvicorn
    from typer.testing import CliRunner

    from neopain.server import model as model_module
    from neopain.cli.app import app as neopain_app

    runs = []
    monkeypatch.setattr(model_module, "load_live_predictor", lambda settings: make(tmp_path / "x")
                        .predictor)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append(options))
    monkeypatch.setenv("NEOPAIN_DATA_DIR", str(tmp_path))
    for arguments in (["serve"], ["serve", "--forwarded-allow-ips", "10.0.0.5"]):
        assert CliRunner().invoke(neopain_app, arguments).exit_code == 0
    assert runs[0]["proxy_headers"] is False and runs[0]["forwarded_allow_ips"] == ""
    assert runs[1]["proxy_headers"] is True and runs[1]["forwarded_allow_ips"] == "10.0.0.5"


@pytest.mark.parametrize("name", ["\x1f", " \x1c\x1d "])
def test_a_name_of_control_characters_only_is_refused_with_422(server, name):
    """Found by the fuzzer: pydantic's strip kept "\\x1f", the store's did not, and the store's
    refusal surfaced as a 500."""
    client = server.client("clinician")
    response = client.post("/api/patients", json={"name": name})
    assert response.status_code == 422
    page = client.post("/patients", data={"name": name, "csrf_token": client.csrf})
    assert page.status_code == 422 and "name or a record number" in page.text


def test_a_deeply_nested_text_command_is_ignored_and_the_stream_goes_on(server, frames):
    """Found by the fuzzer: 100,000 "[" sent as a text message raised RecursionError and
    closed the stream (1011)."""
    client = server.client("clinician")
    patient_id = client.post("/api/patients", json={"record_number": "HC-4"}).json()["id"]
    session_id = client.post(f"/api/patients/{patient_id}/sessions").json()["id"]
    with client.websocket_connect(f"/ws/sessions/{session_id}") as socket:
        assert socket.receive_json() == {"type": "ready"}
        socket.send_text("[" * 100_000)
        socket.send_text('{"type": "options", "heatmap": ' + "[" * 50 + "]" * 50 + "}")
        socket.send_bytes(frames.jpeg(frames.face()))
        assert socket.receive_json()["type"] == "assessment"


def test_a_newline_in_a_path_cannot_forge_a_log_line(server, caplog):
    caplog.set_level(logging.INFO)
    server.client().get("/nothing%0AGET /api/patients 200 1 ms")
    lines = [r.getMessage() for r in caplog.records if r.name == "neopain.server"]
    assert lines and all("\n" not in line for line in lines)
    assert any("/nothing\\nGET" in line for line in lines)


def test_the_upload_form_passes_on_retry_after_when_busy(server, frames, monkeypatch):
    from neopain.server.deps import AccessError
    from neopain.server.live import LiveService

    def busy(self):
        raise AccessError(503, "The server is busy assessing other uploads.",
                          headers={"Retry-After": "10"})

    monkeypatch.setattr(LiveService, "upload_slot", busy)
    client = server.client("clinician")
    patient_id = client.post("/api/patients", json={"record_number": "HC-8"}).json()["id"]
    import cv2

    photo = cv2.imencode(".jpg", frames.face())[1].tobytes()
    page = client.post(f"/patients/{patient_id}/upload",
                       files={"file": ("a.jpg", photo, "image/jpeg")})
    assert page.status_code == 503 and page.headers["retry-after"] == "10"


def test_a_page_with_an_impossible_id_says_it_does_not_exist_in_words_a_nurse_reads(server):
    """Seen in chromium: /patients/99999999999999999999999 showed "Not saved: patient_id: Input
    should be less than or equal to 2147483647" on a page that saved nothing."""
    client = server.client("clinician")
    for path, says in ((f"/patients/{HUGE}", f"no patient with id {HUGE}"),
                       ("/patients/0/live", "no patient with id 0"),
                       (f"/sessions/{HUGE}/timeline.svg", "no session with id 9999")):
        page = client.get(path)
        assert page.status_code == 404 and "This page does not exist: " + says in page.text
        assert "Not saved" not in page.text and "2147483647" not in page.text
    assert client.get(f"/api/patients/{HUGE}").status_code == 422  # the API keeps its schema


def test_the_login_page_says_why_monitoring_stopped_when_the_live_page_sends_a_nurse_there(
        server):
    """Seen in chromium: deactivated mid-stream, the nurse landed on a bare login page with no
    word on why monitoring had stopped. The text is fixed; the address only selects it."""
    from neopain.server.routes.auth import LOGIN_ENDED

    server.client("clinician")  # an account exists, so /login does not send to /setup
    page = server.client().get("/login", params={"ended": "1", "next": "/patients/1/live"})
    assert page.status_code == 200 and LOGIN_ENDED in page.text
    assert LOGIN_ENDED not in server.client().get("/login").text
    script = (Path(__file__).parents[2] / "src/neopain/server/static/live.js").read_text()
    assert "/login?ended=1&next=" in script
