"""The server as it runs for real (uvicorn, real sockets): a slow model never blocks other
requests, SIGKILL mid-stream loses no assessment the client was told was saved, and
``neopain serve`` says where to open the page and how to make the first user."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner
from websockets.sync.client import connect

from ports import free_port
from neopain.config import Settings
from neopain.server import security
from neopain.server.app import create_app
from neopain.store import crud
from neopain.store.session import open_store

PASSWORD = "correct horse battery"


def add_user(url: str) -> None:
    with open_store(url)() as db:
        crud.create_user(db, username="nurse", role="clinician",
                         password_hash=security.hash_password(PASSWORD))


def log_in(base: str) -> tuple[httpx.Client, str]:
    """An HTTP client logged in as the nurse, and the Cookie header for the WebSocket."""
    client = httpx.Client(base_url=base, timeout=30)
    for _ in range(300):
        try:
            client.get("/login")
            break
        except httpx.TransportError:
            time.sleep(0.1)
    response = client.post("/api/login", json={"username": "nurse", "password": PASSWORD})
    response.raise_for_status()
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client, f"neopain_session={client.cookies['neopain_session']}"


def start_session(client: httpx.Client) -> int:
    patient = client.post("/api/patients", json={"record_number": "HC-9"}).json()
    return client.post(f"/api/patients/{patient['id']}/sessions").json()["id"]


def test_a_slow_model_never_blocks_other_requests(tmp_path, make, frames):
    server = make(tmp_path)
    inner = server.predictor.predict_crops

    def slow(crops):
        time.sleep(1.5)
        return inner(crops)

    server.predictor.predict_crops = slow
    add_user(server.settings.records_url())
    port = free_port()
    runner = uvicorn.Server(uvicorn.Config(server.app, host="127.0.0.1", port=port,
                                           log_level="warning", ws="websockets-sansio"))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        client, cookie = log_in(f"http://127.0.0.1:{port}")
        session_id = start_session(client)
        with connect(f"ws://127.0.0.1:{port}/ws/sessions/{session_id}",
                     additional_headers={"Cookie": cookie}) as stream:
            assert json.loads(stream.recv(timeout=30)) == {"type": "ready"}
            stream.send(frames.jpeg(frames.face()))
            time.sleep(0.3)  # the frame is now in the model
            started = time.perf_counter()
            assert client.get("/api/me").status_code == 200
            assert client.get("/instructions").status_code == 200
            elapsed = time.perf_counter() - started
            assert json.loads(stream.recv(timeout=30))["found"]
        assert elapsed < 0.8, f"other requests waited {elapsed:.2f} s for the model"
    finally:
        runner.should_exit = True
        thread.join(timeout=10)


SERVER = textwrap.dedent("""
    import sys
    import uvicorn
    from neopain.config import Settings
    from neopain.faces.crop import CropRule
    from neopain.prediction import Prediction, Predictor
    from neopain.server.app import create_app

    class Alternating(Predictor):
        name = "alternating"
        crop = CropRule.whole_image()

        def __init__(self):
            self.calls = 0

        def predict_crops(self, crops):
            self.calls += 1
            prob = 0.9 if (self.calls // 6) % 2 else 0.1  # a change of state every 6 frames
            return [Prediction(prob, "pain" if prob > 0.5 else "nopain", 0.5, self.name)
                    for _ in crops]

    settings = Settings(database_url=sys.argv[1], timeline_interval_s=0)
    uvicorn.run(create_app(settings, predictor=Alternating()), host="127.0.0.1",
                port=int(sys.argv[2]), log_level="warning", ws="websockets-sansio")
""")


def test_sigkill_mid_stream_loses_no_assessment_reported_saved(tmp_path, frames):
    path = tmp_path / "records.sqlite3"
    url = f"sqlite:///{path}"
    add_user(url)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVER, url, str(port)])
    saved: list[int] = []
    try:
        client, cookie = log_in(f"http://127.0.0.1:{port}")
        session_id = start_session(client)
        picture = frames.jpeg(frames.face())
        with connect(f"ws://127.0.0.1:{port}/ws/sessions/{session_id}",
                     additional_headers={"Cookie": cookie}) as stream:
            assert json.loads(stream.recv(timeout=30)) == {"type": "ready"}
            while len(saved) < 40:
                stream.send(picture)
                reply = json.loads(stream.recv(timeout=30))
                if reply["saved"]:
                    saved.append(reply["assessment_id"])
            stream.send(picture)  # in flight when the server dies
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            try:
                reply = json.loads(stream.recv(timeout=5))
                if reply.get("saved"):
                    saved.append(reply["assessment_id"])
            except Exception:  # noqa: BLE001 - the connection died with the server: expected
                pass
    finally:
        process.kill()
        process.wait()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {row[0] for row in connection.execute("SELECT id FROM assessments")}
        snapshots = connection.execute("SELECT count(*) FROM assessments WHERE has_snapshot"
                                       ).fetchone()[0]
    assert set(saved) <= stored
    assert snapshots >= 4  # the state changed every 6 frames: snapshots were written too
    with open_store(url)() as db:  # opens and migrates cleanly afterwards
        assert crud.get_session(db, session_id).ended_at is None


def test_serve_prints_where_to_open_and_how_to_make_the_first_user(tmp_path, monkeypatch,
                                                                   make):
    from neopain.server import model as model_module
    from neopain.cli.app import app as neopain_app

    fake = make(tmp_path / "unused").predictor
    started = {}
    monkeypatch.setattr(model_module, "load_live_predictor", lambda settings: fake)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.update(options))
    monkeypatch.setenv("NEOPAIN_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(neopain_app, ["serve", "--port", "8123"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "http://localhost:8123/" in result.output
    assert "neopain users create --username NAME --role admin" in result.output
    assert str(tmp_path / "records.sqlite3") in result.output
    assert started["port"] == 8123 and started["access_log"] is False
    assert fake.closed


def test_serve_with_an_account_does_not_offer_setup(tmp_path, monkeypatch, make):
    from neopain.server import model as model_module
    from neopain.cli.app import app as neopain_app

    add_user(f"sqlite:///{tmp_path / 'records.sqlite3'}")
    monkeypatch.setattr(model_module, "load_live_predictor", lambda settings: make(tmp_path / "x")
                        .predictor)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    monkeypatch.setenv("NEOPAIN_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(neopain_app, ["serve"], terminal_width=200)
    assert result.exit_code == 0 and "No account" not in result.output


def test_settings_pick_sqlite_in_the_data_folder_by_default(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert settings.records_url() == f"sqlite:///{tmp_path / 'records.sqlite3'}"
    live = create_app(settings).state.live
    try:  # no model named: the default kind, the NFCS scorer
        assert settings.model is None and live.model_name() == "nfcs"
    finally:
        live.close()
    assert (tmp_path / "records.sqlite3").exists()


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")
