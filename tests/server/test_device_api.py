"""The device API (issue 21): only a device's own token opens it (a wrong one 401, a revoked
one 403 with a message naming the device), records are stored once each however often they
are sent and only for the session the device was bound to at their time, and a heartbeat
makes the device's bed a ward bed like a browser's (state, alarms, link lost when it stops)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import timedelta

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select, update

from neopain.server.alarm_engine import default_limits, evaluate
from neopain.store import crud
from neopain.store.session import StoreError
from neopain.store.tables import (
    Assessment, AuditEntry, DeviceBinding, MonitoringSession, utc_now,
)


@pytest.fixture()
def bed(server):
    """A patient, a registered device bound to a new live session of it, and its token."""
    with server.db() as db:
        nurse = crud.create_user(db, username="nurse", role="clinician", password_hash="x")
        patient = crud.create_patient(db, actor=nurse, name="Baby Device")
        device, token = crud.create_device(db, actor=None, name="NICU bed 7")
        session = crud.bind_device(db, device, patient=patient, actor=nurse)
        ids = {"device_id": device.id, "session_id": session.id, "patient_id": patient.id}
    return ids | {"token": token}


def device_client(server, token):
    client = server.client()
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def record(session_id: int, *, when: float | None = None, state: str = "nopain",
           snapshot: bytes | None = None, record_id: str | None = None) -> dict:
    return {"id": record_id or uuid.uuid4().hex, "session_id": session_id,
            "time": time.time() if when is None else when, "label": state,
            "prob_pain": 0.9 if state == "pain" else 0.1, "smoothed": 0.5, "state": state,
            "uncertain": False, "changed": snapshot is not None, "face_box": [1, 2, 30, 40],
            "latency_ms": 12.5, "model": "nfcs",
            "snapshot": None if snapshot is None else base64.b64encode(snapshot).decode()}


def stored(server, session_id: int) -> int:
    with server.db() as db:
        return db.scalar(select(func.count()).select_from(Assessment)
                         .where(Assessment.session_id == session_id))


def small_jpeg() -> bytes:
    return cv2.imencode(".jpg", np.full((90, 120, 3), 128, np.uint8))[1].tobytes()


def test_a_missing_wrong_or_users_token_is_401_and_a_revoked_one_403(server, bed):
    anonymous = server.client()
    assert anonymous.get("/api/device/clock").status_code == 401
    assert device_client(server, "npd_not-a-token").get("/api/device/clock").status_code == 401
    nurse = server.client("clinician")  # a login cookie opens no device route
    reply = nurse.post("/api/device/heartbeat", json={})
    assert (reply.status_code, reply.json()["reason"]) == (401, "unknown_token")
    device = device_client(server, bed["token"])
    assert device.get("/api/device/clock").status_code == 200
    with server.db() as db:
        crud.revoke_device(db, crud.get_device(db, bed["device_id"]), actor=None)
    reply = device.post("/api/device/heartbeat", json={})
    assert reply.status_code == 403 and reply.json()["reason"] == "revoked"
    assert "NICU bed 7" in reply.json()["detail"] and "revoked" in reply.json()["detail"]
    assert device.post("/api/device/records",
                       json={"records": [record(bed["session_id"])]}).status_code == 403


def test_another_devices_token_cannot_write_into_this_bed(server, bed):
    with server.db() as db:
        _, other_token = crud.create_device(db, actor=None, name="NICU bed 8")
    other = device_client(server, other_token)
    reply = other.post("/api/device/records", json={"records": [record(bed["session_id"])]})
    assert reply.status_code == 403 and reply.json()["reason"] == "foreign_session"
    assert stored(server, bed["session_id"]) == 0
    assert other.post("/api/device/heartbeat", json={}).json()["session_id"] is None


def test_a_record_sent_twice_is_stored_once_and_acknowledged_both_times(server, bed):
    device = device_client(server, bed["token"])
    batch = [record(bed["session_id"], snapshot=small_jpeg()),
             record(bed["session_id"], state="pain")]
    first = device.post("/api/device/records", json={"records": batch}).json()
    again = device.post("/api/device/records", json={"records": batch[::-1]}).json()
    assert first["acked"] == [r["id"] for r in batch] and first["refused"] == []
    assert again["acked"] == [r["id"] for r in batch[::-1]]
    assert stored(server, bed["session_id"]) == 2
    with server.db() as db:
        rows = crud.list_assessments(db, session_id=bed["session_id"], newest_first=False)
        assert [(r.state, r.has_snapshot) for r in rows] == [("nopain", True), ("pain", False)]
        assert crud.get_assessment(db, rows[0].id, with_snapshot=True).snapshot == small_jpeg()


def test_records_outside_the_binding_and_bad_fields_are_refused_one_by_one(server, bed):
    device = device_client(server, bed["token"])
    before_binding = record(bed["session_id"], when=time.time() - 3600)
    future = record(bed["session_id"], when=time.time() + 3600)
    bad = record(bed["session_id"]) | {"prob_pain": 7}
    not_jpeg = record(bed["session_id"]) | {"snapshot": base64.b64encode(b"GIF89a..").decode()}
    good = record(bed["session_id"])
    reply = device.post("/api/device/records",
                        json={"records": [before_binding, future, bad, not_jpeg, good]}).json()
    assert reply["acked"] == [good["id"]]
    reasons = {r["id"]: (r["reason"], r["detail"]) for r in reply["refused"]}
    assert reasons[before_binding["id"]][0] == "not_bound"
    assert reasons[future["id"]][0] == "invalid"
    assert reasons[bad["id"]][0] == "invalid" and "prob_pain" in reasons[bad["id"]][1]
    assert "snapshot" in reasons[not_jpeg["id"]][1]
    assert device.post("/api/device/records", json={"records": []}).status_code == 422
    assert device.post("/api/device/records",
                       json={"records": [good] * 101}).status_code == 422


def test_records_made_while_bound_are_taken_after_unbinding(server, bed):
    """An agent that was offline replays after the clinician unbound it: what it assessed while
    bound is kept; what it made after is refused."""
    device = device_client(server, bed["token"])
    with server.db() as db:
        crud.unbind_device(db, crud.get_device(db, bed["device_id"]), actor=None)
        now = utc_now()  # the binding: from 60 s ago until 10 s ago
        db.execute(update(DeviceBinding).values(bound_at=now - timedelta(seconds=60),
                                                unbound_at=now - timedelta(seconds=10)))
        db.execute(update(MonitoringSession).values(started_at=now - timedelta(seconds=60),
                                                    ended_at=now - timedelta(seconds=10)))
        db.commit()
    made_while_bound = record(bed["session_id"], when=now.timestamp() - 30)
    made_after = record(bed["session_id"], when=now.timestamp() - 5)
    reply = device.post("/api/device/records",
                        json={"records": [made_while_bound, made_after]}).json()
    assert reply["acked"] == [made_while_bound["id"]]
    assert [(r["id"], r["reason"]) for r in reply["refused"]] == [(made_after["id"], "not_bound")]
    with server.db() as db:
        row = crud.list_assessments(db, session_id=bed["session_id"])[0]
        assert row.offset_s == pytest.approx(30, abs=0.01)


def test_heartbeats_make_the_device_bed_a_ward_bed_and_silence_raises_link_lost(make, tmp_path):
    server = make(tmp_path, timeline_interval_s=0.0, alarm_stale_s=5.0, session_idle_s=600)
    with server.db() as db:
        patient = crud.create_patient(db, actor=None, name="Baby Beat")
        device, token = crud.create_device(db, actor=None, name="bed 3")
        session = crud.bind_device(db, device, patient=patient, actor=None)
    client = device_client(server, token)
    now = time.time()
    reply = client.post("/api/device/heartbeat", json={"status": {
        "kind": "pain", "smoothed": 0.8, "confidence": 0.8, "held_state": "pain",
        "frame_at": now}, "queued": 0}).json()
    assert reply["session_id"] == session.id and reply["heartbeat_s"] <= 0.5
    ward = server.client("clinician").get("/api/ward").json()
    tile = next(b for b in ward["beds"] if b["session_id"] == session.id)
    assert tile["state"] == "pain"
    later = utc_now() + timedelta(seconds=7)  # no heartbeat for longer than the link limit
    with server.db() as db:
        evaluate(db, defaults=default_limits(server.settings), now=later)
        rules = [a.rule for a in crud.unresolved_alarms(db) if a.session_id == session.id]
        actions = set(db.scalars(select(AuditEntry.action)))
    assert rules == ["link"]
    assert {"device_create", "device_bind", "device_connect"} <= actions


def test_a_camera_page_cannot_stream_into_a_session_a_device_feeds(server, bed):
    from starlette.websockets import WebSocketDisconnect

    client = server.client("clinician")
    for revoked in (False, True):  # a revoked device's bed still reads its name on the ward
        if revoked:
            with server.db() as db:
                crud.revoke_device(db, crud.get_device(db, bed["device_id"]), actor=None)
        with pytest.raises(WebSocketDisconnect) as closed, \
                client.websocket_connect(f"/ws/sessions/{bed['session_id']}") as socket:
            socket.receive_json()
        assert closed.value.code == 4403 and "NICU bed 7" in closed.value.reason, revoked


@pytest.mark.parametrize("field, value", [
    ("frame_at", 1.8e12),  # milliseconds by mistake (a 2027 time)
    ("smoothed", float("nan")),
])
def test_a_heartbeat_out_of_range_is_422_never_500(server, bed, field, value):
    status = {"kind": "nopain", "smoothed": 0.2, "confidence": 0.8, "held_state": "nopain",
              "frame_at": time.time()} | {field: value}
    reply = device_client(server, bed["token"]).post(
        "/api/device/heartbeat", content=json.dumps({"status": status}),
        headers={"content-type": "application/json"})
    assert reply.status_code == 422 and field in json.dumps(reply.json())


def test_non_finite_or_millisecond_record_fields_are_refused_by_name(server, bed):
    device = device_client(server, bed["token"])
    boxed = record(bed["session_id"]) | {"face_box": [1, 2, float("inf"), 4]}
    timed = record(bed["session_id"]) | {"time": time.time() * 1000}
    reply = device.post("/api/device/records", content=json.dumps({"records": [boxed, timed]}),
                        headers={"content-type": "application/json"}).json()
    assert reply["acked"] == []
    details = {r["id"]: r["detail"] for r in reply["refused"]}
    assert "face_box" in details[boxed["id"]] and "time" in details[timed["id"]]


def test_a_revoked_device_is_not_bound_even_from_a_stale_read(server, bed):
    """The bind's own check sees a revocation committed after the device was read."""
    with server.db() as db:
        other, _ = crud.create_device(db, actor=None, name="NICU bed 9")
        patient = crud.create_patient(db, actor=None, name="Baby Race")
    with server.db() as stale, server.db() as admin:
        device = crud.get_device(stale, other.id)
        assert device.revoked_at is None
        crud.revoke_device(admin, crud.get_device(admin, other.id), actor=None)
        with pytest.raises(StoreError, match="revoked"):
            crud.bind_device(stale, device, patient=patient, actor=None)
    with server.db() as db:
        assert crud.current_session(db, device_id=other.id) is None


def test_heartbeats_reaching_two_server_processes_keep_the_bed_current(server, bed):
    """A device's keep-alive connection may move between processes of one server: each
    writes the bed's status (a device's stream started with its session, in all of them)."""
    from neopain.server.devices import DeviceHub, Reading

    store = server.app.state.neopain.store
    first, second = DeviceHub(store), DeviceHub(store)
    with server.db() as db:
        started = crud.get_session(db, bed["session_id"]).started_at

    def beat(hub, kind):
        hub.heartbeat(device_id=bed["device_id"], name="NICU bed 7",
                      session_id=bed["session_id"], session_started_at=started,
                      reading=Reading(kind=kind, smoothed=0.9 if kind == "pain" else 0.1,
                                      confidence=0.9, held_state=kind, frame_at=utc_now()))

    for hub, kind in ((first, "nopain"), (second, "nopain"), (first, "pain")):
        beat(hub, kind)
    with server.db() as db:
        assert crud.read_status(db, session_id=bed["session_id"]).state == "pain"


def test_a_foreign_session_refusal_names_the_records_to_drop(server, bed):
    with server.db() as db:
        _, other_token = crud.create_device(db, actor=None, name="NICU bed 10")
    reply = device_client(server, other_token).post("/api/device/records", json={
        "records": [record(bed["session_id"]) | {"prob_pain": 7}, record(bed["session_id"])]})
    assert reply.status_code == 403 and reply.json()["records"] == [1]  # 0: invalid anyway
