"""What the API takes and gives: pydantic models kept apart from the table rows (a row with
patient data never serializes itself; each output names the fields it shows)."""

from __future__ import annotations

import json
from datetime import date, datetime

from pydantic import (
    BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator,
)

from neopain.store.tables import Assessment, MonitoringSession, Patient, User


class PatientIn(BaseModel):
    """A new patient: a name or a record number (or both) is required."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(default="", max_length=200, description="Name, or leave empty.")
    record_number: str = Field(default="", max_length=64, description="Hospital record number.")
    birth_date: date | None = Field(default=None, description="YYYY-MM-DD.")
    gestational_age_weeks: float | None = Field(default=None, ge=20, le=45,
                                                description="Gestational age at birth, weeks.")
    notes: str = Field(default="", max_length=5000)

    @model_validator(mode="after")
    def _identified(self) -> PatientIn:
        # Python's strip, as the store's rule: pydantic's strip keeps "\x1f" and the like
        if not self.name.strip() and not self.record_number.strip():
            raise ValueError("give a name or a record number")
        return self

    @field_validator("birth_date")
    @classmethod
    def _not_future(cls, value: date | None) -> date | None:
        if value is not None and value > date.today():
            raise ValueError("the birth date lies in the future")
        return value


PATIENT_FIELD_RULES = {
    "name": "Name: up to 200 characters.",
    "record_number": "Record number: up to 64 characters.",
    "birth_date": "Birth date: a date (YYYY-MM-DD), today or earlier, or empty.",
    "gestational_age_weeks": "Gestational age: a number of weeks from 20 to 45, or empty.",
    "notes": "Notes: up to 5000 characters.",
}
IDENTIFIED_RULE = "Name or record number: give at least one of them."


def form_problems(error: ValidationError) -> dict[str, str]:
    """Each refused field of a ``PatientIn`` form and what it accepts, in words for the page
    (pydantic's own text is for developers, and it may echo the input). A patient with
    neither a name nor a record number is named under ``"name"``."""
    problems = {}
    for problem in error.errors():
        if not problem["loc"]:  # the rule of the whole form
            problems["name"] = IDENTIFIED_RULE
            continue
        field = str(problem["loc"][0])
        problems[field] = PATIENT_FIELD_RULES.get(
            field, f"{field}: not a field of this form; valid: {', '.join(PATIENT_FIELD_RULES)}.")
    return problems


class PatientUpdate(BaseModel):
    """Fields to change; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=200)
    record_number: str | None = Field(default=None, max_length=64)
    birth_date: date | None = None
    gestational_age_weeks: float | None = Field(default=None, ge=20, le=45)
    notes: str | None = Field(default=None, max_length=5000)


class PatientOut(BaseModel):
    id: int
    name: str
    record_number: str
    birth_date: date | None
    gestational_age_weeks: float | None
    notes: str
    created_at: datetime

    @classmethod
    def of(cls, row: Patient) -> PatientOut:
        return cls(id=row.id, name=row.name, record_number=row.record_number,
                   birth_date=row.birth_date, gestational_age_weeks=row.gestational_age_weeks,
                   notes=row.notes, created_at=row.created_at)


class SessionOut(BaseModel):
    id: int
    patient_id: int
    source: str = Field(description="live, image or video")
    model: str
    started_at: datetime
    ended_at: datetime | None
    websocket: str | None = Field(default=None,
                                  description="Path of the live stream (live sessions)")

    @classmethod
    def of(cls, row: MonitoringSession) -> SessionOut:
        return cls(id=row.id, patient_id=row.patient_id, source=row.source, model=row.model,
                   started_at=row.started_at, ended_at=row.ended_at,
                   websocket=f"/ws/sessions/{row.id}" if row.source == "live" else None)


class AssessmentOut(BaseModel):
    id: int
    session_id: int
    time: datetime
    offset_s: float
    face_found: bool
    label: str | None
    prob_pain: float | None
    confidence: float | None
    smoothed: float | None
    state: str | None
    uncertain: bool = Field(False, description="The referral band referred it: the page said "
                            "\"uncertain – look at the baby\" (label and state not shown)")
    changed: bool
    model: str
    latency_ms: float
    face_box: list[float] | None
    snapshot_url: str | None

    @classmethod
    def of(cls, row: Assessment) -> AssessmentOut:
        return cls(id=row.id, session_id=row.session_id, time=row.time, offset_s=row.offset_s,
                   face_found=row.face_found, label=row.label, prob_pain=row.prob_pain,
                   confidence=row.confidence, smoothed=row.smoothed, state=row.state,
                   uncertain=row.uncertain, changed=row.changed, model=row.model,
                   latency_ms=row.latency_ms,
                   face_box=None if row.face_box is None else json.loads(row.face_box),
                   snapshot_url=(f"/assessments/{row.id}/snapshot.jpg"
                                 if row.has_snapshot else None))


class UploadOut(BaseModel):
    session: SessionOut
    kind: str = Field(description="image or video")
    frames: int = Field(description="Frames assessed (1 for an image)")
    faces: int = Field(description="Frames in which a face was found")
    saved: list[AssessmentOut] = Field(description="The assessments added to the record")


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    active: bool

    @classmethod
    def of(cls, row: User) -> UserOut:
        return cls(id=row.id, username=row.username, role=row.role, active=row.active)


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class LoginOut(BaseModel):
    user: UserOut
    csrf_token: str = Field(description="Send as X-CSRF-Token with every POST/PATCH")
