"""Lookups shared by the routes: a row or a 404 that names only the id."""

from __future__ import annotations

from sqlalchemy.orm import Session

from neopain.server.deps import AccessError
from neopain.store import crud
from neopain.store.tables import MonitoringSession, Patient


def patient_or_404(db: Session, patient_id: int) -> Patient:
    """The patient, or AccessError 404."""
    patient = crud.get_patient(db, patient_id)
    if patient is None:
        raise AccessError(404, f"No patient with id {patient_id}.")
    return patient


def session_or_404(db: Session, session_id: int) -> MonitoringSession:
    """The monitoring session, or AccessError 404."""
    session = crud.get_session(db, session_id)
    if session is None:
        raise AccessError(404, f"No monitoring session with id {session_id}.")
    return session
