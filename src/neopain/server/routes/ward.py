"""The ward station and its alarms: the page ``/ward``, the JSON API (``/api/ward``,
``/api/alarms``, acknowledging, pausing a bed's alarms, a patient's alarm limits) and the push
channel ``/ws/ward``, which sends the ward's view (``server.ward``) on connecting, whenever it
changes and at least every ``ward.HEARTBEAT_S``.

Everyone logged in may read the ward; admins and clinicians act (acknowledge, pause, set
limits). Reading is audited once per page, API call or push-channel connection;
every alarm transition is audited where it is made (``crud.alarms``).
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from neopain.server.deps import (
    AccessError, Carer, Db, Offset, Refusal, RowId, Viewer, csrf_protect, optional_user,
    same_origin, server_state,
)
from neopain.monitor.alarm_rules import RULES
from neopain.server.alarm_engine import default_limits
from neopain.server.render import flash, render
from neopain.server.routes.common import audit_view, patient_or_404, session_or_404
from neopain.server.ward import ward_view
from neopain.server.ward_schemas import (
    HIGH_S, LOW_S, AlarmLimitsIn, AlarmLimitsOut, AlarmOut, AlarmsOut, PauseIn, PauseOut, WardOut,
)
from neopain.store import crud
from neopain.store.session import StoreError
from neopain.store.tables import Patient, utc_now

router = APIRouter()
pages = APIRouter(dependencies=[Depends(csrf_protect)], include_in_schema=False)
api = APIRouter(prefix="/api", dependencies=[Depends(csrf_protect)], tags=["ward"])
LIMIT_FIELDS = ("pain_s", "stale_s", "noface_s")
LIMIT_RULE = (f"a limit is a number of seconds from {LOW_S:g} to {HIGH_S:g}, or empty for "
              "the ward default.")
ALARM_HISTORY_ROWS = 500


@pages.get("/ward")
def station_page(request: Request, db: Db, user: Viewer) -> Response:
    """The station: a tile per bed, alarms with Acknowledge, sound and announcements."""
    audit_view(db, user, "station", "ward")
    return render(request, "ward.html", stale_s=server_state(request).settings.stale_s)


@api.get("/ward", response_model=WardOut)
def get_ward(request: Request, db: Db, user: Viewer, trend: bool = False) -> WardOut:
    """One entry per bed with an open live session; ``trend`` adds each bed's smoothed
    P(pain) of the last 10 minutes."""
    audit_view(db, user, "api ward", "ward")
    return ward_view(db, stale_s=server_state(request).settings.stale_s, now=utc_now(),
                     trend=trend)


@api.get("/alarms", response_model=AlarmsOut)
def list_alarms(db: Db, user: Viewer, active: bool = False,
                limit: int = 200, offset: Offset = 0) -> AlarmsOut:
    """Alarms, newest first; ``active=true`` for the unresolved ones only."""
    if not 1 <= limit <= 1000:
        raise AccessError(422, f"limit={limit} is outside 1-1000")
    alarms = crud.list_alarms(db, active_only=active, limit=limit, offset=offset)
    patients = crud.patients_of(db, alarms)
    audit_view(db, user, "api alarms", "ward")
    return AlarmsOut(alarms=[AlarmOut.of(a, patient=patients[a.patient_id]) for a in alarms])


@api.post("/alarms/{alarm_id}/ack", response_model=AlarmOut)
def acknowledge(db: Db, user: Carer, alarm_id: RowId) -> AlarmOut:
    """Acknowledge an active alarm (a second acknowledgement changes nothing); 409 when it is
    resolved already."""
    alarm = crud.get_alarm(db, alarm_id)
    if alarm is None:
        raise AccessError(404, f"No alarm with id {alarm_id}.")
    try:
        alarm = crud.acknowledge_alarm(db, alarm, actor=user)
    except StoreError as error:
        raise AccessError(409, str(error)) from None
    return AlarmOut.of(alarm, patient=crud.get_patient(db, alarm.patient_id))


@api.post("/sessions/{session_id}/pause-alarms", response_model=PauseOut)
def pause(db: Db, user: Carer, session_id: RowId, body: PauseIn) -> PauseOut:
    """Pause a live session's alarms for ``minutes`` (at most 60; 0 ends a pause), saying
    why: no alarm is raised or escalates for it meanwhile."""
    session = session_or_404(db, session_id)
    try:
        row = crud.pause_alarms(db, session, actor=user, minutes=body.minutes,
                                reason=body.reason)
    except StoreError as error:
        raise AccessError(409, str(error)) from None
    return PauseOut(session_id=session.id, paused_until=row.until, reason=row.reason)


@api.get("/patients/{patient_id}/alarm-limits", response_model=AlarmLimitsOut)
def get_limits(db: Db, user: Viewer, patient_id: RowId) -> AlarmLimitsOut:
    """A patient's own alarm limits (None where the server's default applies)."""
    patient = patient_or_404(db, patient_id)
    row = crud.alarm_limits(db, patient_ids=[patient.id]).get(patient.id)
    audit_view(db, user, "api alarm limits", "patient", patient.id)
    return AlarmLimitsOut(patient_id=patient.id) if row is None else AlarmLimitsOut.of(row)


@api.put("/patients/{patient_id}/alarm-limits", response_model=AlarmLimitsOut)
def set_limits(request: Request, db: Db, user: Carer, patient_id: RowId,
               body: AlarmLimitsIn) -> AlarmLimitsOut:
    """Set a patient's own alarm limits, seconds (5-3600, the link limit below
    NEOPAIN_SESSION_IDLE_S; None: the server's default)."""
    patient = patient_or_404(db, patient_id)
    try:
        row = crud.set_alarm_limits(db, patient, actor=user, **body.model_dump(),
                                    stale_below_s=server_state(request).settings.session_idle_s)
    except StoreError as error:
        raise AccessError(422, str(error)) from None
    return AlarmLimitsOut.of(row)


def _alarms_page(request: Request, db: Session, patient: Patient, *, status: int = 200,
                 values: dict[str, str] | None = None, problems: dict[str, str] | None = None,
                 message: str = "") -> Response:
    limits = crud.alarm_limits(db, patient_ids=[patient.id]).get(patient.id)
    if values is None:
        values = {name: "" if limits is None or getattr(limits, name) is None
                  else f"{getattr(limits, name):g}" for name in LIMIT_FIELDS}
    return render(request, "patient_alarms.html", status=status, patient=patient,
                  values=values, problems=problems or {}, message=message,
                  defaults=default_limits(server_state(request).settings),
                  titles={name: rule.title for name, rule in RULES.items()},
                  alarms=crud.list_alarms(db, active_only=False, patient_id=patient.id,
                                          limit=ALARM_HISTORY_ROWS))


@pages.get("/patients/{patient_id}/alarms")
def patient_alarms(request: Request, db: Db, user: Viewer, patient_id: RowId) -> Response:
    """A patient's alarm limits (a form for clinicians) and alarm history."""
    patient = patient_or_404(db, patient_id)
    audit_view(db, user, "alarms", "patient", patient.id)
    return _alarms_page(request, db, patient)


@pages.post("/patients/{patient_id}/alarms")
async def set_patient_alarm_limits(request: Request, user: Carer,
                                   patient_id: RowId) -> Response:
    """Save a patient's own alarm limits from the form (an empty field: the ward default)."""
    form = await request.form()
    values = {name: str(form.get(name, "")).strip() for name in LIMIT_FIELDS}
    with server_state(request).store() as db:
        patient = patient_or_404(db, patient_id)
        try:
            limits = AlarmLimitsIn(**{k: v or None for k, v in values.items()})
        except ValidationError as error:
            problems = {str(e["loc"][0]): LIMIT_RULE for e in error.errors() if e["loc"]}
            return _alarms_page(request, db, patient, status=422, values=values,
                                problems=problems, message="Not saved: " + LIMIT_RULE)
        try:
            crud.set_alarm_limits(db, patient, actor=user, **limits.model_dump(),
                                  stale_below_s=server_state(request).settings.session_idle_s)
        except StoreError as error:
            return _alarms_page(request, db, patient, status=422, values=values,
                                problems={"stale_s": str(error)}, message=f"Not saved: {error}")
    response = RedirectResponse(f"/patients/{patient_id}/alarms", status_code=303)
    flash(response, request, "Alarm limits saved.")
    return response


router.include_router(pages)
router.include_router(api)


LOGIN_CHECK_S = 5.0
"""A station page's login is checked again this often: a logout closes its channel."""


def _logged_in(websocket: WebSocket) -> bool:
    with server_state(websocket).store() as db:
        return optional_user(websocket, db) is not None


def _first_view(websocket: WebSocket) -> dict | Refusal:
    """The ward's view with trends for a page that connects (audited as one view of the ward),
    or the refusal: 4401 without a login, 4403 for a page of another site."""
    state = server_state(websocket)
    with state.store() as db:
        user = optional_user(websocket, db)
        if user is None:
            return Refusal(4401, "Please log in.")
        if not same_origin(websocket):
            return Refusal(4403, "The page is not from this server.")
        audit_view(db, user, "station channel", "ward")
        view = ward_view(db, stale_s=state.settings.stale_s, now=utc_now(), trend=True)
    return {"type": "ward", **view.model_dump(mode="json")}


@router.websocket("/ws/ward")
async def ward_socket(websocket: WebSocket) -> None:
    """Push the ward's view to a station page (any logged-in user of a page of this site;
    4401 without a login or within ``LOGIN_CHECK_S`` of a logout, 4403 from another site)."""
    first = await run_in_threadpool(_first_view, websocket)
    await websocket.accept()
    if isinstance(first, Refusal):
        await websocket.close(code=first.code, reason=first.reason)
        return
    hub = websocket.app.state.ward
    queue = hub.subscribe()
    receiver = asyncio.create_task(websocket.receive())  # only to notice the page leave
    checked = time.monotonic()
    try:
        await websocket.send_json(first)
        while True:
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({receiver, getter}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                getter.cancel()
                message = receiver.result()
                if message["type"] == "websocket.disconnect":
                    return
                receiver = asyncio.create_task(websocket.receive())
                continue
            if time.monotonic() - checked >= LOGIN_CHECK_S:
                if not await run_in_threadpool(_logged_in, websocket):
                    await websocket.close(code=4401, reason="Please log in.")
                    return
                checked = time.monotonic()
            await websocket.send_json(getter.result())
    except WebSocketDisconnect:
        return
    finally:
        hub.unsubscribe(queue)
        receiver.cancel()

