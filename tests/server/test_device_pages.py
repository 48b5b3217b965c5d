"""Bed devices on the pages and the JSON API (issue 21): an admin registers a device and sees
its token once (never again on /devices or /api/devices; the database holds only its SHA-256);
a clinician binds a free device from the patient's page, the ward shows that bed with the
device's name, and Unbind ends its session; a revoked or already bound device is refused with
a message, never a 500; clinicians cannot register or revoke; every change is audited."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import event, select

from neopain.server.ward import ward_view
from neopain.store import crud
from neopain.store.tables import AuditEntry, Device, MonitoringSession, utc_now

TOKEN = re.compile(r"npd_[A-Za-z0-9_-]{20,}")


@pytest.fixture()
def patient_id(server) -> int:
    with server.db() as db:
        return crud.create_patient(db, actor=None, name="Baby Seven", record_number="D-7").id


def register(client, name: str = "NICU bed 7"):
    return client.post("/devices", data={"name": name, "csrf_token": client.csrf})


def device_named(server, name: str) -> Device:
    with server.db() as db:
        return crud.find_device(db, name=name)


def audit_actions(server, username: str) -> list[str]:
    with server.db() as db:
        return list(db.scalars(select(AuditEntry.action)
                               .where(AuditEntry.username == username,
                                      AuditEntry.action.not_in(("view", "login")))
                               .order_by(AuditEntry.id)))


def test_the_token_is_shown_once_and_stored_only_as_its_sha256(server):
    admin = server.client("admin")
    page = register(admin)
    assert page.status_code == 200
    [token] = set(TOKEN.findall(page.text))
    assert "shown this once" in page.text and "chmod 600" in page.text
    assert "--token-file" in page.text
    device = device_named(server, "NICU bed 7")
    assert device.token_hash == hashlib.sha256(token.encode()).hexdigest()
    with server.db() as db:
        assert db.scalar(select(Device.id).where(Device.token_hash == token)) is None
        details = " ".join(db.scalars(select(AuditEntry.detail)))
    for later in (admin.get("/devices").text, admin.get("/api/devices").text, details):
        assert token not in later and device.token_hash not in later
        assert not TOKEN.search(later)
    created = admin.post("/api/devices", json={"name": "NICU bed 8"})
    assert created.status_code == 201 and TOKEN.fullmatch(created.json()["token"])
    listed = admin.get("/api/devices").json()
    assert [d["name"] for d in listed] == ["NICU bed 7", "NICU bed 8"]
    assert all("token" not in d for d in listed) and created.json()["token"] not in str(listed)


def test_a_clinician_cannot_register_or_revoke(server):
    server.client("admin")
    nurse = server.client("clinician")
    assert register(nurse).status_code == 403
    assert nurse.post("/api/devices", json={"name": "NICU bed 7"}).status_code == 403
    with server.db() as db:
        device, _ = crud.create_device(db, actor=None, name="NICU bed 9")
    assert nurse.post(f"/devices/{device.id}/revoke").status_code == 403
    assert nurse.post(f"/api/devices/{device.id}/revoke").status_code == 403
    assert nurse.get("/devices").status_code == 403
    assert device_named(server, "NICU bed 9").revoked_at is None
    assert device_named(server, "NICU bed 7") is None


@pytest.mark.parametrize(("name", "problem"), [
    ("   ", "1–100 characters"), ("x" * 101, "1–100 characters"),
    ("NICU bed 7", "exists already"),
])
def test_a_bad_name_is_refused_with_a_message(server, name, problem):
    admin = server.client("admin")
    register(admin)
    page = register(admin, name)
    assert page.status_code == 422 and problem in page.text and not TOKEN.search(page.text)
    reply = admin.post("/api/devices", json={"name": name})
    assert reply.status_code == 422 and "name" in str(reply.json()["detail"])
    if name == "NICU bed 7":  # the others are pydantic's, in its own words
        assert problem in reply.json()["detail"]


def test_bind_puts_the_bed_on_the_ward_with_the_device_name_and_unbind_ends_it(server,
                                                                               patient_id):
    admin = server.client("admin")
    nurse = server.client("clinician")
    register(admin)
    device = device_named(server, "NICU bed 7")
    box = nurse.get(f"/patients/{patient_id}").text
    assert "Bed device" in box and f'<option value="{device.id}">NICU bed 7</option>' in box
    reply = nurse.post(f"/patients/{patient_id}/devices",
                       data={"device_id": device.id, "csrf_token": nurse.csrf},
                       follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == f"/patients/{patient_id}"
    page = nurse.get(f"/patients/{patient_id}").text
    assert "watches this patient" in page and "Unbind NICU bed 7" in page
    with server.db() as db:
        session = crud.current_session(db, device_id=device.id)
        browser = crud.start_session(db, actor=None, patient=crud.get_patient(db, patient_id),
                                     source="live", model="fake-mark")
    beds = {bed["session_id"]: bed for bed in nurse.get("/api/ward").json()["beds"]}
    assert beds[session.id]["device"] == "NICU bed 7"
    assert beds[browser.id]["device"] is None
    assert "NICU bed 7" in admin.get("/devices").text.split("watching", 1)[1]

    reply = nurse.post(f"/devices/{device.id}/unbind", follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == f"/patients/{patient_id}"
    with server.db() as db:
        assert db.get(MonitoringSession, session.id).ended_at is not None
        assert crud.current_session(db, device_id=device.id) is None
    beds = {bed["session_id"] for bed in nurse.get("/api/ward").json()["beds"]}
    assert session.id not in beds and browser.id in beds
    assert nurse.post(f"/devices/{device.id}/unbind").status_code == 422
    assert nurse.post(f"/api/devices/{device.id}/unbind").status_code == 422


def test_the_api_binds_and_unbinds(server, patient_id):
    admin = server.client("admin")
    nurse = server.client("clinician")
    device_id = admin.post("/api/devices", json={"name": "NICU bed 7"}).json()["id"]
    bound = nurse.post(f"/api/patients/{patient_id}/devices", json={"device_id": device_id})
    assert bound.status_code == 201
    assert bound.json()["patient_id"] == patient_id and bound.json()["source"] == "live"
    [listed] = admin.get("/api/devices").json()
    assert (listed["state"], listed["session_id"], listed["patient"]) == (
        "watching", bound.json()["id"], "Baby Seven (D-7)")
    ended = nurse.post(f"/api/devices/{device_id}/unbind")
    assert ended.status_code == 200 and ended.json()["ended_at"] is not None
    assert admin.get("/api/devices").json()[0]["state"] == "free"
    assert nurse.post(f"/api/patients/{patient_id}/devices",
                      json={"device_id": 999}).status_code == 404


def test_a_revoked_or_bound_device_is_refused_with_a_message(server, patient_id):
    admin = server.client("admin")
    nurse = server.client("clinician")
    register(admin)
    register(admin, "NICU bed 8")
    bound, revoked = device_named(server, "NICU bed 7"), device_named(server, "NICU bed 8")
    with server.db() as db:
        other = crud.create_patient(db, actor=None, name="Baby Other")
        crud.bind_device(db, bound, patient=other, actor=None)
    reply = admin.post(f"/devices/{revoked.id}/revoke", follow_redirects=False)
    assert reply.status_code == 303
    page = admin.get("/devices").text
    assert "revoked" in page  # the flashed notice and the state
    assert "Device NICU bed 8 revoked: its agent is refused within a second" in page
    for device, problem in ((bound, "already watches another bed"), (revoked, "is revoked")):
        page = nurse.post(f"/patients/{patient_id}/devices",
                          data={"device_id": device.id, "csrf_token": nurse.csrf})
        assert page.status_code == 422 and problem in page.text, page.text[:300]
        assert "Baby Seven" in page.text  # the patient's page, with the message
        reply = nurse.post(f"/api/patients/{patient_id}/devices", json={"device_id": device.id})
        assert reply.status_code == 422 and problem in reply.json()["detail"]
    with server.db() as db:
        assert crud.current_session(db, device_id=revoked.id) is None
    # neither is offered on the patient's page; the admin is pointed to /devices
    page = admin.get(f"/patients/{patient_id}").text
    assert "<option" not in page.split('id="bed-device"', 1)[1].split("</section>", 1)[0]
    assert 'href="/devices"' in page.split('id="bed-device"', 1)[1]


def test_revoking_stops_the_device_and_keeps_its_bed_open(server, patient_id):
    admin = server.client("admin")
    token = TOKEN.search(register(admin).text).group()
    device = device_named(server, "NICU bed 7")
    page = admin.get("/devices").text
    assert f'action="/devices/{device.id}/revoke"' in page and "Revoke NICU bed 7" in page
    session_id = admin.post(f"/api/patients/{patient_id}/devices",
                            json={"device_id": device.id}).json()["id"]
    agent = server.client()
    agent.headers["Authorization"] = f"Bearer {token}"
    assert agent.post("/api/device/heartbeat", json={}).json()["session_id"] == session_id
    revoked = admin.post(f"/api/devices/{device.id}/revoke")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    refused = agent.post("/api/device/heartbeat", json={})
    assert refused.status_code == 403 and refused.json()["reason"] == "revoked"
    with server.db() as db:
        assert db.get(MonitoringSession, session_id).ended_at is None
    assert admin.post(f"/api/devices/{device.id}/revoke").status_code == 200  # no change
    assert 'action="/devices/%d/revoke"' % device.id not in admin.get("/devices").text


def test_register_bind_unbind_and_revoke_are_audited(server, patient_id):
    admin = server.client("admin")
    nurse = server.client("clinician")
    register(admin)
    device = device_named(server, "NICU bed 7")
    nurse.post(f"/patients/{patient_id}/devices",
               data={"device_id": device.id, "csrf_token": nurse.csrf})
    nurse.post(f"/devices/{device.id}/unbind")
    admin.post(f"/devices/{device.id}/revoke")
    assert audit_actions(server, "admin") == ["device_create", "device_revoke"]
    assert audit_actions(server, "clinician") == ["start", "device_bind", "device_unbind", "stop"]


def test_the_ward_reads_every_beds_device_in_the_same_few_queries(server):
    """A bed more, device or not, adds no query to the ward's view (the alarm engine builds
    it twice a second)."""
    def queries(beds: int) -> int:
        with server.db() as db:
            patient = crud.create_patient(db, actor=None, name=f"Baby {beds}")
            for n in range(beds):
                device, _ = crud.create_device(db, actor=None, name=f"bed {beds}-{n}")
                crud.bind_device(db, device, patient=patient, actor=None)
            statements = []
            listener = lambda *args: statements.append(args[2])  # noqa: E731
            engine = db.get_bind()
            event.listen(engine, "before_cursor_execute", listener)
            try:
                view = ward_view(db, stale_s=10.0, now=utc_now())
            finally:
                event.remove(engine, "before_cursor_execute", listener)
            assert sum(bed.device is not None for bed in view.beds) >= beds
        return len(statements)

    assert queries(1) == queries(4)


def test_an_agents_backlog_shows_on_the_devices_page_before_revoking(server):
    """Guards: revoking a device whose outbox still holds records, unseen: they are lost."""
    import time as clock

    with server.db() as db:
        _, token = crud.create_device(db, actor=None, name="NICU bed 5")
    device = server.client()
    device.headers["Authorization"] = f"Bearer {token}"
    assert device.post("/api/device/heartbeat", json={
        "queued": 37, "dropped": 2, "fps": 14.83, "model": "nfcs",
        "status": {"kind": "noface", "frame_at": clock.time()}}).status_code == 200
    admin = server.client("admin")
    page = " ".join(admin.get("/devices").text.split())
    assert "nfcs · 14.8 frames/s" in page and "37 not sent yet" in page
    assert "2 dropped (outbox full)" in page and "it held <strong>37</strong>" in page
    listed = admin.get("/api/devices").json()[0]
    assert (listed["queued"], listed["dropped"], listed["fps"], listed["model"]) == (
        37, 2, 14.8, "nfcs")


def test_a_revoked_devices_bed_keeps_its_name_on_the_ward(server):
    with server.db() as db:
        patient = crud.create_patient(db, actor=None, name="Baby Keep")
        device, _ = crud.create_device(db, actor=None, name="NICU bed 6")
        session = crud.bind_device(db, device, patient=patient, actor=None)
        crud.revoke_device(db, device, actor=None)
    ward = server.client("clinician").get("/api/ward").json()
    bed = next(b for b in ward["beds"] if b["session_id"] == session.id)
    assert bed["device"] == "NICU bed 6"  # the nurse knows which camera went silent
