"""The HTML pages: patient list and search, new/edit patient, history, profile with charts,
snapshot images, the live page, instructions, and the admin's users and audit pages.

Every view of patient data adds an audit row; the detail names the page, never a value. The
pictures and charts a page shows carry its view grant (``render.view_grant``) and add no row of
their own; fetched without it, each is audited as a view.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from neopain.prediction import default_kind
from neopain.server import charts, security
from neopain.server.chart_worker import ChartJob, ChartUnavailable, chart_job, chart_worker
from neopain.server.deps import (
    MAX_ROW_ID, Admin, Carer, Db, Offset, RowId, Viewer, csrf_protect, server_state,
)
from neopain.server.render import (
    day_end, day_start, display_zone, render, view_grant, view_granted,
)
from neopain.server.routes.common import (
    audit_view, history_gap_s, history_response, patient_or_404, session_or_404,
)
from neopain.server.schemas import PatientIn, form_problems
from neopain.server.ward import STATE_TEXT, ward_view
from neopain.store import crud
from neopain.store.session import StoreError
from neopain.store.tables import ROLES, User, utc_now

router = APIRouter(dependencies=[Depends(csrf_protect)], include_in_schema=False)
SVG = "image/svg+xml"
FORM_FIELDS = ("name", "record_number", "birth_date", "gestational_age_weeks", "notes")
PROFILE_SESSIONS = 10
AUDIT_PAGE = 50
ViewGrant = Annotated[str, Query(max_length=200)]


def _part_view(request: Request, db: Session, user: User, *, view: str, patient_id: int,
               what: str, object_type: str, object_id: int) -> None:
    """Audit a picture or chart unless it is part of a page view that was audited."""
    if not view_granted(request, view, user_id=user.id, patient_id=patient_id):
        audit_view(db, user, what, object_type, object_id)


@router.get("/patients")
def patient_list(request: Request, db: Db, user: Viewer, q: str = "") -> Response:
    patients = crud.search_patients(db, q[:200])
    audit_view(db, user, "search" if q.strip() else "list", "patients", None)
    ward = ward_view(db, stale_s=server_state(request).settings.stale_s, now=utc_now())
    return render(request, "patients.html", patients=patients, q=q, state_text=STATE_TEXT,
                  beds={bed.patient_id: bed for bed in ward.beds})


def _form_values(form: dict[str, str]) -> dict[str, object]:
    values: dict[str, object] = {k: form.get(k, "").strip() for k in FORM_FIELDS}
    for key in ("birth_date", "gestational_age_weeks"):
        values[key] = values[key] or None
    return values


def _refused_form(request: Request, patient: object, form: dict[str, str],
                  error: ValidationError) -> Response:
    problems = form_problems(error)
    return render(request, "patient_form.html", status=422, patient=patient, values=form,
                  problems=problems, message="Not saved: " + " ".join(problems.values()))


@router.get("/patients/new")
def new_patient_page(request: Request, user: Carer) -> Response:
    return render(request, "patient_form.html", patient=None, values={}, problems={})


@router.post("/patients")
async def create_patient_form(request: Request, user: Carer) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    try:
        fields = PatientIn(**_form_values(form))
    except ValidationError as error:
        return _refused_form(request, None, form, error)
    try:
        with server_state(request).store() as db:
            patient = crud.create_patient(db, actor=user, **fields.model_dump())
    except StoreError as error:
        return render(request, "patient_form.html", status=422, patient=None, values=form,
                      problems={}, message=f"Not saved: {error}")
    return RedirectResponse(f"/patients/{patient.id}", status_code=303)


@router.get("/patients/{patient_id}")
def history_page(request: Request, db: Db, user: Viewer, patient_id: RowId) -> Response:
    return history_response(request, db, user, patient_or_404(db, patient_id))


@router.get("/patients/{patient_id}/edit")
def edit_patient_page(request: Request, db: Db, user: Carer, patient_id: RowId) -> Response:
    patient = patient_or_404(db, patient_id)
    audit_view(db, user, "edit form", "patient", patient.id)
    values = {k: "" if getattr(patient, k) is None else str(getattr(patient, k))
              for k in FORM_FIELDS}
    return render(request, "patient_form.html", patient=patient, values=values, problems={})


@router.post("/patients/{patient_id}/edit")
async def edit_patient(request: Request, user: Carer, patient_id: RowId) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    with server_state(request).store() as db:
        patient = patient_or_404(db, patient_id)
        try:
            fields = PatientIn(**_form_values(form))
        except ValidationError as error:
            return _refused_form(request, patient, form, error)
        crud.update_patient(db, patient, actor=user, **fields.model_dump())
    return RedirectResponse(f"/patients/{patient_id}", status_code=303)


@router.get("/patients/{patient_id}/profile")
def profile_page(request: Request, db: Db, user: Viewer, patient_id: RowId,
                 session: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None) -> Response:
    """The patient's details, charts and the timelines of the newest live and video sessions,
    and of ``session`` (a link from the history's sessions table) whatever its kind."""
    patient = patient_or_404(db, patient_id)
    summaries = crud.session_summaries(db, patient_id=patient.id, max_gap_s=history_gap_s(request))
    shown = [s for s in summaries if s.session.source in ("live", "video")][:PROFILE_SESSIONS]
    asked = [s for s in summaries if s.session.id == session and s not in shown]
    audit_view(db, user, "profile", "patient", patient.id)
    return render(request, "profile.html", patient=patient, summaries=asked + shown,
                  view=view_grant(request, user_id=user.id, patient_id=patient.id))


@router.get("/patients/{patient_id}/charts/{by}.svg")
async def share_chart_svg(request: Request, db: Db, user: Viewer, patient_id: RowId, by: str,
                          view: ViewGrant = "") -> Response:
    """Assessments and pain share by day or by hour of day, drawn by the chart worker."""
    job = await run_in_threadpool(_share_chart_job, request, db, user, patient_id, by, view)
    if job is None:
        return Response("Unknown chart; valid: day.svg, hour.svg", status_code=404)
    return await _chart_response(request, job)


def _share_chart_job(request: Request, db: Session, user: User, patient_id: int, by: str,
                     view: str) -> ChartJob | None:
    patient = patient_or_404(db, patient_id)
    if by not in ("day", "hour"):
        return None
    rows = crud.list_assessments(db, patient_id=patient.id, newest_first=False)
    _part_view(request, db, user, view=view, patient_id=patient.id, what=f"chart by {by}",
               object_type="patient", object_id=patient.id)
    # a referred frame was shown as uncertain, not as an assessment: not counted
    return chart_job(charts.share_chart, [r.time for r in rows],
                     [None if r.uncertain else r.label for r in rows], by=by,
                     zone=display_zone(server_state(request).settings))


@router.get("/sessions/{session_id}/timeline.svg")
async def timeline_svg(request: Request, db: Db, user: Viewer, session_id: RowId,
                       view: ViewGrant = "") -> Response:
    """One session's P(pain) timeline, drawn by the chart worker."""
    job = await run_in_threadpool(_timeline_job, request, db, user, session_id, view)
    return await _chart_response(request, job)


def _timeline_job(request: Request, db: Session, user: User, session_id: int,
                  view: str) -> ChartJob:
    session = session_or_404(db, session_id)
    rows = crud.list_assessments(db, session_id=session.id, newest_first=False)
    _part_view(request, db, user, view=view, patient_id=session.patient_id,
               what="session timeline", object_type="session", object_id=session.id)
    return chart_job(charts.timeline_chart, [r.time for r in rows], [r.prob_pain for r in rows],
                     [r.smoothed for r in rows],
                     [r.shown_state for r in rows],
                     [r.has_snapshot for r in rows],
                     zone=display_zone(server_state(request).settings))


async def _chart_response(request: Request, job: ChartJob) -> Response:
    """The SVG (never stored: it holds patient data), or 503 with a message to reload."""
    try:
        svg = await chart_worker(request.app).render(job)
    except ChartUnavailable as error:
        return Response(str(error), status_code=503, media_type="text/plain",
                        headers={"Cache-Control": "no-store", "Retry-After": "5"})
    return Response(svg, media_type=SVG, headers={"Cache-Control": "no-store"})


@router.get("/assessments/{assessment_id}/snapshot.jpg")
def snapshot(request: Request, db: Db, user: Viewer, assessment_id: RowId,
             view: ViewGrant = "") -> Response:
    """One snapshot's JPEG: audited on its own, unless it is a thumbnail of an audited page."""
    row = crud.get_assessment(db, assessment_id, with_snapshot=True)
    if row is None or row.snapshot is None:
        return Response("No such snapshot", status_code=404)
    _part_view(request, db, user, view=view, patient_id=row.patient_id, what="snapshot",
               object_type="assessment", object_id=row.id)
    return Response(row.snapshot, media_type="image/jpeg",
                    headers={"Cache-Control": "private, no-store"})


@router.get("/patients/{patient_id}/live")
def live_page(request: Request, db: Db, user: Carer, patient_id: RowId) -> Response:
    patient = patient_or_404(db, patient_id)
    audit_view(db, user, "live page", "patient", patient.id)
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


def _day(text: str, label: str, problems: list[str]) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        problems.append(f"{label}: not a date; valid: YYYY-MM-DD.")
        return None


@router.get("/audit")
def audit_page(request: Request, db: Db, user: Admin,
               username: Annotated[str, Query(max_length=64)] = "",
               action: Annotated[str, Query(max_length=32)] = "",
               since: Annotated[str, Query(max_length=10)] = "",
               until: Annotated[str, Query(max_length=10)] = "",
               upto: Offset = 0, offset: Offset = 0) -> Response:
    """The audit log, newest first, ``AUDIT_PAGE`` rows a page; filtered by user, action and
    days (``since``/``until`` inclusive, in the display zone). ``upto`` pins the pages to the
    rows that existed at the first page, so rows added meanwhile shift none."""
    problems: list[str] = []
    zone = display_zone(server_state(request).settings)
    first, last = _day(since, "From", problems), _day(until, "To", problems)
    upto = upto or crud.newest_audit_id(db)
    entries = crud.list_audit(
        db, upto=upto, username=username, action=action,
        since=None if first is None else day_start(first, zone),
        until=None if last is None else day_end(last, zone),
        limit=AUDIT_PAGE + 1, offset=offset)
    usernames, actions = crud.audit_choices(db)
    query = {"username": username, "action": action, "since": since, "until": until,
             "upto": upto}
    return render(request, "audit.html", status=422 if problems else 200,
                  message=" ".join(problems), entries=entries[:AUDIT_PAGE], query=query,
                  offset=offset, page_size=AUDIT_PAGE, more=len(entries) > AUDIT_PAGE,
                  usernames=usernames, actions=actions)

