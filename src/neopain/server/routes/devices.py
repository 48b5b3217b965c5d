"""The device API: what a bed device running ``neopain agent`` calls (docs/agent.md,
"Protocol"). Only a device's bearer token opens these routes (a login cookie does not), and a
device's records are taken only for the session it was bound to at their time.

- ``GET /api/device/clock``: the server's time, for the device's clock offset;
- ``POST /api/device/heartbeat``: what the bed shows now; the answer says which session the
  device feeds, and a revoked device is told so (403) within one heartbeat;
- ``POST /api/device/records``: assessments, each with the device's own id; one sent twice is
  stored once, so a device replays whatever it is unsure of; a record for a session the
  device never fed (another bed's) is 403.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from neopain.data.images import ImageReadError, decode_image
from neopain.server.deps import AccessError, Db
from neopain.server.devices import HEARTBEAT_S, SNAPSHOT_SIDE, DeviceHub, Reading
from neopain.store import crud
from neopain.store.crud import AgentFigures, DeviceRecord, ForeignSessionError, Refused
from neopain.store.session import StoreError
from neopain.store.tables import Device, utc_now

router = APIRouter(prefix="/api/device", tags=["device"])

MAX_RECORDS = 100
"""Records in one request at most."""
MAX_SNAPSHOT_BYTES = 512 * 1024
"""A snapshot's JPEG bytes at most (one of ``SNAPSHOT_SIDE`` pixels is a few tens of KB)."""
RECORD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TIME = 4.0e9
"""The latest time a device may send (UNIX seconds, the year 2096): milliseconds by mistake are
refused by name, not read as a date no calendar has."""


def _revoked_message(device: Device) -> str:
    when = device.revoked_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"This device ({device.name}) was revoked at {when} by the ward's administrator "
            "and may no longer send. Ask an administrator to register it again and install "
            "the new token.")


def current_device(request: Request, db: Db) -> Device:
    """The device whose token the request's ``Authorization: Bearer`` header carries.

    Raises:
        AccessError: 401 ``unknown_token`` (no header, not a bearer token, no such device),
            403 ``revoked``.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    device = (crud.device_of_token(db, token.strip())
              if scheme.lower() == "bearer" and token.strip() else None)
    if device is None:
        raise AccessError(401, "This needs a bed device's token (Authorization: Bearer …); "
                               "this one is missing or unknown. An administrator registers "
                               "devices on the Devices page.", reason="unknown_token",
                          headers={"WWW-Authenticate": "Bearer"})
    if device.revoked_at is not None:
        message = _revoked_message(device)
        db.close()  # the audit opens its own connection
        _hub(request).audit_once(device_id=device.id, name=device.name,
                                 action="device_refused", detail="revoked")
        raise AccessError(403, message, reason="revoked")
    return device


CurrentDevice = Annotated[Device, Depends(current_device)]


def _hub(request: Request) -> DeviceHub:
    return request.app.state.devices


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


class ClockOut(BaseModel):
    server_time: float = Field(description="UNIX seconds (UTC) on the server's clock")


@router.get("/clock", response_model=ClockOut)
def clock(device: CurrentDevice) -> ClockOut:
    """The server's time, for the device's clock offset (it keeps the try with the shortest
    round trip)."""
    return ClockOut(server_time=utc_now().timestamp())


class StatusIn(BaseModel):
    """What the bed shows now (``monitor.display.shown_of`` on the device)."""

    kind: Literal["pain", "nopain", "uncertain", "noface", "unassessable"]
    smoothed: float | None = Field(None, ge=0, le=1)
    confidence: float | None = Field(None, ge=0, le=1)
    held_state: Literal["pain", "nopain", "uncertain"] | None = None
    frame_at: float = Field(ge=0, le=MAX_TIME, description="the newest frame's time, server "
                                                          "clock (UNIX seconds)")


class HeartbeatIn(BaseModel):
    status: StatusIn | None = None
    queued: int = Field(0, ge=0)
    dropped: int = Field(0, ge=0)
    fps: float = Field(0.0, ge=0)
    model: str = Field("", max_length=200)


class HeartbeatOut(BaseModel):
    server_time: float
    name: str
    session_id: int | None = Field(description="the session the device feeds now; null: "
                                               "unbound, make no records")
    interval_s: float = Field(description="seconds between two timeline records")
    heartbeat_s: float
    snapshot_side: int


@router.post("/heartbeat", response_model=HeartbeatOut)
def heartbeat(request: Request, db: Db, device: CurrentDevice, body: HeartbeatIn
              ) -> HeartbeatOut:
    """What the device's bed shows now; the answer names the session it feeds."""
    session = crud.current_session(db, device_id=device.id)
    session_id = None if session is None else session.id
    session_started_at = None if session is None else session.started_at
    if _hub(request).seen_due(device.id):
        crud.note_device_seen(db, device_id=device.id, now=utc_now(), figures=AgentFigures(
            queued=body.queued, dropped=body.dropped, fps=body.fps, model=body.model))
    device_id, name = device.id, device.name
    db.close()  # the hub writes the bed's status on its own connections
    status = body.status
    reading = None if status is None else Reading(
        kind=status.kind, smoothed=status.smoothed, confidence=status.confidence,
        held_state=status.held_state, frame_at=_time(status.frame_at))
    _hub(request).heartbeat(device_id=device_id, name=name, session_id=session_id,
                            session_started_at=session_started_at, reading=reading)
    return HeartbeatOut(server_time=utc_now().timestamp(), name=name, session_id=session_id,
                        interval_s=request.app.state.neopain.settings.timeline_interval_s,
                        heartbeat_s=HEARTBEAT_S, snapshot_side=SNAPSHOT_SIDE)


class RecordIn(BaseModel):
    id: str = Field(pattern=RECORD_ID.pattern)
    session_id: int = Field(ge=1, le=2**31 - 1)
    time: float = Field(ge=0, le=MAX_TIME, description="UNIX seconds, server clock")
    label: Literal["pain", "nopain"]
    prob_pain: float = Field(ge=0, le=1)
    smoothed: float | None = Field(None, ge=0, le=1)
    state: Literal["pain", "nopain"] | None = None
    uncertain: bool = False
    changed: bool = False
    face_box: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(min_length=4,
                                                                        max_length=4)
    latency_ms: float = Field(ge=0, le=3_600_000)
    model: str = Field(max_length=200)
    snapshot: str | None = Field(None, max_length=MAX_SNAPSHOT_BYTES * 4 // 3 + 4)


class RecordsIn(BaseModel):
    records: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_RECORDS)


class RefusedOut(BaseModel):
    id: str = Field(description="the record's id as sent (\"\" when it sent none)")
    reason: str
    detail: str


class RecordsOut(BaseModel):
    acked: list[str] = Field(description="stored now or before")
    refused: list[RefusedOut] = Field(description="never to be stored: drop them")


_RECORD = TypeAdapter(RecordIn)


def _snapshot(text: str | None) -> bytes | None:
    """A snapshot's JPEG bytes, checked to be an image of at most ``SNAPSHOT_SIDE`` a side.

    Raises:
        ValueError: not base64, too large, or not such an image.
    """
    if text is None:
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("snapshot: not base64") from None
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise ValueError(f"snapshot: {len(data)} bytes; at most {MAX_SNAPSHOT_BYTES}")
    try:
        decode_image(data, source="snapshot", max_side=SNAPSHOT_SIDE,
                     max_pixels=SNAPSHOT_SIDE * SNAPSHOT_SIDE)
    except ImageReadError as error:
        raise ValueError(f"snapshot: {error.reason} (a JPEG of at most {SNAPSHOT_SIDE} "
                         "pixels a side)") from None
    return data


def _parse(raw: dict[str, Any]) -> DeviceRecord | Refused:
    """One record as sent, or why it is refused (naming the field, never its value)."""
    # the id as sent (even one the pattern refuses), so the device can drop the record
    record_id = raw["id"][:200] if isinstance(raw.get("id"), str) else ""
    try:
        record = _RECORD.validate_python(raw)
        return DeviceRecord(
            record_id=record.id, session_id=record.session_id, time=_time(record.time),
            label=record.label, prob_pain=record.prob_pain, smoothed=record.smoothed,
            state=record.state, uncertain=record.uncertain, changed=record.changed,
            face_box=record.face_box, latency_ms=record.latency_ms, model=record.model,
            snapshot=_snapshot(record.snapshot))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in error.errors())
        return Refused(record_id, "invalid", problems[:500])
    except (ValueError, OverflowError, OSError) as error:
        return Refused(record_id, "invalid", str(error)[:500])


@router.post("/records", response_model=RecordsOut)
def records(request: Request, db: Db, device: CurrentDevice, body: RecordsIn) -> RecordsOut:
    """Store a device's records, oldest first; each is acknowledged (stored now or before)
    or refused for good, so the device can drop it from its outbox. The answer comes once they
    are on disk."""
    parsed = [_parse(raw) for raw in body.records]
    refused = [item for item in parsed if isinstance(item, Refused)]
    valid = [item for item in parsed if isinstance(item, DeviceRecord)]
    acked: list[str] = []
    device_id, name = device.id, device.name
    if valid:
        try:
            acked, more = crud.add_device_records(db, device_id=device_id, records=valid)
        except ForeignSessionError as error:  # another bed's session: not this token's
            db.close()
            _hub(request).audit_once(device_id=device_id, name=name, action="device_refused",
                                     detail="foreign session")
            named = [index for index, item in enumerate(parsed)  # for the device to drop
                     if isinstance(item, DeviceRecord) and item.session_id in error.sessions]
            raise AccessError(403, str(error), reason="foreign_session",
                              data={"records": named}) from None
        except StoreError as error:
            raise AccessError(503, str(error), headers={"Retry-After": "1"}) from None
        refused += more
    db.close()  # the audit opens its own connection
    if refused:
        _hub(request).audit_once(device_id=device_id, name=name,
                                 action="device_records_refused",
                                 detail=f"{len(refused)} refused: {refused[0].reason}")
    return RecordsOut(acked=acked, refused=[RefusedOut(id=r.record_id, reason=r.reason,
                                                       detail=r.detail) for r in refused])
