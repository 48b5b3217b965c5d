"""Every read and write of the records: the one module that commits.

Each function that changes data commits before it returns, so a caller that gets a row back
knows it is on disk; changes of patient data add their audit row in the same transaction.
Functions take the SQLAlchemy ``Session`` first and everything else by keyword.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, undefer

from neopain.store.session import StoreError
from neopain.store.tables import (
    ROLES, SOURCES, Assessment, AuditEntry, LoginSession, MonitoringSession, Patient, User,
    utc_now,
)

PATIENT_FIELDS = ("name", "record_number", "birth_date", "gestational_age_weeks", "notes")


def _commit(db: Session, what: str) -> None:
    try:
        db.commit()
    except IntegrityError as error:
        db.rollback()
        # the constraint's name, never the values (they may be patient data)
        # the first line names the constraint; PostgreSQL's DETAIL line would echo the values
        reason = (str(error.orig).splitlines() or [""])[0]
        raise StoreError(f"{what}: refused by the database ({reason})") from None


def _audit(db: Session, actor: User | None, action: str, object_type: str = "",
           object_id: int | None = None, detail: str = "") -> None:
    db.add(AuditEntry(user_id=None if actor is None else actor.id,
                      username="" if actor is None else actor.username, action=action,
                      object_type=object_type, object_id=object_id, detail=detail[:200]))


def audit(db: Session, *, actor: User | None, action: str, object_type: str = "",
          object_id: int | None = None, detail: str = "") -> None:
    """Record that ``actor`` did ``action`` (e.g. ``"view"``) on an object, and commit.

    ``detail`` must not hold patient data: name the page or field, never a value.
    """
    _audit(db, actor, action, object_type, object_id, detail)
    _commit(db, f"audit {action}")


def list_audit(db: Session, *, limit: int = 200) -> list[AuditEntry]:
    """The newest audit rows first."""
    return list(db.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)))


# users ------------------------------------------------------------------------------------------

def count_users(db: Session) -> int:
    """How many accounts exist (the one-time setup page works only while this is 0)."""
    return db.scalar(select(func.count()).select_from(User)) or 0


def create_user(db: Session, *, username: str, password_hash: str, role: str,
                actor: User | None = None) -> User:
    """Add an account.

    Raises:
        StoreError: an unknown role or a username that is taken.
    """
    if role not in ROLES:
        raise StoreError(f"role={role!r} is not a role; valid: {', '.join(ROLES)}")
    if find_user(db, username) is not None:
        raise StoreError(f"username={username!r} is taken; choose another")
    user = User(username=username, password_hash=password_hash, role=role, active=True)
    db.add(user)
    db.flush()
    _audit(db, actor, "create", "user", user.id, f"role={role}")
    _commit(db, f"create user {username!r}")
    return user


def get_user(db: Session, user_id: int) -> User | None:
    """The user with this id, or None."""
    return db.get(User, user_id)


def find_user(db: Session, username: str) -> User | None:
    """The user with this username, or None."""
    return db.scalar(select(User).where(User.username == username))


def list_users(db: Session) -> list[User]:
    """All accounts by username."""
    return list(db.scalars(select(User).order_by(User.username)))


def update_user(db: Session, user: User, *, actor: User | None, password_hash: str | None = None,
                role: str | None = None, active: bool | None = None) -> User:
    """Change a user's password hash, role or active flag; a new password or deactivation
    ends the user's open logins.

    Raises:
        StoreError: an unknown role.
    """
    changes = []
    if role is not None:
        if role not in ROLES:
            raise StoreError(f"role={role!r} is not a role; valid: {', '.join(ROLES)}")
        user.role = role
        changes.append(f"role={role}")
    if active is not None:
        user.active = active
        changes.append(f"active={active}")
    if password_hash is not None:
        user.password_hash = password_hash
        changes.append("password")
    if active is False or password_hash is not None:
        db.execute(delete(LoginSession).where(LoginSession.user_id == user.id))
    _audit(db, actor, "update", "user", user.id, ", ".join(changes))
    _commit(db, f"update user {user.username!r}")
    return user


# login sessions ---------------------------------------------------------------------------------

def create_login_session(db: Session, *, user: User, token_hash: str,
                         expires_at: datetime) -> LoginSession:
    """Remember a logged-in browser by the hash of its token; audit the login."""
    login = LoginSession(user_id=user.id, token_hash=token_hash, expires_at=expires_at)
    db.add(login)
    _audit(db, user, "login", "user", user.id)
    _commit(db, "login")
    return login


def find_login_session(db: Session, token_hash: str) -> LoginSession | None:
    """The unexpired login of an active user with this token hash, or None."""
    login = db.scalar(select(LoginSession).where(LoginSession.token_hash == token_hash))
    if login is None or login.expires_at <= utc_now() or not login.user.active:
        return None
    return login


def end_login_session(db: Session, token_hash: str, *, actor: User | None) -> None:
    """Forget a login (logout) and every expired one."""
    db.execute(delete(LoginSession).where(or_(LoginSession.token_hash == token_hash,
                                              LoginSession.expires_at <= utc_now())))
    _audit(db, actor, "logout", "user", None if actor is None else actor.id)
    _commit(db, "logout")


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
    _audit(db, actor, "create", "patient", patient.id)
    _commit(db, "create patient")
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
    _audit(db, actor, "update", "patient", patient.id, "fields: " + ", ".join(changed))
    _commit(db, "update patient")
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
    if source not in SOURCES:
        raise StoreError(f"source={source!r} is not a session source; valid: {', '.join(SOURCES)}")
    session = MonitoringSession(patient_id=patient.id, user_id=None if actor is None else actor.id,
                                source=source, model=model)
    db.add(session)
    db.flush()
    _audit(db, actor, "start", "session", session.id, f"patient={patient.id} source={source}")
    _commit(db, "start session")
    return session


def resume_session(db: Session, session: MonitoringSession, *, actor: User | None) -> None:
    """Audit that a live session's stream reconnected."""
    audit(db, actor=actor, action="resume", object_type="session", object_id=session.id,
          detail=f"patient={session.patient_id}")


def end_session(db: Session, session: MonitoringSession, *,
                actor: User | None) -> MonitoringSession:
    """Close a session (once; closing a closed one changes nothing) and audit it."""
    if session.ended_at is None:
        session.ended_at = utc_now()
        _audit(db, actor, "stop", "session", session.id, f"patient={session.patient_id}")
        _commit(db, "end session")
    return session


def get_session(db: Session, session_id: int) -> MonitoringSession | None:
    """The monitoring session with this id, or None."""
    return db.get(MonitoringSession, session_id)


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
    changed: bool = False
    face_box: Sequence[float] | None = None
    snapshot: bytes | None = None
    time: datetime | None = None


def add_assessment(db: Session, *, session: MonitoringSession,
                   assessment: NewAssessment) -> Assessment:
    """Append an assessment to a session and commit: once this returns, it is on disk.

    Raises:
        StoreError: a session that has ended, or values outside their ranges.
    """
    if session.ended_at is not None:
        raise StoreError(f"session {session.id} has ended; start a new one")
    values = asdict(assessment)
    box = values.pop("face_box")
    snapshot = values.pop("snapshot")
    values["time"] = values["time"] or utc_now()
    row = Assessment(session_id=session.id, patient_id=session.patient_id,
                     face_box=None if box is None else json.dumps([round(v, 1) for v in box]),
                     has_snapshot=snapshot is not None, snapshot=snapshot, **values)
    db.add(row)
    _commit(db, f"save assessment of session {session.id}")
    return row


def last_snapshot_state(db: Session, *, session_id: int) -> str | None:
    """The state of a session's newest snapshot (what a resumed stream continues from)."""
    return db.scalar(select(Assessment.state)
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
