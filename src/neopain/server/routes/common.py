"""What several routes share: a row or a 404 that names only the id, the audit row of a view,
and the patient's history page with its Bed device box (shown by ``pages`` and, with a notice,
by ``uploads`` and ``device_pages``)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from neopain.server.deps import AccessError, server_state
from neopain.server.render import render, view_grant
from neopain.store import crud
from neopain.store.tables import Device, MonitoringSession, Patient, User


def patient_or_404(db: Session, patient_id: int) -> Patient:
    """The patient, or AccessError 404."""
    patient = crud.get_patient(db, patient_id)
    if patient is None:
        raise AccessError(404, f"No patient with id {patient_id}.")
    return patient


def device_or_404(db: Session, device_id: int) -> Device:
    """The bed device, or AccessError 404."""
    device = crud.get_device(db, device_id)
    if device is None:
        raise AccessError(404, f"No device with id {device_id}.")
    return device


def session_or_404(db: Session, session_id: int) -> MonitoringSession:
    """The monitoring session, or AccessError 404."""
    session = crud.get_session(db, session_id)
    if session is None:
        raise AccessError(404, f"No monitoring session with id {session_id}.")
    return session


def audit_view(db: Session, user: User, what: str, object_type: str = "",
               object_id: int | None = None) -> None:
    """One ``view`` audit row: ``what`` names the page or API call, never a value."""
    crud.audit(db, actor=user, action="view", object_type=object_type, object_id=object_id,
               detail=what)


def history_gap_s(request: Request) -> float:
    """The longest pause inside one stretch of a session's timeline (``crud.history``)."""
    return max(crud.history.MAX_GAP_S, 2 * server_state(request).settings.timeline_interval_s)


def history_response(request: Request, db: Session, user: User, patient: Patient, *,
                     status: int = 200, message: str = "") -> Response:
    """The patient's history page (audited as one view), with ``message`` as its notice."""
    snapshots = crud.list_assessments(db, patient_id=patient.id, snapshots_only=True, limit=500)
    summaries = crud.session_summaries(db, patient_id=patient.id,
                                       max_gap_s=history_gap_s(request))
    audit_view(db, user, "history", "patient", patient.id)
    devices = crud.list_devices(db)
    watching = [view for view in devices
                if view.patient is not None and view.patient.id == patient.id]
    free = [view.device for view in devices
            if view.state == "free"]
    return render(request, "history.html", status=status, message=message, patient=patient,
                  snapshots=snapshots, summaries=summaries, watching=watching,
                  free_devices=free,
                  view=view_grant(request, user_id=user.id, patient_id=patient.id))
