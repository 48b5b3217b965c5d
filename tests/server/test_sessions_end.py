"""Sessions end themselves (issue 19): a live session that gets no frame for
``NEOPAIN_SESSION_IDLE_S`` is ended by the server, once, with an audit row by the system; a
session left open before a restart is ended by the start-up sweep; a connected stream that
sends frames, even frames without a face, is not ended; a reconnection, and only a
reconnection, is audited as a resume."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from neopain.server import alarm_engine, sweeper
from neopain.store import crud
from neopain.store.tables import AuditEntry, MonitoringSession, utc_now
from live_client import live_socket





def stream(socket, frames, pattern: str) -> list[dict]:
    """Send one frame per letter (n: no pain, x: no face); the replies."""
    replies = []
    for letter in pattern:
        frame = frames.no_face() if letter == "x" else frames.face()
        socket.send_bytes(frames.jpeg(frame))
        replies.append(socket.receive_json())
    return replies


def open_live_session(server) -> int:
    client = server.client("clinician")
    patient = client.post("/api/patients", json={"record_number": "HC-1"}).json()
    return client.post(f"/api/patients/{patient['id']}/sessions").json()["id"]


def backdate(server, session_id: int, *, hours: float = 1.0) -> None:
    """Make the session look started, and last seen, ``hours`` ago."""
    then = utc_now() - timedelta(hours=hours)
    with server.db() as db:
        db.execute(update(MonitoringSession).where(MonitoringSession.id == session_id)
                   .values(started_at=then, last_seen_at=then))
        db.commit()


def idle_stops(server, session_id: int) -> list[AuditEntry]:
    with server.db() as db:
        return list(db.scalars(select(AuditEntry).where(
            AuditEntry.action == "stop", AuditEntry.object_id == session_id,
            AuditEntry.username == "system")))


def ended(server, session_id: int) -> bool:
    with server.db() as db:
        return crud.get_session(db, session_id).ended_at is not None


def test_a_session_open_before_a_restart_is_ended_by_the_start_up_sweep(tmp_path, make):
    before = make(tmp_path, session_idle_s=300.0)
    session_id = open_live_session(before)
    backdate(before, session_id)  # the server crashed an hour ago with the session open
    after = make(tmp_path, session_idle_s=300.0)  # the restart, on the same database
    assert not ended(after, session_id)
    with TestClient(after.app):  # the app's lifespan: start-up, then shutdown
        assert ended(after, session_id)
    [row] = idle_stops(after, session_id)
    assert "no frame for 3600 s" in row.detail
    with TestClient(make(tmp_path, session_idle_s=300.0).app):  # a second restart: still once
        pass
    assert len(idle_stops(after, session_id)) == 1


def test_the_background_sweep_ends_a_session_that_goes_quiet(tmp_path, make, monkeypatch):
    monkeypatch.setattr(sweeper, "sweep_interval_s", lambda idle_s: 0.05)
    # the alarm engine judges once, at start-up, then not again: on a busy machine its next
    # tick could raise the quiet session's link alarm before the sweep ran, and a session with
    # an unacknowledged alarm is (rightly) never swept
    monkeypatch.setattr(alarm_engine, "TICK_S", 3600.0)
    server = make(tmp_path, session_idle_s=300.0)
    with TestClient(server.app):
        session_id = open_live_session(server)
        assert not ended(server, session_id)
        backdate(server, session_id)  # no frame for an hour
        deadline = time.monotonic() + 10
        while not ended(server, session_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ended(server, session_id)
    assert len(idle_stops(server, session_id)) == 1


def test_a_connected_stream_sending_frames_is_not_ended(server, frames):
    session_id = open_live_session(server)
    quiet_id = open_live_session(server)
    client = server.client("clinician")
    with live_socket(client, session_id) as socket:
        backdate(server, session_id)
        backdate(server, quiet_id)
        stream(socket, frames, "xxx")  # frames without a face are frames too
        with server.db() as db:
            ended_now = crud.end_idle_sessions(db, idle_s=300.0)
        assert [s.id for s in ended_now] == [quiet_id]
        assert stream(socket, frames, "n")[0]["type"] == "assessment"
    assert not ended(server, session_id)


def test_a_stream_whose_session_the_sweep_ended_is_told_it_stopped(server, frames):
    session_id = open_live_session(server)
    client = server.client("clinician")
    with live_socket(client, session_id) as socket:
        stream(socket, frames, "n")
        backdate(server, session_id)
        with server.db() as db:
            crud.end_idle_sessions(db, idle_s=300.0)
        socket.send_bytes(frames.jpeg(frames.face()))
        assert socket.receive_json()["type"] == "stopped"


@pytest.mark.parametrize("connections", [1, 2, 3])
def test_only_reconnections_are_audited_as_resume(server, frames, connections):
    session_id = open_live_session(server)
    client = server.client("clinician")
    for _ in range(connections):
        with live_socket(client, session_id) as socket:
            stream(socket, frames, "n")
    with server.db() as db:
        resumes = db.query(AuditEntry).filter_by(action="resume", object_id=session_id).count()
    assert resumes == connections - 1
