"""crud: the rules records keep (identified patients, plausible gestational age, closed sessions
take nothing), search that treats % and _ as text, and audit rows that say who did what without
copying patient data."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from sqlalchemy import select

from neopain.store import crud
from neopain.store.crud import NewAssessment
from neopain.store.session import StoreError, open_store
from neopain.store.tables import Assessment, AuditEntry


@pytest.fixture()
def db(database_url):
    factory = open_store(database_url)
    with factory() as session:
        yield session


@pytest.fixture()
def nurse(db):
    return crud.create_user(db, username="nurse", password_hash="h", role="clinician")


def test_users_have_unique_names_and_known_roles(db):
    assert crud.count_users(db) == 0
    crud.create_user(db, username="ada", password_hash="h", role="admin")
    with pytest.raises(StoreError, match="username='ada' is taken"):
        crud.create_user(db, username="ada", password_hash="h", role="clinician")
    with pytest.raises(StoreError, match="role='nurse'.*valid: admin, clinician, researcher"):
        crud.create_user(db, username="bob", password_hash="h", role="nurse")
    assert crud.count_users(db) == 1


def test_a_patient_needs_a_name_or_record_number_and_a_plausible_gestational_age(db, nurse):
    with pytest.raises(StoreError, match="name or a record number"):
        crud.create_patient(db, actor=nurse, name="  ")
    with pytest.raises(StoreError, match="gestational_age_weeks=50"):
        crud.create_patient(db, actor=nurse, record_number="R1", gestational_age_weeks=50)
    patient = crud.create_patient(db, actor=nurse, name="Baby Silva", birth_date=date(2026, 11, 1),
                                  gestational_age_weeks=31.5)
    assert crud.get_patient(db, patient.id).gestational_age_weeks == 31.5
    with pytest.raises(StoreError, match="name or a record number"):
        crud.update_patient(db, patient, actor=nurse, name="")
    with pytest.raises(StoreError, match="unknown patient field"):
        crud.update_patient(db, patient, actor=nurse, ward="3")


def test_search_matches_name_or_record_number_and_takes_wildcards_literally(db, nurse):
    crud.create_patient(db, actor=nurse, name="Baby Silva", record_number="HC-100")
    crud.create_patient(db, actor=nurse, name="Baby Souza", record_number="HC-200")
    crud.create_patient(db, actor=nurse, name="100% sure")
    assert {p.name for p in crud.search_patients(db, "silva")} == {"Baby Silva"}
    assert {p.name for p in crud.search_patients(db, "hc-2")} == {"Baby Souza"}
    assert {p.name for p in crud.search_patients(db, "%")} == {"100% sure"}
    assert crud.search_patients(db, "_") == []
    assert len(crud.search_patients(db, "")) == 3


def test_audit_rows_name_the_actor_and_object_but_never_patient_values(db, nurse):
    patient = crud.create_patient(db, actor=nurse, name="Baby Silva", record_number="HC-100",
                                  notes="mother: Maria")
    crud.update_patient(db, patient, actor=nurse, notes="transferred", name="Baby Silva")
    crud.audit(db, actor=nurse, action="view", object_type="patient", object_id=patient.id,
               detail="history")
    rows = db.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(r.username, r.action, r.object_type, r.object_id) for r in rows[-3:]] == [
        ("nurse", "create", "patient", patient.id), ("nurse", "update", "patient", patient.id),
        ("nurse", "view", "patient", patient.id)]
    assert rows[-2].detail == "fields: notes"
    for row in rows:
        for secret in ("Silva", "HC-100", "Maria", "transferred"):
            assert secret not in row.detail


def test_assessments_are_committed_in_order_and_a_closed_session_takes_no_more(db, nurse):
    patient = crud.create_patient(db, actor=nurse, record_number="R1")
    session = crud.start_session(db, actor=nurse, patient=patient, source="live", model="nfcs")
    first = crud.add_assessment(db, session=session, assessment=NewAssessment(
        face_found=True, model="nfcs", latency_ms=12.0, label="nopain", prob_pain=0.2,
        state="nopain", changed=True, face_box=(1.04, 2, 30, 40), snapshot=b"jpeg"))
    crud.add_assessment(db, session=session, assessment=NewAssessment(
        face_found=True, model="nfcs", latency_ms=11.0, label="pain", prob_pain=0.8,
        state="nopain"))
    assert crud.last_snapshot_state(db, session_id=session.id) == "nopain"
    snapshots = crud.list_assessments(db, patient_id=patient.id, snapshots_only=True)
    assert [a.id for a in snapshots] == [first.id]
    assert crud.get_assessment(db, first.id, with_snapshot=True).snapshot == b"jpeg"
    assert first.face_box == "[1.0, 2, 30, 40]" and first.confidence == pytest.approx(0.8)
    crud.end_session(db, session, actor=nurse)
    with pytest.raises(StoreError, match="has ended"):
        crud.add_assessment(db, session=session, assessment=NewAssessment(
            face_found=False, model="nfcs", latency_ms=1.0))
    assert crud.count_assessments(db, session_id=session.id) == 2


def test_times_come_back_as_utc_whatever_zone_went_in(db, nurse):
    patient = crud.create_patient(db, actor=nurse, record_number="R1")
    session = crud.start_session(db, actor=nurse, patient=patient, source="image", model="m")
    local = datetime.fromisoformat("2026-11-22T09:30:00-03:00")
    row = crud.add_assessment(db, session=session, assessment=NewAssessment(
        face_found=False, model="m", latency_ms=1.0, time=local))
    db.expire_all()
    stored = db.get(Assessment, row.id).time
    assert stored == local and stored.tzinfo == timezone.utc and stored.hour == 12
    with pytest.raises(Exception, match="no time zone"):
        crud.add_assessment(db, session=session, assessment=NewAssessment(
            face_found=False, model="m", latency_ms=1.0, time=datetime(2026, 1, 1)))


def test_a_deactivated_user_loses_their_logins(db, nurse):
    later = datetime(2999, 1, 1, tzinfo=timezone.utc)
    crud.create_login_session(db, user=nurse, token_hash="t" * 64, expires_at=later)
    assert crud.find_login_session(db, "t" * 64).user.username == "nurse"
    crud.update_user(db, nurse, actor=None, active=False)
    assert crud.find_login_session(db, "t" * 64) is None


def test_expired_logins_are_not_found(db, nurse):
    past = datetime(2020, 1, 1, tzinfo=timezone.utc)
    crud.create_login_session(db, user=nurse, token_hash="e" * 64, expires_at=past)
    assert crud.find_login_session(db, "e" * 64) is None
