"""Two ``neopain serve`` processes started at once on one new PostgreSQL database, as behind a
load balancer: one login and its CSRF token used at both, and a live stream on each, with the
real model (the NFCS scorer on the astronaut's face, at rest on one bed and warped into pain on
the other). Every assessment a client was told was saved is
stored exactly once, nothing else is stored, and the bed in pain raises one pain alarm although
both processes' alarm engines judge the ward twice a second."""

from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import pytest
from sqlalchemy import select
from websockets.sync.client import connect

from neopain.store import crud
from neopain.store.session import open_store
from neopain.store.tables import Alarm, Assessment
from ports import free_port
from server.test_server_process import add_user, log_in

PAIN_S = 5.0  # NEOPAIN_ALARM_PAIN_S: the shortest the settings allow
FRAMES = 60  # per bed, about 5 a second: the pain bed holds pain well past PAIN_S


@pytest.fixture(scope="module")
def bed_frames() -> dict[str, bytes]:
    """JPEG frames: ``rest`` (the astronaut) and ``pain`` (her face warped into pain)."""
    from e2e.test_bedside import on_canvas
    from face_warps import pain_face
    from skimage import data

    from neopain.faces.landmarks import FaceMesh

    neutral = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    with FaceMesh() as mesh:
        pain = pain_face(neutral, mesh.landmarks(neutral))
    return {name: cv2.imencode(".jpg", on_canvas(face, dx=0, dy=0))[1].tobytes()
            for name, face in (("rest", neutral), ("pain", pain))}


def start_serve(script, *, url: str, port: int, folder) -> subprocess.Popen:
    env = {**os.environ, "NEOPAIN_DATA_DIR": str(folder), "NEOPAIN_TIMELINE_INTERVAL_S": "0",
           "NEOPAIN_ALARM_PAIN_S": str(PAIN_S), "NEOPAIN_LOG_LEVEL": "WARNING"}
    env.pop("NEOPAIN_DATABASE_URL", None)
    with (folder.parent / f"serve-{port}.log").open("wb") as log:  # read when it failed
        return subprocess.Popen([str(script), "serve", "--db", url, "--port", str(port)],
                                env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)


def answering(base: str) -> None:
    """Wait (up to 120 s) until the server at ``base`` answers."""
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"{base}/login", timeout=10)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stream(port: int, cookie: str, session_id: int, frame: bytes, saved: list[int],
           states: list[str]) -> None:
    """Send ``FRAMES`` frames, one at a time, noting each saved assessment's id and state."""
    with connect(f"ws://127.0.0.1:{port}/ws/sessions/{session_id}",
                 additional_headers={"Cookie": cookie}) as socket:
        assert json.loads(socket.recv(timeout=60)) == {"type": "ready"}
        for _ in range(FRAMES):
            socket.send(frame)
            while True:  # notices may come between the replies
                reply = json.loads(socket.recv(timeout=60))
                if reply["type"] == "assessment":
                    break
            if reply["saved"]:
                saved.append(reply["assessment_id"])
            states.append(reply["state"])
            time.sleep(0.2)


@pytest.mark.slow
def test_two_serve_processes_on_one_postgresql(postgres_url, neopain_script, tmp_path,
                                               bed_frames):
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    # both start at once on the empty database: one migrates it, the other waits for it
    servers = [start_serve(neopain_script, url=postgres_url, port=port, folder=tmp_path / str(i))
               for i, port in enumerate(ports)]
    try:
        for base in bases:
            answering(base)
        add_user(postgres_url)
        # one login, used at both processes: its cookie and CSRF token hold at either
        first, cookie = log_in(bases[0])
        second = httpx.Client(base_url=bases[1], timeout=30, cookies=first.cookies,
                              headers={"X-CSRF-Token": first.headers["X-CSRF-Token"]})
        beds = {}
        for name, client in (("pain", first), ("rest", second)):
            patient = client.post("/api/patients", json={"record_number": f"HC-{name}"})
            assert patient.status_code == 201, patient.text
            session = client.post(f"/api/patients/{patient.json()['id']}/sessions")
            assert session.status_code == 201, session.text
            beds[name] = session.json()["id"]
        saved = {"pain": [], "rest": []}
        states = {"pain": [], "rest": []}
        with ThreadPoolExecutor(2) as pool:  # result(): a stream's error is raised here
            streams = [pool.submit(stream, port, cookie, beds[name], bed_frames[name],
                                   saved[name], states[name])
                       for name, port in (("pain", ports[0]), ("rest", ports[1]))]
            for future in streams:
                future.result(timeout=300)
        time.sleep(2.0)  # four more ticks of each alarm engine
        for server in servers:
            assert server.poll() is None, (tmp_path / f"serve-{server.args[-1]}.log").read_text()
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    assert states["pain"][-1] == "pain" and "pain" not in states["rest"], states
    with open_store(postgres_url)() as db:
        for name, session_id in beds.items():
            stored = db.scalars(select(Assessment.id)
                                .where(Assessment.session_id == session_id)).all()
            assert sorted(stored) == sorted(saved[name]), name  # each once, nothing else
            assert len(saved[name]) == len(set(saved[name])) >= FRAMES - 2
        alarms = db.scalars(select(Alarm).where(Alarm.rule == "pain")).all()
        assert [alarm.session_id for alarm in alarms] == [beds["pain"]]
        assert crud.get_session(db, beds["rest"]).ended_at is None
