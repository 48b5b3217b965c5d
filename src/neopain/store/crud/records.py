"""Patient records: patients, monitoring sessions and their assessments."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session, undefer

from neopain.store.crud.base import commit, stage_audit
from neopain.store.session import StoreError
from neopain.store.tables import (
    SOURCES, Assessment, MonitoringSession, Patient, User, utc_now,
)

PATIENT_FIELDS = ("name", "record_number", "birth_date", "gestational_age_weeks", "notes")


# patients ---------------------------------------------------------------------------------------

def create_patient(db: Session, *, actor: User | None, name: str = "", record_number: str = "",
                   birth_date: date | None = None, gestational_age_weeks: float | None = None,
                   notes: str = "") -> Patient:
    """Add a patient (a name or a record number is required) and audit it.

    Raises:
        StoreError: neither a name nor a record number, or a gestational age outside 20–45
            weeks.
    """
    patient = Patient(name=name, record_number=record_number, birth_date=birth_date,
                      gestational_age_weeks=gestational_age_weeks, notes=notes,
                      created_by=None if actor is None else actor.id)
    _check_patient(patient)
    db.add(patient)
    db.flush()
    stage_audit(db, actor, "create", "patient", patient.id)
    commit(db, "create patient")
    return patient


def update_patient(db: Session, patient: Patient, *, actor: User | None,
                   **fields: object) -> Patient:
    """Change some of a patient's fields (``PATIENT_FIELDS``) and audit which ones.

    Raises:
        StoreError: an unknown field, or a change that breaks the rules of ``create_patient``.
    """
    unknown = sorted(set(fields) - set(PATIENT_FIELDS))
    if unknown:
        raise StoreError(f"unknown patient field(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(PATIENT_FIELDS)}")
    changed = [key for key, value in fields.items() if getattr(patient, key) != value]
    for key in changed:
        setattr(patient, key, fields[key])
    _check_patient(patient)
    stage_audit(db, actor, "update", "patient", patient.id, "fields: " + ", ".join(changed))
    commit(db, "update patient")
    return patient


def _check_patient(patient: Patient) -> None:
    if not (patient.name or "").strip() and not (patient.record_number or "").strip():
        raise StoreError("a patient needs a name or a record number")
    weeks = patient.gestational_age_weeks
    if weeks is not None and not 20 <= weeks <= 45:
        raise StoreError(f"gestational_age_weeks={weeks} is outside the valid 20–45 weeks")


def get_patient(db: Session, patient_id: int) -> Patient | None:
    """The patient with this id, or None."""
    return db.get(Patient, patient_id)


def search_patients(db: Session, query: str = "", *, limit: int = 100,
                    offset: int = 0) -> list[Patient]:
    """Patients whose name or record number contains ``query`` (any case), newest first."""
    statement = select(Patient).order_by(Patient.id.desc()).limit(limit).offset(offset)
    text = query.strip()
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        statement = statement.where(or_(Patient.name.ilike(pattern, escape="\\"),
                                        Patient.record_number.ilike(pattern, escape="\\")))
    return list(db.scalars(statement))


# monitoring sessions ----------------------------------------------------------------------------

def start_session(db: Session, *, actor: User | None, patient: Patient, source: str,
                  model: str) -> MonitoringSession:
    """Open a monitoring session (``source`` live, image or video) and audit it."""
    session = _stage_start(db, actor=actor, patient=patient, source=source, model=model)
    commit(db, "start session")
    return session


def _stage_start(db: Session, *, actor: User | None, patient: Patient, source: str,
                 model: str) -> MonitoringSession:
    if source not in SOURCES:
        raise StoreError(f"source={source!r} is not a session source; valid: {', '.join(SOURCES)}")
    session = MonitoringSession(patient_id=patient.id, user_id=None if actor is None else actor.id,
                                source=source, model=model)
    db.add(session)
    db.flush()
    stage_audit(db, actor, "start", "session", session.id, f"patient={patient.id} source={source}")
    return session


def _stage_end(db: Session, session: MonitoringSession, *, actor: User | None,
               when: datetime) -> None:
    session.ended_at = when
    stage_audit(db, actor, "stop", "session", session.id, f"patient={session.patient_id}")


def end_session(db: Session, session: MonitoringSession, *,
                actor: User | None) -> MonitoringSession:
    """Close a session (once; closing a closed one changes nothing) and audit it. A
    conditional update, so a Stop racing the idle sweep (or another Stop) ends it and audits
    it once."""
    if session.ended_at is not None:
        return session
    if _stage_end_once(db, session, actor=actor, when=utc_now()):
        commit(db, "end session")
    db.refresh(session)
    return session


def _stage_end_once(db: Session, session: MonitoringSession, *, actor: User | None,
                    when: datetime) -> bool:
    """Stage the end of an open session and its ``stop`` audit row, as a conditional update:
    whether this call ended it (False: a Stop or the idle sweep did meanwhile)."""
    ended = db.execute(update(MonitoringSession)
                       .where(MonitoringSession.id == session.id,
                              MonitoringSession.ended_at.is_(None))
                       .values(ended_at=when).execution_options(synchronize_session=False))
    if ended.rowcount != 1:
        return False
    stage_audit(db, actor, "stop", "session", session.id, f"patient={session.patient_id}")
    return True


def get_session(db: Session, session_id: int, *,
                fresh: bool = False) -> MonitoringSession | None:
    """The monitoring session with this id, or None; ``fresh`` reads it from the database
    even when this ``db`` has it already (to see a stop made elsewhere)."""
    return db.get(MonitoringSession, session_id, populate_existing=fresh)


def list_sessions(db: Session, *, patient_id: int) -> list[MonitoringSession]:
    """A patient's sessions, newest first."""
    return list(db.scalars(select(MonitoringSession)
                           .where(MonitoringSession.patient_id == patient_id)
                           .order_by(MonitoringSession.id.desc())))


# assessments ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NewAssessment:
    """What an assessed frame or image adds to the record (``crud.add_assessment``).

    ``face_box`` is (x1, y1, x2, y2) in frame pixels; ``snapshot`` JPEG bytes or None.
    """

    face_found: bool
    model: str
    latency_ms: float
    offset_s: float = 0.0
    label: str | None = None
    prob_pain: float | None = None
    smoothed: float | None = None
    state: str | None = None
    uncertain: bool = False
    changed: bool = False
    face_box: Sequence[float] | None = None
    snapshot: bytes | None = None
    time: datetime | None = None


def _assessment_row(session: MonitoringSession, assessment: NewAssessment) -> Assessment:
    values = asdict(assessment)
    box = values.pop("face_box")
    snapshot = values.pop("snapshot")
    values["time"] = values["time"] or utc_now()
    return Assessment(session_id=session.id, patient_id=session.patient_id,
                      face_box=None if box is None else json.dumps([round(v, 1) for v in box]),
                      has_snapshot=snapshot is not None, snapshot=snapshot, **values)


def add_assessment(db: Session, *, session: MonitoringSession, assessment: NewAssessment,
                   allowed: Callable[[], bool] | None = None) -> Assessment:
    """Append an assessment to a session and commit: once this returns, it is on disk.

    ``allowed`` is asked after the row is written and before the commit; False rolls it back.
    On SQLite the write holds the database's write lock, so the answer reflects every change
    committed before this save (a logout or deactivation cannot slip in between).

    Raises:
        StoreError: a session that has ended, values outside their ranges, or ``allowed``
            said no.
    """
    if session.ended_at is not None:
        raise StoreError(f"session {session.id} has ended; start a new one")
    row = _assessment_row(session, assessment)
    db.add(row)
    if allowed is not None:
        db.flush()
        if not allowed():
            db.rollback()
            raise StoreError(f"session {session.id}: not saved; the stream may not go on")
    commit(db, f"save assessment of session {session.id}")
    return row


def record_image(db: Session, *, actor: User | None, patient: Patient,
                 assessment: NewAssessment) -> tuple[MonitoringSession, Assessment]:
    """An uploaded image's session and its one assessment, started, saved and ended in one
    transaction: a failure leaves no session behind. Audited as a start and a stop."""
    session = _stage_start(db, actor=actor, patient=patient, source="image",
                           model=assessment.model)
    row = _assessment_row(session, assessment)
    db.add(row)
    _stage_end(db, session, actor=actor, when=row.time)
    commit(db, "save uploaded image")
    return session, row


def discard_session(db: Session, session: MonitoringSession, *, actor: User | None) -> None:
    """Remove a session that failed half-way (an upload that crashed) with its assessments,
    in one transaction, and audit it."""
    db.execute(delete(Assessment).where(Assessment.session_id == session.id))
    db.execute(delete(MonitoringSession).where(MonitoringSession.id == session.id))
    stage_audit(db, actor, "discard", "session", session.id, f"patient={session.patient_id}")
    commit(db, "discard session")


def last_snapshot_state(db: Session, *, session_id: int) -> str | None:
    """The state a session's newest snapshot showed, ``uncertain`` for a referred one (what a
    resumed stream continues from)."""
    return db.scalar(select(Assessment.shown_state)
                     .where(Assessment.session_id == session_id, Assessment.has_snapshot)
                     .order_by(Assessment.id.desc()).limit(1))


def get_assessment(db: Session, assessment_id: int, *,
                   with_snapshot: bool = False) -> Assessment | None:
    """The assessment with this id (its snapshot bytes loaded when asked), or None."""
    options = [undefer(Assessment.snapshot)] if with_snapshot else []
    return db.get(Assessment, assessment_id, options=options)


def list_assessments(db: Session, *, patient_id: int | None = None, session_id: int | None = None,
                     snapshots_only: bool = False, limit: int | None = None,
                     newest_first: bool = True) -> list[Assessment]:
    """Assessments of a patient or a session (snapshot bytes not loaded)."""
    if patient_id is None and session_id is None:
        raise StoreError("list_assessments needs patient_id or session_id")
    statement = select(Assessment)
    if patient_id is not None:
        statement = statement.where(Assessment.patient_id == patient_id)
    if session_id is not None:
        statement = statement.where(Assessment.session_id == session_id)
    if snapshots_only:
        statement = statement.where(Assessment.has_snapshot)
    order = Assessment.id.desc() if newest_first else Assessment.id
    return list(db.scalars(statement.order_by(order).limit(limit)))


def count_assessments(db: Session, *, session_id: int) -> int:
    """How many assessments a session has recorded."""
    return db.scalar(select(func.count()).select_from(Assessment)
                     .where(Assessment.session_id == session_id)) or 0
