"""The HTML pages: patient list and search, new/edit patient, history, profile with charts,
snapshot images, the live page, instructions, and the admin's users and audit pages.

Every view of patient data adds an audit row; the detail names the page, never a value.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from neopain.prediction import default_kind
from neopain.server import charts, security
from neopain.server.deps import (
    Admin, Carer, Db, RowId, Viewer, csrf_protect, server_state,
)
from neopain.server.render import display_zone, render
from neopain.server.routes.common import patient_or_404, session_or_404
from neopain.server.schemas import PatientIn
from neopain.store import crud
from neopain.store.session import StoreError
from neopain.store.tables import ROLES, User

router = APIRouter(dependencies=[Depends(csrf_protect)], include_in_schema=False)
SVG = "image/svg+xml"
FORM_FIELDS = ("name", "record_number", "birth_date", "gestational_age_weeks", "notes")
PROFILE_SESSIONS = 10


def _view(db: Session, user: User, what: str, object_type: str, object_id: int | None) -> None:
    crud.audit(db, actor=user, action="view", object_type=object_type, object_id=object_id,
               detail=what)


@router.get("/patients")
def patient_list(request: Request, db: Db, user: Viewer, q: str = "") -> Response:
    patients = crud.search_patients(db, q[:200])
    _view(db, user, "search" if q.strip() else "list", "patients", None)
    return render(request, "patients.html", patients=patients, q=q)


def _form_values(form: dict[str, str]) -> dict[str, object]:
    values: dict[str, object] = {k: form.get(k, "").strip() for k in FORM_FIELDS}
    for key in ("birth_date", "gestational_age_weeks"):
        values[key] = values[key] or None
    return values


def _form_problems(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}"
                     for e in error.errors())


@router.get("/patients/new")
def new_patient_page(request: Request, user: Carer) -> Response:
    return render(request, "patient_form.html", patient=None, values={})


@router.post("/patients")
async def create_patient_form(request: Request, user: Carer) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    try:
        fields = PatientIn(**_form_values(form))
    except ValidationError as error:
        return render(request, "patient_form.html", status=422, patient=None, values=form,
                      message=f"Not saved: {_form_problems(error)}")
    try:
        with server_state(request).store() as db:
            patient = crud.create_patient(db, actor=user, **fields.model_dump())
    except StoreError as error:
        return render(request, "patient_form.html", status=422, patient=None, values=form,
                      message=f"Not saved: {error}")
    return RedirectResponse(f"/patients/{patient.id}", status_code=303)


@router.get("/patients/{patient_id}")
def history_page(request: Request, db: Db, user: Viewer, patient_id: RowId) -> Response:
    patient = patient_or_404(db, patient_id)
    snapshots = crud.list_assessments(db, patient_id=patient.id, snapshots_only=True, limit=500)
    sessions = crud.list_sessions(db, patient_id=patient.id)
    _view(db, user, "history", "patient", patient.id)
    return render(request, "history.html", patient=patient, snapshots=snapshots,
                  sessions=sessions)


@router.get("/patients/{patient_id}/edit")
def edit_patient_page(request: Request, db: Db, user: Carer, patient_id: RowId) -> Response:
    patient = patient_or_404(db, patient_id)
    _view(db, user, "edit form", "patient", patient.id)
    values = {k: "" if getattr(patient, k) is None else str(getattr(patient, k))
              for k in FORM_FIELDS}
    return render(request, "patient_form.html", patient=patient, values=values)


@router.post("/patients/{patient_id}/edit")
async def edit_patient(request: Request, user: Carer, patient_id: RowId) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    with server_state(request).store() as db:
        patient = patient_or_404(db, patient_id)
        try:
            fields = PatientIn(**_form_values(form))
        except ValidationError as error:
            return render(request, "patient_form.html", status=422, patient=patient,
                          values=form, message=f"Not saved: {_form_problems(error)}")
        crud.update_patient(db, patient, actor=user, **fields.model_dump())
    return RedirectResponse(f"/patients/{patient_id}", status_code=303)


@router.get("/patients/{patient_id}/profile")
def profile_page(request: Request, db: Db, user: Viewer, patient_id: RowId) -> Response:
    patient = patient_or_404(db, patient_id)
    sessions = [s for s in crud.list_sessions(db, patient_id=patient.id)
                if s.source in ("live", "video")][:PROFILE_SESSIONS]
    counts = {s.id: crud.count_assessments(db, session_id=s.id) for s in sessions}
    _view(db, user, "profile", "patient", patient.id)
    return render(request, "profile.html", patient=patient, sessions=sessions, counts=counts)


@router.get("/patients/{patient_id}/charts/{by}.svg")
def share_chart_svg(db: Db, user: Viewer, request: Request, patient_id: RowId, by: str) -> Response:
    patient = patient_or_404(db, patient_id)
    if by not in ("day", "hour"):
        return Response("Unknown chart; valid: day.svg, hour.svg", status_code=404)
    rows = crud.list_assessments(db, patient_id=patient.id, newest_first=False)
    _view(db, user, f"chart by {by}", "patient", patient.id)
    svg = charts.share_chart([r.time for r in rows], [r.label for r in rows], by=by,
                             zone=display_zone(server_state(request).settings))
    return Response(svg, media_type=SVG, headers={"Cache-Control": "no-store"})


@router.get("/sessions/{session_id}/timeline.svg")
def timeline_svg(db: Db, user: Viewer, session_id: RowId) -> Response:
    session = session_or_404(db, session_id)
    rows = crud.list_assessments(db, session_id=session.id, newest_first=False)
    _view(db, user, "session timeline", "session", session.id)
    svg = charts.timeline_chart([r.offset_s for r in rows], [r.prob_pain for r in rows],
                                [r.smoothed for r in rows], [r.state for r in rows],
                                [r.has_snapshot for r in rows])
    return Response(svg, media_type=SVG, headers={"Cache-Control": "no-store"})


@router.get("/assessments/{assessment_id}/snapshot.jpg")
def snapshot(db: Db, user: Viewer, assessment_id: RowId) -> Response:
    row = crud.get_assessment(db, assessment_id, with_snapshot=True)
    if row is None or row.snapshot is None:
        return Response("No such snapshot", status_code=404)
    _view(db, user, "snapshot", "assessment", row.id)
    return Response(row.snapshot, media_type="image/jpeg",
                    headers={"Cache-Control": "private, no-store"})


@router.get("/patients/{patient_id}/live")
def live_page(request: Request, db: Db, user: Carer, patient_id: RowId) -> Response:
    patient = patient_or_404(db, patient_id)
    _view(db, user, "live page", "patient", patient.id)
    return render(request, "live.html", patient=patient,
                  model=server_state(request).settings.model or default_kind())


@router.get("/instructions")
def instructions(request: Request, user: Viewer) -> Response:
    return render(request, "instructions.html")


@router.get("/users")
def users_page(request: Request, db: Db, user: Admin) -> Response:
    return render(request, "users.html", users=crud.list_users(db), roles=ROLES)


@router.post("/users")
def create_user(request: Request, db: Db, user: Admin,
                username: Annotated[str, Form(max_length=64)],
                role: Annotated[str, Form(max_length=16)],
                password: Annotated[str, Form(max_length=1024)]) -> Response:
    try:
        security.check_username(username)
        security.check_password(password, username=username)
        crud.create_user(db, username=username, role=role, actor=user,
                         password_hash=security.hash_password(password))
    except (security.CredentialsError, StoreError) as error:
        return render(request, "users.html", status=422, users=crud.list_users(db),
                      roles=ROLES, message=str(error))
    return RedirectResponse("/users", status_code=303)


@router.post("/users/{user_id}")
def update_user(request: Request, db: Db, user: Admin, user_id: RowId,
                role: Annotated[str, Form(max_length=16)],
                active: Annotated[bool, Form()] = False) -> Response:
    target = crud.get_user(db, user_id)
    if target is None:
        return render(request, "error.html", status=404, message=f"No user {user_id}.")
    if target.id == user.id and (role != "admin" or not active):
        return render(request, "users.html", status=422, users=crud.list_users(db),
                      roles=ROLES, message="You cannot remove your own admin access.")
    try:
        crud.update_user(db, target, actor=user, role=role, active=active)
    except StoreError as error:
        return render(request, "users.html", status=422, users=crud.list_users(db),
                      roles=ROLES, message=str(error))
    return RedirectResponse("/users", status_code=303)


@router.get("/audit")
def audit_page(request: Request, db: Db, user: Admin) -> Response:
    return render(request, "audit.html", entries=crud.list_audit(db, limit=500))

