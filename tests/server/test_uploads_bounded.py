"""Uploads that fail leave nothing behind, odd shapes are assessed, and the work uploads do at
once is bounded (issue 16)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from neopain.server import live as live_module
from neopain.server.routes import uploads as uploads_module
from neopain.store import crud


def new_patient(client) -> int:
    return client.post("/api/patients", json={"record_number": "HC-5"}).json()["id"]


def upload(client, patient_id: int, name: str, data: bytes, content_type: str = "image/png"):
    return client.post(f"/api/patients/{patient_id}/uploads",
                       files={"file": (name, data, content_type)})


def png(frame: np.ndarray) -> bytes:
    return cv2.imencode(".png", frame)[1].tobytes()


def sessions(server, patient_id: int) -> list:
    with server.db() as db:
        return crud.list_sessions(db, patient_id=patient_id)


@pytest.mark.parametrize("shape", [(5000, 1, 3), (1, 5000, 3), (1, 1, 3)])
def test_extreme_aspect_ratios_are_assessed_and_their_session_closed(server, shape):
    """The audit: a 1×5000 PNG answered 500 (its snapshot was scaled to 0 pixels) and left an
    open image session with 0 assessments."""
    client = server.client("clinician")
    patient_id = new_patient(client)
    response = upload(client, patient_id, "strip.png", png(np.full(shape, 90, np.uint8)))
    assert response.status_code == 201, response.text
    [session] = sessions(server, patient_id)
    assert session.ended_at is not None
    with server.db() as db:
        assert crud.count_assessments(db, session_id=session.id) == 1


def test_an_image_upload_that_fails_leaves_no_session(server, frames, monkeypatch):
    client = server.client("clinician")
    patient_id = new_patient(client)

    def broken_snapshot(frame):
        raise RuntimeError("encoder broke")

    monkeypatch.setattr(uploads_module, "_jpeg", broken_snapshot)
    response = upload(client, patient_id, "cot.png", png(frames.face()))
    assert response.status_code == 500
    assert sessions(server, patient_id) == []


def test_a_video_upload_that_fails_half_way_leaves_no_session(server, frames, monkeypatch,
                                                              tmp_path):
    client = server.client("clinician")
    patient_id = new_patient(client)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for index in range(30):
        writer.write(frames.face(shift=index % 3))
    writer.release()
    record = live_module.Recorder.record
    calls = []

    def record_then_fail(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk gone")
        return record(self, *args, **kwargs)

    monkeypatch.setattr(live_module.Recorder, "record", record_then_fail)
    response = upload(client, patient_id, "clip.avi", path.read_bytes(), "video/x-msvideo")
    assert response.status_code == 500 and len(calls) == 3
    assert sessions(server, patient_id) == []
    with server.db() as db:
        assert crud.list_assessments(db, patient_id=patient_id) == []


def test_uploads_beyond_the_concurrency_limit_get_503_with_retry_after(tmp_path, make, frames,
                                                                       monkeypatch):
    """The audit: nothing capped concurrent uploads (three 10000² RGBA PNGs: +6 GB)."""
    server = make(tmp_path, max_concurrent_uploads=1)
    monkeypatch.setattr(live_module, "UPLOAD_WAIT_S", 0.2)
    inside, release = threading.Event(), threading.Event()
    predict = server.predictor.predict_crops

    def slow_predict(crops):
        inside.set()
        release.wait(10)
        return predict(crops)

    client = server.client("clinician")
    patient_id = new_patient(client)
    photo = png(frames.face())
    server.app.state.live.warm_model()  # the warm-up call must not hold the slot's test
    monkeypatch.setattr(server.predictor, "predict_crops", slow_predict)
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(upload, client, patient_id, "a.png", photo)
        assert inside.wait(10)
        started = time.monotonic()
        refused = upload(client, patient_id, "b.png", photo)
        waited = time.monotonic() - started
        release.set()
        assert first.result().status_code == 201
    assert refused.status_code == 503 and refused.headers["retry-after"].isdigit()
    assert "busy" in refused.json()["detail"] and waited < 2
    assert len(sessions(server, patient_id)) == 1
    monkeypatch.setattr(server.predictor, "predict_crops", predict)
    assert upload(client, patient_id, "c.png", photo).status_code == 201  # the slot is free
