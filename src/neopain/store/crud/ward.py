"""Reading the ward: every open live session with its patient, its stream's status, its
patient's alarm limits and its pause, the unresolved alarms, and the recent P(pain) of each bed
(the station's sparklines). Read-only; the alarm engine and the station use the same reads."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from neopain.store.crud.alarms import alarm_limits, current_pauses
from neopain.store.tables import (
    Alarm, AlarmLimit, AlarmPause, Assessment, LiveStatus, MonitoringSession, Patient,
)


@dataclass(frozen=True)
class Bed:
    """One open live session as the ward sees it (``status``/``limits``/``pause``: None when
    it has none)."""

    session: MonitoringSession
    patient: Patient
    status: LiveStatus | None
    limits: AlarmLimit | None
    pause: AlarmPause | None


def open_beds(db: Session, *, now: datetime) -> list[Bed]:
    """Every open live session, oldest first, with what the ward needs of it."""
    rows = db.execute(select(MonitoringSession, Patient, LiveStatus)
                      .join(Patient, Patient.id == MonitoringSession.patient_id)
                      .outerjoin(LiveStatus, LiveStatus.session_id == MonitoringSession.id)
                      .where(MonitoringSession.source == "live",
                             MonitoringSession.ended_at.is_(None))
                      .order_by(MonitoringSession.id)).all()
    limits = alarm_limits(db, patient_ids=[patient.id for _, patient, _ in rows])
    pauses = current_pauses(db, session_ids=[session.id for session, _, _ in rows], now=now)
    return [Bed(session=session, patient=patient, status=status,
                limits=limits.get(patient.id), pause=pauses.get(session.id))
            for session, patient, status in rows]


def unresolved_alarms(db: Session) -> list[Alarm]:
    """Every alarm not resolved yet, oldest first."""
    return list(db.scalars(select(Alarm).where(Alarm.resolved_at.is_(None))
                           .order_by(Alarm.id)))


def list_alarms(db: Session, *, active_only: bool, patient_id: int | None = None,
                limit: int = 200, offset: int = 0) -> list[Alarm]:
    """Alarms, newest first; only the unresolved ones when ``active_only``, only one patient's
    when ``patient_id`` is given."""
    query = select(Alarm).order_by(Alarm.id.desc()).limit(limit).offset(offset)
    if active_only:
        query = query.where(Alarm.resolved_at.is_(None))
    if patient_id is not None:
        query = query.where(Alarm.patient_id == patient_id)
    return list(db.scalars(query))


def patients_of(db: Session, alarms: list[Alarm]) -> dict[int, Patient]:
    """The patients these alarms are about, by id."""
    ids = {alarm.patient_id for alarm in alarms}
    return {p.id: p for p in db.scalars(select(Patient).where(Patient.id.in_(ids)))}


def recent_smoothed(db: Session, *, session_ids: list[int],
                    since: datetime) -> dict[int, list[tuple[datetime, float]]]:
    """Each session's saved smoothed P(pain) since ``since``, in time order."""
    points: dict[int, list[tuple[datetime, float]]] = defaultdict(list)
    rows = db.execute(select(Assessment.session_id, Assessment.time, Assessment.smoothed)
                      .where(Assessment.session_id.in_(session_ids), Assessment.time >= since,
                             Assessment.smoothed.is_not(None))
                      .order_by(Assessment.session_id, Assessment.time))
    for session_id, time, smoothed in rows:
        points[session_id].append((time, smoothed))
    return dict(points)
