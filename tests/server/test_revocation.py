"""Revocation that bites (issue 16): the audit deactivated an account while its live stream was
open; the API answered 401 at once, but the stream went on and saved 4 more assessments."""

from __future__ import annotations

import threading
import time

import pytest
from starlette.websockets import WebSocketDisconnect

from neopain.server import security
from neopain.store import crud

PASSWORD = "correct horse battery"


@pytest.fixture()
def live(server):
    """(clinician client, session id) of a new patient's live session."""
    client = server.client("clinician")
    patient = client.post("/api/patients", json={"record_number": "HC-9"}).json()
    return client, client.post(f"/api/patients/{patient['id']}/sessions").json()["id"]


def _deactivate(server):
    with server.db() as db:
        crud.update_user(db, crud.find_user(db, "clinician"), actor=None, active=False)


NEW_HASH = security.hash_password(PASSWORD + "!")  # hashed once, outside the timed part


def _new_password(server):
    with server.db() as db:
        crud.update_user(db, crud.find_user(db, "clinician"), actor=None, password_hash=NEW_HASH)


def _researcher(server):
    with server.db() as db:
        crud.update_user(db, crud.find_user(db, "clinician"), actor=None, role="researcher")


def receive(socket, *, within: float = 3.0):
    """The next message as JSON, or the disconnect raised, or a failure after ``within``
    seconds (without a fix the stream stays open, and the test must fail, not hang)."""
    outcome: list = []

    def read():
        try:
            outcome.append(("message", socket.receive_json()))
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            outcome.append(("error", error))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(within)
    if not outcome:
        pytest.fail(f"the stream sent nothing and stayed open for {within} s")
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


def _saved(server, session_id: int) -> int:
    with server.db() as db:
        return crud.count_assessments(db, session_id=session_id)


def _logout(client):
    assert client.post("/api/logout").status_code == 204


@pytest.mark.parametrize(("revoke", "code"), [
    (_deactivate, 4401), (_new_password, 4401), (_researcher, 4403), ("logout", 4401),
])
def test_an_idle_stream_is_closed_within_a_second_of_revocation(server, live, frames, revoke,
                                                                 code):
    client, session_id = live
    with client.websocket_connect(f"/ws/sessions/{session_id}") as socket:
        assert socket.receive_json() == {"type": "ready"}
        socket.send_bytes(frames.jpeg(frames.face()))
        assert socket.receive_json()["saved"] is True
        revoked_at = time.monotonic()
        if revoke == "logout":
            _logout(client)
        else:
            revoke(server)  # as another server process or the users CLI would: in the database
        reply = receive(socket)
        with pytest.raises(WebSocketDisconnect) as closed:
            receive(socket)
        took = time.monotonic() - revoked_at
    assert reply["type"] == "refused" and reply["code"] == code
    assert closed.value.code == code
    assert took < 1.0
    assert _saved(server, session_id) == 1


def test_no_frame_is_saved_after_a_deactivation_that_lands_mid_frame(server, live, frames,
                                                                     monkeypatch):
    """The account is deactivated while a frame is being assessed, after the frame's own check:
    the check in the saving transaction must still refuse it (the twice-a-second check is
    slowed down here, so that it cannot be the one that answers)."""
    from neopain.server.routes import live as live_route

    monkeypatch.setattr(live_route, "WATCH_INTERVAL_S", 60.0)
    client, session_id = live
    predict = server.predictor.predict_crops
    armed, calls = [], []

    def predict_then_deactivate(crops):
        if armed:
            calls.append(1)
            _deactivate(server)
        return predict(crops)

    monkeypatch.setattr(server.predictor, "predict_crops", predict_then_deactivate)
    with client.websocket_connect(f"/ws/sessions/{session_id}") as socket:
        assert socket.receive_json() == {"type": "ready"}
        replies = []
        for _ in range(2):
            socket.send_bytes(frames.jpeg(frames.face()))
            replies.append(socket.receive_json())
        assert all(r["saved"] for r in replies)
        armed.append(True)
        socket.send_bytes(frames.jpeg(frames.face()))
        refused = receive(socket)
        with pytest.raises(WebSocketDisconnect) as closed:
            receive(socket)
    assert calls, "the third frame reached the model"
    assert refused == {"type": "refused", "code": 4401, "reason": "Please log in."}
    assert closed.value.code == 4401
    assert _saved(server, session_id) == 2


def test_streams_beyond_the_cap_are_closed_with_1013_and_a_freed_slot_is_reused(tmp_path, make,
                                                                                frames):
    """The audit: nothing capped concurrent streams."""
    server = make(tmp_path, max_streams=2)
    client = server.client("clinician")
    patient = client.post("/api/patients", json={"record_number": "HC-7"}).json()
    sessions = [client.post(f"/api/patients/{patient['id']}/sessions").json()["id"]
                for _ in range(3)]
    first = client.websocket_connect(f"/ws/sessions/{sessions[0]}")
    second = client.websocket_connect(f"/ws/sessions/{sessions[1]}")
    with first as one, second as two:
        assert one.receive_json() == two.receive_json() == {"type": "ready"}
        with pytest.raises(WebSocketDisconnect) as full, \
                client.websocket_connect(f"/ws/sessions/{sessions[2]}") as third:
            receive(third)
        assert full.value.code == 1013
    with client.websocket_connect(f"/ws/sessions/{sessions[2]}") as third:
        assert third.receive_json() == {"type": "ready"}
    assert server.app.state.live._streams == 0  # every slot given back, none twice
