"""History pages (issue 19): timelines in clock time in the configured zone, sessions summed
up from their rows, the audit log filtered and paged with one row per page view, a patient
form that names each bad field, and a refused upload that returns to the patient's page."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone

import cv2

from neopain.store import crud
from neopain.store.crud import NewAssessment
from neopain.store.tables import AuditEntry

FAR_ZONE = "Pacific/Kiritimati"  # UTC+14: a clock time there is never the UTC one
NOON_UTC = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)  # 2026-11-23 02:00 there


def patient_with_session(server, *, source: str = "live", name: str = "Baby Silva"):
    with server.db() as db:
        nurse = crud.find_user(db, "clinician")
        patient = crud.create_patient(db, actor=nurse, name=name)
        session = crud.start_session(db, actor=nurse, patient=patient, source=source,
                                     model="fake-mark")
        return patient.id, session.id


def add_rows(server, session_id: int, states: list[str], offsets: list[float], *,
             start: datetime = NOON_UTC, snapshot: bytes | None = None) -> None:
    with server.db() as db:
        session = crud.get_session(db, session_id)
        for index, (state, offset) in enumerate(zip(states, offsets)):
            crud.add_assessment(db, session=session, assessment=NewAssessment(
                face_found=True, model="fake-mark", latency_ms=1.0, offset_s=offset,
                label=state, prob_pain=0.9 if state == "pain" else 0.1, state=state,
                changed=index == 0 or states[index - 1] != state,
                snapshot=snapshot if index == 0 or states[index - 1] != state else None,
                time=start + timedelta(seconds=offset)))


def set_times(server, session_id: int, *, started: datetime, ended: datetime | None) -> None:
    with server.db() as db:
        session = crud.get_session(db, session_id)
        session.started_at, session.ended_at = started, ended
        db.commit()


def audit_count(server, **match) -> int:
    with server.db() as db:
        return db.query(AuditEntry).filter_by(**match).count()


# clock time ---------------------------------------------------------------------------------

def test_a_timeline_shows_clock_times_in_the_configured_zone(tmp_path, make):
    """Guards: timelines ran in seconds from the start, so a nurse could not match a point
    to the chart of the ward or to the notes."""
    server = make(tmp_path, timeline_interval_s=0.0, timezone=FAR_ZONE)
    client = server.client("clinician")
    _, session_id = patient_with_session(server)
    add_rows(server, session_id, ["nopain"] * 7 + ["pain"] * 6, [10.0 * k for k in range(13)])
    svg = client.get(f"/sessions/{session_id}/timeline.svg").text
    clock = re.findall(r">\s*(\d\d:\d\d:\d\d)\s*<", svg)
    assert clock, "no clock time on the time axis"
    assert all("02:00:00" <= t <= "02:02:00" for t in clock), clock  # 12:00 UTC is 02:00 there
    assert "2026-11-23" in svg and "since start" not in svg


def test_the_history_shows_times_in_the_configured_zone(tmp_path, make, frames):
    server = make(tmp_path, timeline_interval_s=0.0, timezone=FAR_ZONE)
    client = server.client("clinician")
    patient_id, session_id = patient_with_session(server)
    add_rows(server, session_id, ["pain"], [0.0], snapshot=frames.jpeg(frames.no_face()))
    set_times(server, session_id, started=NOON_UTC, ended=NOON_UTC + timedelta(minutes=5))
    page = client.get(f"/patients/{patient_id}").text
    assert "2026-11-23 02:00:00" in page and "2026-11-23 02:05:00" in page
    assert "2026-11-22 12:00:00" not in page


# sessions summed up -------------------------------------------------------------------------

def session_row(page: str, session_id: int) -> dict[str, str]:
    row = re.search(rf'<tr id="session-{session_id}"[^>]*>(.*?)</tr>', page, re.S).group(1)
    cells = dict(re.findall(r'<td class="([\w-]+)">(.*?)</td>', row, re.S))
    links = re.findall(r'href="([^"]+)"', row)
    return {**{k: v.strip() for k, v in cells.items()}, "links": links}


def test_sessions_show_duration_pain_share_and_episodes_of_their_rows(server):
    """Rows 1 s apart; a 20 s gap (no face) counts 5 s at most; the last row none."""
    client = server.client("clinician")
    patient_id, session_id = patient_with_session(server)
    states = ["nopain"] * 3 + ["pain"] * 2 + ["nopain"] * 2 + ["pain"] * 4 + ["nopain"]
    offsets = [float(k) for k in range(10)] + [29.0, 30.0]
    add_rows(server, session_id, states, offsets)
    set_times(server, session_id, started=NOON_UTC, ended=NOON_UTC + timedelta(seconds=40))
    # assessed 9 × 1 s + 5 s (capped gap) + 1 s = 15 s; in pain 2 + 2 + 5 + 1 = 10 s
    with server.db() as db:
        [summary] = crud.session_summaries(db, patient_id=patient_id)
    assert (summary.assessed_s, summary.pain_s, summary.episodes) == (15.0, 10.0, 2)
    assert summary.duration_s == 40.0 and summary.assessments == 12
    row = session_row(client.get(f"/patients/{patient_id}").text, session_id)
    assert (row["duration"], row["pain-share"], row["episodes"]) == ("40 s", "67%", "2")
    [timeline] = row["links"]
    profile = client.get(html.unescape(timeline))
    assert profile.status_code == 200 and f'id="session-{session_id}"' in profile.text


def test_videos_images_and_open_sessions_are_summed_up_as_such(server):
    client = server.client("clinician")
    patient_id, video_id = patient_with_session(server, source="video")
    add_rows(server, video_id, ["pain", "nopain", "nopain"], [0.0, 61.0, 62.0])
    with server.db() as db:
        crud.end_session(db, crud.get_session(db, video_id), actor=None)
        open_id = crud.start_session(db, actor=None, patient=crud.get_patient(db, patient_id),
                                     source="live", model="m").id
    page = client.get(f"/patients/{patient_id}").text
    video, live = session_row(page, video_id), session_row(page, open_id)
    assert (video["duration"], video["pain-share"], video["episodes"]) == (
        "1 min 02 s", "83%", "1")  # 5 s capped of 6 s assessed in pain
    assert (live["duration"], live["pain-share"], live["episodes"]) == (
        "open", "not assessed", "0")


def test_the_timeline_link_reaches_a_session_the_profile_would_not_list(server):
    client = server.client("clinician")
    patient_id, first = patient_with_session(server)
    with server.db() as db:
        patient = crud.get_patient(db, patient_id)
        for _ in range(12):
            crud.start_session(db, actor=None, patient=patient, source="live", model="m")
    assert f'id="session-{first}"' not in client.get(f"/patients/{patient_id}/profile").text
    page = client.get(f"/patients/{patient_id}/profile", params={"session": first}).text
    assert f'id="session-{first}"' in page


# audit log ----------------------------------------------------------------------------------

def add_audit(server, count: int, *, username: str, action: str = "view",
              start: int = 0) -> None:
    with server.db() as db:
        actor = crud.find_user(db, username)
        for index in range(start, start + count):
            crud.audit(db, actor=actor, action=action, object_type="patient", detail=f"r{index}")


def details(page: str) -> list[str]:
    return re.findall(r"<td>(r\d+)</td>", page)


def test_audit_paging_neither_loses_nor_repeats_a_row_while_rows_are_added(server):
    admin = server.client("admin")
    server.client("researcher")
    add_audit(server, 123, username="researcher")
    seen, url = [], "/audit?username=researcher"
    while url:
        page = admin.get(url)
        assert page.status_code == 200
        seen += details(page.text)
        add_audit(server, 7, username="researcher", start=1000 + len(seen))  # others go on
        found = re.search(r'rel="next" href="([^"]+)"', page.text)
        url = html.unescape(found.group(1)) if found else None
    assert seen == [f"r{k}" for k in range(122, -1, -1)]
    assert admin.get("/audit", params={"offset": -1}).status_code == 422
    assert admin.get("/audit", params={"offset": 2**40}).status_code == 422


def test_the_audit_log_filters_by_user_action_and_days_in_the_display_zone(tmp_path, make):
    server = make(tmp_path, timeline_interval_s=0.0, timezone=FAR_ZONE)
    admin = server.client("admin")
    server.client("researcher")
    add_audit(server, 3, username="researcher")
    add_audit(server, 2, username="researcher", action="export", start=3)
    with server.db() as db:
        first = db.query(AuditEntry).filter_by(detail="r0").one()
        first.time = NOON_UTC  # 2026-11-23 02:00 in the display zone
        db.commit()
    page = admin.get("/audit", params={"username": "researcher", "action": "export"}).text
    assert sorted(details(page)) == ["r3", "r4"]
    day = admin.get("/audit", params={"since": "2026-11-23", "until": "2026-11-23"}).text
    assert details(day) == ["r0"]
    assert details(admin.get("/audit", params={"until": "2026-11-22"}).text) == []
    bad = admin.get("/audit", params={"since": "23/11/2026"})
    assert bad.status_code == 422 and "From: not a date; valid: YYYY-MM-DD" in bad.text


def test_thumbnails_and_charts_of_an_audited_page_add_no_audit_rows(server, frames):
    """Guards: the history page wrote one audit row per thumbnail (500 for a long stay)."""
    client = server.client("researcher")
    server.client("clinician")
    patient_id, session_id = patient_with_session(server)
    add_rows(server, session_id, ["pain", "nopain", "pain", "nopain"], [0.0, 1.0, 2.0, 3.0],
             snapshot=frames.jpeg(frames.no_face()))
    for page_path in (f"/patients/{patient_id}", f"/patients/{patient_id}/profile"):
        before = audit_count(server, username="researcher")
        page = client.get(page_path).text
        parts = [html.unescape(s) for s in re.findall(r'<img[^>]+src="([^"]+)"', page)]
        assert len(parts) >= 3
        for part in parts:
            assert client.get(part).status_code == 200
        assert audit_count(server, username="researcher") == before + 1, page_path
    # fetched on its own, or with another user's or another patient's grant: audited
    other_id, _ = patient_with_session(server, name="Baby Souza")
    other_page = client.get(f"/patients/{other_id}/profile").text
    other_grant = re.search(r"\?view=([^\"&]+)", other_page).group(1)
    single = parts[-1].split("?")[0]
    before = audit_count(server, username="researcher")
    client.get(single)
    client.get(f"{single}?view={other_grant}")
    server.client("admin").get(parts[-1])
    assert audit_count(server, username="researcher") == before + 2
    assert audit_count(server, username="admin", detail="session timeline") == 1
    # a grant is bound to its login: the same user logged in anew is audited (review finding:
    # a grant outlived its login for 12 h)
    again = server.client("researcher")
    before = audit_count(server, username="researcher")  # after its login row
    assert again.get(parts[-1]).status_code == 200
    assert audit_count(server, username="researcher") == before + 1


# forms --------------------------------------------------------------------------------------

def test_a_bad_patient_form_names_each_field_and_what_is_valid(server):
    """Guards: the empty form answered "form: Value error, give a name or a record number"."""
    client = server.client("clinician")
    empty = client.post("/patients", data={"name": "", "record_number": ""})
    assert empty.status_code == 422
    assert "Name or record number: give at least one of them." in empty.text
    assert 'id="name-problem"' in empty.text and 'aria-invalid="true"' in empty.text
    bad = client.post("/patients", data={"name": "Baby Silva", "birth_date": "2999-01-01",
                                         "gestational_age_weeks": "abc"})
    assert bad.status_code == 422
    for says in ("Birth date: a date (YYYY-MM-DD), today or earlier, or empty.",
                 "Gestational age: a number of weeks from 20 to 45, or empty."):
        assert says in bad.text
    assert 'id="birth_date-problem"' in bad.text
    assert 'id="gestational_age_weeks-problem"' in bad.text
    for raw in ("Value error", "Input should", "form:"):
        assert raw not in empty.text and raw not in bad.text


def test_a_refused_upload_returns_to_the_patients_page_with_a_notice(server, frames):
    """Guards: a refused upload ended on a page with nothing but the error."""
    client = server.client("clinician")
    patient_id, _ = patient_with_session(server)
    refused = client.post(f"/patients/{patient_id}/upload",
                          files={"file": ("a.txt", b"hello there, not an image", "text/plain")})
    assert refused.status_code == 415
    assert "Upload refused: Not a supported file type; valid: JPEG" in refused.text
    assert f'action="/patients/{patient_id}/upload"' in refused.text  # try another file here
    assert "Baby Silva" in refused.text and 'id="sessions"' in refused.text
    photo = cv2.imencode(".jpg", frames.face())[1].tobytes()
    gone = client.post("/patients/999/upload", files={"file": ("a.jpg", photo, "image/jpeg")})
    assert gone.status_code == 404 and 'href="/patients"' in gone.text


def test_an_uploaded_images_session_shows_the_images_state_as_its_pain_share(server, frames):
    # the bug guarded (seen in chromium): after uploading one image the notice said it was
    # assessed and the snapshot read "no pain 95%", while the session row said "not assessed"
    client = server.client("clinician")
    patient = client.post("/api/patients", json={"record_number": "IMG-1"}).json()
    for body in (frames.jpeg(frames.face()), frames.jpeg(frames.face(pain=True))):
        done = client.post(f"/api/patients/{patient['id']}/uploads",
                           files={"file": ("face.jpg", body, "image/jpeg")})
        assert done.status_code in (200, 201), done.text
    rows = [session_row(client.get(f"/patients/{patient['id']}").text, s.session.id)
            for s in _summaries(server, patient["id"])]
    assert sorted(row["pain-share"] for row in rows) == ["0%", "100%"]


def _summaries(server, patient_id: int):
    with server.db() as db:
        return crud.session_summaries(db, patient_id=patient_id)
