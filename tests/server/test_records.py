"""Records: patients by form and API, search, history of snapshots, the profile's charts, and
uploads checked by content and size with clear 4xx answers."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest

from neopain.server.charts import share_table
from neopain.store import crud
from neopain.store.crud import NewAssessment


def new_patient(client, **fields) -> int:
    response = client.post("/api/patients", json={"name": "Baby Silva", **fields})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_form_creates_edits_and_finds_a_patient(server):
    client = server.client("clinician")
    response = client.post("/patients", follow_redirects=False, data={
        "name": "Baby Silva", "record_number": "HC-100", "birth_date": "2026-11-01",
        "gestational_age_weeks": "31.5", "notes": "twin A"})
    assert response.status_code == 303
    location = response.headers["location"]
    patient_id = int(location.rsplit("/", 1)[1])
    history = client.get(location)
    assert "Baby Silva (HC-100)" in history.text and "GA 31.5 weeks" in history.text
    response = client.post(f"/patients/{patient_id}/edit", follow_redirects=False, data={
        "name": "Baby Silva", "record_number": "HC-101", "birth_date": "2026-11-01",
        "gestational_age_weeks": "", "notes": ""})
    assert response.status_code == 303
    with server.db() as db:
        patient = crud.get_patient(db, patient_id)
    assert patient.record_number == "HC-101" and patient.gestational_age_weeks is None
    assert "Baby Silva" in client.get("/patients", params={"q": "hc-101"}).text
    assert "Baby Silva" not in client.get("/patients", params={"q": "Souza"}).text


def test_form_without_name_or_record_number_is_refused_with_the_reason(server):
    client = server.client("clinician")
    response = client.post("/patients", data={"name": " ", "record_number": ""})
    assert response.status_code == 422 and "name or a record number" in response.text
    with server.db() as db:
        assert crud.search_patients(db) == []


def test_api_creates_lists_reads_and_patches(server):
    client = server.client("clinician")
    patient_id = new_patient(client, record_number="HC-7", gestational_age_weeks=30)
    listed = client.get("/api/patients", params={"q": "silva"}).json()
    assert [p["id"] for p in listed] == [patient_id]
    assert set(listed[0]) == {"id", "name", "record_number", "birth_date",
                              "gestational_age_weeks", "notes", "created_at"}
    patched = client.patch(f"/api/patients/{patient_id}", json={"notes": "phototherapy"})
    assert patched.status_code == 200 and patched.json()["notes"] == "phototherapy"
    assert patched.json()["record_number"] == "HC-7"
    assert client.patch(f"/api/patients/{patient_id}", json={"name": "", "record_number": ""}
                        ).status_code == 422
    assert client.get("/api/patients/999").status_code == 404
    future = client.post("/api/patients", json={"name": "X", "birth_date": "2999-01-01"})
    assert future.status_code == 422 and "future" in future.text


def test_history_shows_snapshots_only_with_state_and_confidence(server, records):
    client = server.client("researcher")
    with server.db() as db:
        session = crud.get_session(db, records["session_id"])
        crud.add_assessment(db, session=session, assessment=NewAssessment(
            face_found=True, model="m", latency_ms=3.0, label="nopain", prob_pain=0.3))
    page = client.get(f"/patients/{records['patient_id']}").text
    assert page.count('<figure class="snapshot') == 1
    assert "PAIN" in page and "90% sure" in page
    image = client.get(f"/assessments/{records['assessment_id']}/snapshot.jpg")
    assert image.status_code == 200 and image.content[:3] == b"\xff\xd8\xff"
    api = client.get(f"/api/patients/{records['patient_id']}/assessments",
                     params={"snapshots_only": True}).json()
    assert [a["snapshot_url"] for a in api] == [
        f"/assessments/{records['assessment_id']}/snapshot.jpg"]


def test_days_and_hours_are_counted_in_the_display_zone():
    times = [datetime(2026, 11, 22, 1, 30, tzinfo=timezone.utc),   # 21st, 22:30 in São Paulo
             datetime(2026, 11, 22, 14, 0, tzinfo=timezone.utc),   # 22nd, 11:00
             datetime(2026, 11, 22, 14, 10, tzinfo=timezone.utc)]  # 22nd, 11:10
    labels = ["pain", "nopain", "pain"]
    zone = ZoneInfo("America/Sao_Paulo")
    by_day = share_table(times, labels, by="day", zone=zone)
    assert by_day.to_dict("index") == {"2026-11-21": {"assessments": 1, "pain_share": 1.0},
                                       "2026-11-22": {"assessments": 2, "pain_share": 0.5}}
    by_hour = share_table(times, labels, by="hour", zone=zone)
    assert len(by_hour) == 24 and by_hour.loc[22, "assessments"] == 1
    assert by_hour.loc[11, "pain_share"] == 0.5 and by_hour["assessments"].sum() == 3


def test_profile_charts_are_svg_served_by_this_server(server, records):
    client = server.client("researcher")
    profile = client.get(f"/patients/{records['patient_id']}/profile").text
    sources = re.findall(r'<img[^>]+src="([^"]+)"', profile)
    charts = [s for s in sources if s.split("?")[0].endswith(".svg")]
    assert len(charts) == 4  # by day, by hour, two live sessions
    for source in charts:
        response = client.get(source)
        assert response.status_code == 200 and response.headers["content-type"].startswith(
            "image/svg+xml")
        root = ET.fromstring(response.content)
        assert root.tag.endswith("}svg")
        assert not re.search(r'href="(https?:)?//|<script', response.text)


def test_the_instructions_page_and_assets_are_local(server):
    client = server.client("researcher")
    page = client.get("/instructions")
    assert page.status_code == 200 and "Start monitoring" in page.text
    for asset in ("/static/app.css", "/static/live.js", "/static/favicon.svg"):
        assert client.get(asset).status_code == 200


def test_openapi_schema_lists_the_api_and_no_cdn_docs(server):
    client = server.client()
    schema = client.get("/api/openapi.json").json()
    assert {"/api/patients", "/api/patients/{patient_id}/uploads",
            "/api/sessions/{session_id}/stop", "/api/login"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 404


# uploads -----------------------------------------------------------------------------------

def encode(frame: np.ndarray, ext: str) -> bytes:
    return cv2.imencode(ext, frame)[1].tobytes()


def upload(client, patient_id: int, name: str, data: bytes, content_type: str = "image/jpeg"):
    return client.post(f"/api/patients/{patient_id}/uploads",
                       files={"file": (name, data, content_type)})


def test_an_uploaded_photo_is_assessed_into_the_record(server, frames):
    client = server.client("clinician")
    patient_id = new_patient(client)
    response = upload(client, patient_id, "cot.jpg", encode(frames.face(pain=True), ".jpg"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kind"] == "image" and body["faces"] == 1
    [saved] = body["saved"]
    assert saved["label"] == "pain" and saved["face_found"] and saved["snapshot_url"]
    no_face = upload(client, patient_id, "cup.png", encode(frames.no_face(), ".png"), "image/png")
    assert no_face.status_code == 201
    assert no_face.json()["saved"][0]["face_found"] is False
    assert no_face.json()["saved"][0]["label"] is None
    with server.db() as db:
        assert len(crud.list_sessions(db, patient_id=patient_id)) == 2


def test_uploads_give_their_face_detector_back(server, frames, detectors):
    # a detector holds a native graph and its threads: an upload that kept one leaked it
    built = detectors.built
    client = server.client("clinician")
    patient_id = new_patient(client)
    for _ in range(3):
        response = upload(client, patient_id, "cot.jpg", encode(frames.face(), ".jpg"))
        assert response.status_code == 201, response.text
    assert len(built) == 1 and server.app.state.live._idle == built


def test_an_uploaded_video_records_the_changes_of_state(server, frames, tmp_path):
    client = server.client("clinician")
    patient_id = new_patient(client)
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    for index in range(60):  # 6 s: no pain, pain, no pain, 2 s each
        writer.write(frames.face(pain=20 <= index < 40, shift=index % 3))
    writer.release()
    response = upload(client, patient_id, "clip.mp4", path.read_bytes(), "video/mp4")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kind"] == "video" and body["frames"] == 12 and body["faces"] == 12
    snapshots = [a["state"] for a in body["saved"] if a["snapshot_url"]]
    assert snapshots == ["nopain", "pain", "nopain"]
    assert [a["offset_s"] for a in body["saved"]] == sorted(a["offset_s"] for a in body["saved"])


@pytest.mark.parametrize(("name", "data", "status", "message"), [
    ("notes.txt", b"Baby Silva was calm at 10:00, then cried." * 3, 415, "valid: JPEG, PNG"),
    ("photo.jpg", b"%PDF-1.7 not really a photo at all", 415, "Not a supported file type"),
    ("broken.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 40, 422, "cannot be read"),
    ("broken.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200, 422, "video cannot be read"),
    ("tiny.jpg", b"\xff\xd8\xff", 422, "too short"),
])
def test_bad_uploads_get_a_clear_4xx(server, name, data, status, message):
    client = server.client("clinician")
    patient_id = new_patient(client)
    response = upload(client, patient_id, name, data)
    assert response.status_code == status and message in response.json()["detail"]
    assert "Silva" not in response.text


def test_uploads_over_the_size_limit_get_413(tmp_path, make, frames):
    server = make(tmp_path, max_upload_mb=0.02)
    client = server.client("clinician")
    patient_id = new_patient(client)
    photo = encode(np.random.default_rng(0).integers(0, 255, (400, 400, 3), np.uint8), ".png")
    assert len(photo) > 20_000
    response = upload(client, patient_id, "big.png", photo, "image/png")
    assert response.status_code == 413 and "0 MB" not in response.json()["detail"]
    huge = upload(client, patient_id, "huge.png", photo * 3, "image/png")  # past the body limit
    assert huge.status_code == 413
    with server.db() as db:
        assert crud.list_sessions(db, patient_id=patient_id) == []


def test_the_upload_form_returns_to_the_history(server, frames):
    client = server.client("clinician")
    patient_id = new_patient(client)
    response = client.post(f"/patients/{patient_id}/upload", follow_redirects=False,
                           files={"file": ("a.jpg", encode(frames.face(), ".jpg"), "image/jpeg")})
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"/patients/{patient_id}?uploaded=")
    bad = client.post(f"/patients/{patient_id}/upload",
                      files={"file": ("a.txt", b"hello there, not an image", "text/plain")})
    assert bad.status_code == 415 and "Not a supported file type" in bad.text


def test_admins_create_and_deactivate_users_but_cannot_lock_themselves_out(server):
    admin = server.client("admin")
    response = admin.post("/users", follow_redirects=False, data={
        "username": "bob", "role": "researcher", "password": "a long enough password"})
    assert response.status_code == 303
    with server.db() as db:
        bob, me = crud.find_user(db, "bob"), crud.find_user(db, "admin")
    assert bob.role == "researcher" and bob.password_hash.startswith("$argon2id$")
    assert admin.post(f"/users/{bob.id}", data={"role": "clinician"},
                      follow_redirects=False).status_code == 303
    refused = admin.post(f"/users/{me.id}", data={"role": "clinician", "active": "true"})
    assert refused.status_code == 422 and "own admin" in refused.text
    weak = admin.post("/users", data={"username": "eve", "role": "clinician", "password": "x"})
    assert weak.status_code == 422 and "at least 10" in weak.text
    with server.db() as db:
        bob = crud.find_user(db, "bob")
        assert (bob.role, bob.active) == ("clinician", False)
        assert crud.find_user(db, "admin").role == "admin"
    audit = admin.get("/audit").text
    assert f"<td>user {bob.id}</td>" in audit and "active=False" in audit
