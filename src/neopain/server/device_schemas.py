"""What the devices API takes and gives (pydantic models kept apart from the table rows, as in
``schemas``). No model here carries a device's token except ``DeviceCreatedOut``, the one
answer that shows it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from neopain.server.deps import MAX_ROW_ID
from neopain.server.render import patient_label
from neopain.store.crud import DeviceView
from neopain.store.crud.devices import NAME_LENGTH


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=NAME_LENGTH,
                      description='How the ward knows the device, e.g. "NICU bed 7"')


class DeviceCreatedOut(BaseModel):
    id: int
    name: str
    token: str = Field(description="The device's token, shown this once (only its SHA-256 is "
                                   "kept): put it in a file only the agent's user can read")


class DeviceOut(BaseModel):
    id: int
    name: str
    state: str = Field(description="free, watching or revoked")
    created_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None = Field(description="The device's last request")
    queued: int | None = Field(description="Records its agent had not sent yet, as its "
                                           "heartbeat said then")
    dropped: int | None = Field(description="Records its agent could not keep (outbox full)")
    fps: float | None = Field(description="Frames its agent assessed per second")
    model: str | None = Field(description="The model its agent runs")
    session_id: int | None = Field(description="The live session it feeds now")
    patient_id: int | None
    patient: str | None = Field(description="The watched patient's display name")
    since: datetime | None = Field(description="When it started watching")

    @classmethod
    def of(cls, view: DeviceView) -> DeviceOut:
        device, session, patient = view.device, view.session, view.patient
        return cls(id=device.id, name=device.name, state=view.state,
                   created_at=device.created_at, revoked_at=device.revoked_at,
                   last_seen_at=device.last_seen_at, queued=device.queued,
                   dropped=device.dropped, fps=device.fps, model=device.model,
                   session_id=None if session is None else session.id,
                   patient_id=None if patient is None else patient.id,
                   patient=None if patient is None else patient_label(patient),
                   since=None if session is None else session.started_at)


class BindIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: int = Field(ge=1, le=MAX_ROW_ID, description="A free, unrevoked device")


