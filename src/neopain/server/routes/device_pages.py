"""Bed devices for people: the admin's Devices page (register, with the token shown once on the
answer page; revoke, after a confirm step), binding a free device to a patient from the
patient's page and unbinding it, and the same actions as a JSON API for scripts.

Admins register and revoke; admins and clinicians bind and unbind. Every change is audited by
``crud.devices``; reading the list (which names the watched patients) is audited as a view.
A device's token appears only in the answer to registering it: never in an address, a log
line, the audit log or the list.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from neopain.server.deps import MAX_ROW_ID, AccessError, Admin, Carer, Db, RowId, csrf_protect
from neopain.server.device_schemas import BindIn, DeviceCreatedOut, DeviceIn, DeviceOut
from neopain.server.render import flash, render
from neopain.server.routes.common import (
    audit_view, device_or_404, history_response, patient_or_404,
)
from neopain.server.schemas import SessionOut
from neopain.store import crud
from neopain.store.crud.devices import NAME_LENGTH
from neopain.store.session import StoreError
from neopain.store.tables import Device, MonitoringSession, Patient, User, utc_now

router = APIRouter()
pages = APIRouter(dependencies=[Depends(csrf_protect)], include_in_schema=False)
api = APIRouter(prefix="/api", dependencies=[Depends(csrf_protect)], tags=["devices"])
REFUSED_NOTE = "its agent is refused within a second and says so"
BED_NOTE = ("The bed it watched shows camera link lost on the ward and raises that alarm; once "
            "the alarm is acknowledged, the session, getting no frames, ends by itself.")


def _devices_page(request: Request, db: Session, *, status: int = 200, message: str = "",
                  created: tuple[Device, str] | None = None, name: str = "") -> Response:
    return render(request, "devices.html", status=status, message=message,
                  devices=crud.list_devices(db), now=utc_now(), created=created, name=name,
                  name_length=NAME_LENGTH)


@pages.get("/devices")
def devices_page(request: Request, db: Db, user: Admin) -> Response:
    """Every device with its state and last contact, the register form and Revoke."""
    audit_view(db, user, "devices", "devices")
    return _devices_page(request, db)


@pages.post("/devices")
def register_device(request: Request, db: Db, user: Admin,
                    name: Annotated[str, Form(max_length=4 * NAME_LENGTH)]) -> Response:
    """Register a device; the answer shows its token, this once."""
    try:
        created = crud.create_device(db, actor=user, name=name)
    except StoreError as error:
        return _devices_page(request, db, status=422, message=f"Not registered: {error}",
                             name=name)
    return _devices_page(request, db, created=created)


@pages.post("/devices/{device_id}/revoke")
def revoke_device_form(request: Request, db: Db, user: Admin, device_id: RowId) -> Response:
    """Revoke a device for good (the page's Revoke asked to confirm)."""
    device = device_or_404(db, device_id)
    watched = crud.current_session(db, device_id=device.id) is not None
    crud.revoke_device(db, device, actor=user)
    response = RedirectResponse("/devices", status_code=303)
    flash(response, request, f"Device {device.name} revoked: {REFUSED_NOTE}."
                             + (f" {BED_NOTE}" if watched else ""))
    return response


@pages.post("/patients/{patient_id}/devices")
def bind_device_form(request: Request, db: Db, user: Carer, patient_id: RowId,
                     device_id: Annotated[int, Form(ge=1, le=MAX_ROW_ID)]) -> Response:
    """Watch this patient with a free device: starts its live session."""
    patient = patient_or_404(db, patient_id)
    try:
        device, session = _bind(db, user, patient=patient, device_id=device_id)
    except AccessError as error:
        return history_response(request, db, user, patient, status=error.status,
                                message=f"Not started: {error.message}")
    response = RedirectResponse(f"/patients/{patient.id}", status_code=303)
    flash(response, request, f"Bed device {device.name} watches this patient now (live "
                             f"session {session.id}); the ward shows its bed.")
    return response


@pages.post("/devices/{device_id}/unbind")
def unbind_device_form(request: Request, db: Db, user: Carer, device_id: RowId) -> Response:
    """Stop watching with a device: ends its binding and its live session."""
    device = device_or_404(db, device_id)
    session = crud.unbind_device(db, device, actor=user)
    if session is None:
        return render(request, "error.html", status=422,
                      message=f"Device {device.name} watches no bed now; nothing to unbind.")
    response = RedirectResponse(f"/patients/{session.patient_id}", status_code=303)
    flash(response, request, f"Device {device.name} unbound: live session {session.id} "
                             "ended. The device is free for another bed.")
    return response


def _bind(db: Session, user: User, *, patient: Patient, device_id: int
          ) -> tuple[Device, MonitoringSession]:
    """Bind the device to a new live session of ``patient``: the device and the session.

    Raises:
        AccessError: 404 no such device, 422 a revoked or already bound device.
    """
    device = device_or_404(db, device_id)
    try:
        return device, crud.bind_device(db, device, patient=patient, actor=user)
    except StoreError as error:
        raise AccessError(422, str(error)) from None


@api.get("/devices", response_model=list[DeviceOut])
def list_devices(db: Db, user: Admin) -> list[DeviceOut]:
    """Every device with its state, last contact and the patient it watches (no tokens)."""
    views = crud.list_devices(db)
    audit_view(db, user, "api devices", "devices")
    return [DeviceOut.of(view) for view in views]


@api.post("/devices", response_model=DeviceCreatedOut, status_code=201)
def create_device(db: Db, user: Admin, body: DeviceIn) -> DeviceCreatedOut:
    """Register a device; the answer holds its token, shown this once."""
    try:
        device, token = crud.create_device(db, actor=user, name=body.name)
    except StoreError as error:
        raise AccessError(422, str(error)) from None
    return DeviceCreatedOut(id=device.id, name=device.name, token=token)


@api.post("/devices/{device_id}/revoke", response_model=DeviceOut)
def revoke_device(db: Db, user: Admin, device_id: RowId) -> DeviceOut:
    """Revoke a device for good (again: no change); its binding ends, its session stays."""
    device = device_or_404(db, device_id)
    crud.revoke_device(db, device, actor=user)
    return DeviceOut.of(crud.DeviceView(device, None, None))


@api.post("/patients/{patient_id}/devices", response_model=SessionOut, status_code=201)
def bind_device(db: Db, user: Carer, patient_id: RowId, body: BindIn) -> SessionOut:
    """Watch the patient with a free device: the live session it now feeds (422: the
    device is revoked or watches another bed)."""
    patient = patient_or_404(db, patient_id)
    _, session = _bind(db, user, patient=patient, device_id=body.device_id)
    return SessionOut.of(session)


@api.post("/devices/{device_id}/unbind", response_model=SessionOut)
def unbind_device(db: Db, user: Carer, device_id: RowId) -> SessionOut:
    """End the device's binding and the live session it fed: that session (422: unbound)."""
    device = device_or_404(db, device_id)
    session = crud.unbind_device(db, device, actor=user)
    if session is None:
        raise AccessError(422, f"device {device.name!r} watches no bed now; nothing to unbind")
    return SessionOut.of(session)


router.include_router(pages)
router.include_router(api)
