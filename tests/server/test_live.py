"""The live stream: a reply says ``saved`` only for a committed row; snapshots are taken at the
first face and at each smoothed change of state, never for one odd frame or a face-less frame;
a reconnect resumes the same session without a new snapshot; Stop ends the session."""

from __future__ import annotations


import pytest
from starlette.websockets import WebSocketDisconnect

from neopain.store import crud
from neopain.store.tables import AuditEntry
from live_client import live_socket


@pytest.fixture()
def live(server):
    """(client, session id) for a new patient's live session, as a clinician."""
    client = server.client("clinician")
    patient = client.post("/api/patients", json={"record_number": "HC-1"}).json()
    session = client.post(f"/api/patients/{patient['id']}/sessions").json()
    assert session["websocket"] == f"/ws/sessions/{session['id']}"
    return client, session["id"]




def stream(socket, frames, pattern: str) -> list[dict]:
    """Send one frame per letter (n: no pain, p: pain, x: no face); the replies."""
    replies = []
    for index, letter in enumerate(pattern):
        frame = frames.no_face() if letter == "x" else frames.face(pain=letter == "p",
                                                                    shift=index % 3)
        socket.send_bytes(frames.jpeg(frame))
        replies.append(socket.receive_json())
    return replies


def test_replies_show_face_label_confidence_time_and_save_only_committed_rows(server, live,
                                                                              frames):
    client, session_id = live
    with live_socket(client, session_id) as socket:
        replies = stream(socket, frames, "nnnnnppppppnnnnnn")
        with server.db() as db:  # each reply that said saved: the row is there already
            stored = {a.id for a in crud.list_assessments(db, session_id=session_id)}
    saved = [r["assessment_id"] for r in replies if r["saved"]]
    assert saved and set(saved) == stored
    first = replies[0]
    assert first["found"] and len(first["box"]) == 4 and first["label"] == "nopain"
    assert first["confidence"] == pytest.approx(0.9) and first["ms"] > 0
    assert [r["state"] for r in replies if r["snapshot"]] == ["nopain", "pain", "nopain"]
    with server.db() as db:
        snapshots = crud.list_assessments(db, session_id=session_id, snapshots_only=True)
        assert all(crud.get_assessment(db, s.id, with_snapshot=True).snapshot[:2] == b"\xff\xd8"
                   for s in snapshots)


def test_the_stream_is_ready_before_its_first_frame_and_its_detector_serves_the_next_one(
        server, live, frames, detectors):
    built = detectors.built
    client, session_id = live
    with live_socket(client, session_id) as socket:
        # ready: the detector exists and the model has run once, before any frame
        assert len(built) == 1 and server.predictor.calls == 1
        stream(socket, frames, "nn")
    with live_socket(client, session_id) as socket:
        assert stream(socket, frames, "n")[0]["found"]
    assert len(built) == 1  # the reconnect took the first stream's detector from the pool
    assert server.predictor.calls == 4  # warmed once, not per stream


def test_a_single_odd_frame_makes_no_snapshot(live, frames):
    client, session_id = live
    with live_socket(client, session_id) as socket:
        replies = stream(socket, frames, "nnnnpnnnnpnnnn")
    assert [r["state"] for r in replies if r["snapshot"]] == ["nopain"]
    assert {r["state"] for r in replies} == {"nopain"}


def test_frames_without_a_face_are_answered_but_never_saved(server, live, frames):
    client, session_id = live
    with live_socket(client, session_id) as socket:
        replies = stream(socket, frames, "xxxxxx")
    assert all(not r["found"] and not r["saved"] and r["box"] is None for r in replies)
    with server.db() as db:
        assert crud.count_assessments(db, session_id=session_id) == 0


def test_a_reconnect_resumes_the_session_without_a_new_snapshot(server, live, frames):
    client, session_id = live
    with live_socket(client, session_id) as socket:
        first = stream(socket, frames, "nnnn")
    # the network drops (no stop); the page reconnects to the same session
    with live_socket(client, session_id) as socket:
        second = stream(socket, frames, "nnnnpppppp")
    assert [r["snapshot"] for r in first].count(True) == 1
    assert [r["state"] for r in second if r["snapshot"]] == ["pain"]
    with server.db() as db:
        saved = {r["assessment_id"] for r in first + second if r["saved"]}
        assert {a.id for a in crud.list_assessments(db, session_id=session_id)} == saved
        resumes = db.query(AuditEntry).filter_by(action="resume", object_id=session_id).count()
        assert resumes == 1  # the reconnection; the first connection is the start


def test_stop_ends_the_session_and_it_cannot_be_resumed(server, live, frames):
    client, session_id = live
    with live_socket(client, session_id) as socket:
        stream(socket, frames, "nnn")
        socket.send_text('{"type": "stop"}')
        assert socket.receive_json() == {"type": "stopped", "saved": 3}
    with server.db() as db:
        assert crud.get_session(db, session_id).ended_at is not None
    with pytest.raises(WebSocketDisconnect) as closed, \
            client.websocket_connect(f"/ws/sessions/{session_id}") as socket:
        socket.receive_json()
    assert closed.value.code == 4409


def test_a_stop_from_elsewhere_ends_the_stream(live, frames):
    client, session_id = live
    with live_socket(client, session_id) as socket:
        stream(socket, frames, "nn")
        assert client.post(f"/api/sessions/{session_id}/stop").json()["ended_at"]
        socket.send_bytes(frames.jpeg(frames.face()))
        assert socket.receive_json()["type"] == "stopped"
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
    assert closed.value.code == 4409


def test_timeline_interval_thins_the_record_but_keeps_every_snapshot(tmp_path, make, frames):
    server = make(tmp_path, timeline_interval_s=3600.0)
    client = server.client("clinician")
    patient = client.post("/api/patients", json={"record_number": "HC-2"}).json()
    session_id = client.post(f"/api/patients/{patient['id']}/sessions").json()["id"]
    with live_socket(client, session_id) as socket:
        replies = stream(socket, frames, "nnnnnppppppnnnnnn")
    assert [r["snapshot"] for r in replies if r["saved"]] == [True, True, True]


def test_garbage_frames_get_an_error_reply_and_the_stream_goes_on(live, frames):
    client, session_id = live
    with live_socket(client, session_id) as socket:
        socket.send_bytes(b"not a jpeg")
        assert socket.receive_json()["type"] == "error"
        assert stream(socket, frames, "n")[0]["found"]


def test_evidence_cells_become_circles_over_the_crops_place_in_the_frame():
    import numpy as np

    from neopain.server.heatmap import EVIDENCE_CELLS, cell_regions, evidence_cells

    heat = np.zeros((80, 80), np.float32)
    heat[:10, :10] = 1.0  # the crop's top-left cell only
    cells = evidence_cells(heat)
    assert cells.shape == (EVIDENCE_CELLS, EVIDENCE_CELLS) and cells[0, 0] == 1.0
    # a square reaching past the left edge of the frame
    regions = cell_regions(cells, placement=(-20.0, 10.0, 60.0, 90.0))
    assert regions == [[-15.0, 15.0, 7.5, 1.0]]
    small = np.zeros((80, 80), np.float32)
    small[42:45, 42:45] = 0.6  # a lit spot much smaller than a cell keeps its strength
    assert evidence_cells(small).max() == pytest.approx(0.6, abs=0.05)


def test_a_thread_safe_models_evidence_never_waits_for_another_beds_prediction(tmp_path):
    # the bug guarded: occlusion (64 model calls) ran under the lock that serializes the
    # face mesh, holding up every other bed's frames for up to a second
    import threading

    import numpy as np
    from exported_models import top_left_model

    from neopain.config import Settings
    from neopain.prediction import Prediction, Predictor
    from neopain.server.heatmap import LIVE_EVIDENCE_GRID
    from neopain.server.model import SharedPredictor, load_live_predictor

    class Occluding(Predictor):
        thread_safe = True

        def predict_crops(self, crops):
            return [Prediction(0.1, "nopain", 0.5, "occluding") for _ in crops]

        def evidence(self, crops):
            return [None for _ in crops]

    shared = SharedPredictor(Occluding())
    results = []
    with shared._lock:  # another bed's prediction holds the model
        worker = threading.Thread(target=lambda: results.append(
            shared.evidence([np.zeros((8, 8, 3), np.uint8)])))
        worker.start()
        worker.join(2)
        finished_meanwhile = not worker.is_alive()
    worker.join(5)
    assert finished_meanwhile and results == [[None]]
    model = top_left_model(tmp_path)
    with load_live_predictor(Settings(data_dir=tmp_path, model=str(model))) as live:
        assert live.occlusion_squares == LIVE_EVIDENCE_GRID < 8  # 36 model calls, not 64


def test_heatmap_is_sent_only_when_asked(live, frames):
    client, session_id = live
    with live_socket(client, session_id) as socket:
        assert "heatmap" not in stream(socket, frames, "n")[0]
        socket.send_text('{"type": "options", "heatmap": true}')
        assert stream(socket, frames, "n")[0]["heatmap"] is None  # the fake model has none


def test_an_exported_model_lights_where_its_evidence_is_and_follows_the_face(tmp_path, make,
                                                                            frames):
    # the model's pain logit reads only the top-left quarter of its face crop (any departure
    # from the mean colour), so every lit square must lie there
    from exported_models import top_left_model

    from neopain.export.runtime import OnnxPredictor

    with OnnxPredictor(top_left_model(tmp_path, squared=True)) as model:
        server = make(tmp_path, predictor=model, timeline_interval_s=0.0)
        client = server.client("clinician")
        patient = client.post("/api/patients", json={"record_number": "HC-4"}).json()
        session_id = client.post(f"/api/patients/{patient['id']}/sessions").json()["id"]
        with live_socket(client, session_id) as socket:
            socket.send_text('{"type": "options", "heatmap": true}')
            replies = []
            for shift in (0, 40):  # the face moves 40 pixels right
                socket.send_bytes(frames.jpeg(frames.face(shift=shift)))
                replies.append(socket.receive_json())
    for reply in replies:
        x1, y1, x2, y2 = reply["box"]
        half = (x1 + x2) / 2 + 1, (y1 + y2) / 2 + 1
        circles = reply["heatmap"]
        assert circles and max(weight for *_, weight in circles) == 1.0
        assert all(x < half[0] and y < half[1] for x, y, _, _ in circles), (reply["box"], circles)
    # within the model's evidence interval the grid is reused, placed on the frame's own face
    assert OnnxPredictor.evidence_interval_s > 1
    shift = replies[1]["box"][0] - replies[0]["box"][0]
    assert shift > 30
    assert [c[0] for c in replies[1]["heatmap"]] == pytest.approx(
        [c[0] + shift for c in replies[0]["heatmap"]], abs=1.0)


def test_closed_streams_release_their_thread_and_detector(server, frames, detectors):
    """A monitor runs for weeks: every stream that ends must give back what it took."""
    import threading
    import time

    built, closed = detectors.built, detectors.closed
    client = server.client("clinician")
    patient = client.post("/api/patients", json={"record_number": "HC-3"}).json()
    for _ in range(12):
        session_id = client.post(f"/api/patients/{patient['id']}/sessions").json()["id"]
        with live_socket(client, session_id) as socket:
            stream(socket, frames, "n")
    deadline = time.monotonic() + 10
    while any(t.name.startswith("live-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, [t.name for t in threading.enumerate()]
        time.sleep(0.05)
    assert len(built) == 1  # one detector served the twelve streams in turn
    server.app.state.live.close()
    assert closed == built
