"""The JSON API: the pages' actions for scripts and other systems (OpenAPI schema at
``/api/openapi.json``). Log in with ``POST /api/login``; send the CSRF token it returns as
``X-CSRF-Token`` with every POST and PATCH."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from neopain.server.deps import AccessError, Carer, Db, Offset, RowId, Viewer, csrf_protect
from neopain.server.routes.common import audit_view, patient_or_404, session_or_404
from neopain.server.schemas import (
    AssessmentOut, PatientIn, PatientOut, PatientUpdate, SessionOut,
)
from neopain.store import crud
from neopain.store.session import StoreError

router = APIRouter(prefix="/api", dependencies=[Depends(csrf_protect)])


@router.get("/patients", response_model=list[PatientOut], tags=["patients"])
def list_patients(db: Db, user: Viewer, q: str = Query("", max_length=200),
                  limit: int = Query(100, ge=1, le=1000),
                  offset: Offset = 0) -> list[PatientOut]:
    """Patients whose name or record number contains ``q`` (any case), newest first."""
    patients = crud.search_patients(db, q, limit=limit, offset=offset)
    audit_view(db, user, "api search" if q.strip() else "api list", "patients", None)
    return [PatientOut.of(p) for p in patients]


@router.post("/patients", response_model=PatientOut, status_code=201, tags=["patients"])
def create_patient(db: Db, user: Carer, body: PatientIn) -> PatientOut:
    """Add a patient."""
    try:
        return PatientOut.of(crud.create_patient(db, actor=user, **body.model_dump()))
    except StoreError as error:
        raise AccessError(422, str(error)) from None


@router.get("/patients/{patient_id}", response_model=PatientOut, tags=["patients"])
def get_patient(db: Db, user: Viewer, patient_id: RowId) -> PatientOut:
    """One patient."""
    patient = patient_or_404(db, patient_id)
    audit_view(db, user, "api patient", "patient", patient.id)
    return PatientOut.of(patient)


@router.patch("/patients/{patient_id}", response_model=PatientOut, tags=["patients"])
def update_patient(db: Db, user: Carer, patient_id: RowId, body: PatientUpdate) -> PatientOut:
    """Change the fields given; the others stay."""
    patient = patient_or_404(db, patient_id)
    try:
        crud.update_patient(db, patient, actor=user, **body.model_dump(exclude_unset=True))
    except StoreError as error:
        raise AccessError(422, str(error)) from None
    return PatientOut.of(patient)


@router.get("/patients/{patient_id}/sessions", response_model=list[SessionOut],
            tags=["sessions"])
def list_sessions(db: Db, user: Viewer, patient_id: RowId) -> list[SessionOut]:
    """A patient's monitoring sessions and uploads, newest first."""
    patient = patient_or_404(db, patient_id)
    audit_view(db, user, "api sessions", "patient", patient.id)
    return [SessionOut.of(s) for s in crud.list_sessions(db, patient_id=patient.id)]


@router.post("/patients/{patient_id}/sessions", response_model=SessionOut, status_code=201,
             tags=["sessions"])
def start_live_session(request: Request, db: Db, user: Carer, patient_id: RowId) -> SessionOut:
    """Open a live monitoring session; stream JPEG frames to its ``websocket`` path."""
    patient = patient_or_404(db, patient_id)
    session = crud.start_session(db, actor=user, patient=patient, source="live",
                                 model=request.app.state.live.model_name())
    return SessionOut.of(session)


@router.get("/patients/{patient_id}/assessments", response_model=list[AssessmentOut],
            tags=["assessments"])
def list_patient_assessments(db: Db, user: Viewer, patient_id: RowId,
                             snapshots_only: bool = False,
                             limit: int = Query(1000, ge=1, le=100_000)) -> list[AssessmentOut]:
    """A patient's assessments, newest first; ``snapshots_only`` for the history's pictures."""
    patient = patient_or_404(db, patient_id)
    rows = crud.list_assessments(db, patient_id=patient.id, snapshots_only=snapshots_only,
                                 limit=limit)
    audit_view(db, user, "api assessments", "patient", patient.id)
    return [AssessmentOut.of(r) for r in rows]


@router.get("/sessions/{session_id}", response_model=SessionOut, tags=["sessions"])
def get_session(db: Db, user: Viewer, session_id: RowId) -> SessionOut:
    """One monitoring session."""
    session = session_or_404(db, session_id)
    audit_view(db, user, "api session", "session", session.id)
    return SessionOut.of(session)


@router.get("/sessions/{session_id}/assessments", response_model=list[AssessmentOut],
            tags=["assessments"])
def list_session_assessments(db: Db, user: Viewer, session_id: RowId) -> list[AssessmentOut]:
    """A session's assessments in time order (its P(pain) timeline)."""
    session = session_or_404(db, session_id)
    rows = crud.list_assessments(db, session_id=session.id, newest_first=False)
    audit_view(db, user, "api session assessments", "session", session.id)
    return [AssessmentOut.of(r) for r in rows]


@router.post("/sessions/{session_id}/stop", response_model=SessionOut, tags=["sessions"])
def stop_session(db: Db, user: Carer, session_id: RowId) -> SessionOut:
    """End a live session (a stream still connected is told and closed)."""
    session = session_or_404(db, session_id)
    return SessionOut.of(crud.end_session(db, session, actor=user))
