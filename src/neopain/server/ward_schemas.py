"""What the ward API and its push channel take and give: the beds, their alarms, a pause and a
patient's alarm limits (pydantic models kept apart from the table rows, as in ``schemas``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from neopain.monitor.alarm_rules import RULES
from neopain.server.render import patient_label
from neopain.store.crud.alarms import LIMIT_RANGE_S, MAX_PAUSE_MINUTES
from neopain.store.tables import Alarm, AlarmLimit, Patient

LOW_S, HIGH_S = LIMIT_RANGE_S


class AlarmOut(BaseModel):
    id: int
    session_id: int
    patient_id: int
    patient: str = Field(description="The patient's display name")
    rule: str = Field(description="pain, link or noface")
    priority: str = Field(description="high, medium or low")
    title: str = Field(description="What the alarm says, e.g. 'In pain'")
    condition_since: datetime = Field(description="When the condition began")
    limit_s: float = Field(description="Seconds the condition had to hold")
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None = Field(description="Username of who acknowledged it")
    escalated_at: datetime | None
    resolved_at: datetime | None
    resolution: str = Field(description="Why it was resolved: cleared or session ended")

    @classmethod
    def of(cls, row: Alarm, *, patient: Patient) -> AlarmOut:
        return cls(id=row.id, session_id=row.session_id, patient_id=row.patient_id,
                   patient=patient_label(patient), rule=row.rule, priority=row.priority,
                   title=RULES[row.rule].title, condition_since=row.condition_since,
                   limit_s=row.limit_s, raised_at=row.raised_at,
                   acknowledged_at=row.acknowledged_at,
                   acknowledged_by=None if row.acknowledger is None
                   else row.acknowledger.username,
                   escalated_at=row.escalated_at, resolved_at=row.resolved_at,
                   resolution=row.resolution)


class WardBedOut(BaseModel):
    session_id: int
    patient_id: int
    patient: str = Field(description="The patient's display name")
    device: str | None = Field(default=None, description="The name of the bed device "
                               "(neopain agent) that feeds it; None: a browser's camera")
    state: str = Field(description="pain, nopain, uncertain (the model's referral band holds "
                                   "both: look at the baby), cannot_assess, no_face or stale")
    prob_pain: float | None = Field(
        description="Smoothed P(pain) of the last frame; None when stale")
    confidence: float | None = Field(
        description="P(state shown), 0.5-1, by the live page's rule; None: no number vouched "
                    "for (borderline, uncertain, cannot_assess, no_face or stale)")
    last_assessment_at: datetime | None = Field(description="Newest assessable face")
    seconds_since: float | None = Field(description="Seconds since last_assessment_at")
    last_frame_at: datetime | None
    paused_until: datetime | None = Field(description="Alarms paused until then")
    pause_reason: str | None
    alarms: list[AlarmOut] = Field(description="Its unresolved alarms, most urgent first")
    trend: list[tuple[datetime, float]] | None = Field(
        default=None, description="Saved smoothed P(pain) of the last 10 minutes")


class WardOut(BaseModel):
    now: datetime = Field(description="The server's time of this view")
    stale_s: float = Field(description="A bed with no frame for this long is 'stale'")
    beds: list[WardBedOut]


class AlarmsOut(BaseModel):
    alarms: list[AlarmOut]


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    minutes: int = Field(ge=0, le=MAX_PAUSE_MINUTES,
                         description="How long; 0 ends a pause now")
    reason: str = Field(min_length=1, max_length=200, description="Why (kept, not audited)")


class PauseOut(BaseModel):
    session_id: int
    paused_until: datetime
    reason: str


class AlarmLimitsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pain_s: float | None = Field(default=None, ge=LOW_S, le=HIGH_S,
                                 description="Seconds in pain; None: the server's default")
    stale_s: float | None = Field(default=None, ge=LOW_S, le=HIGH_S,
                                  description="Seconds without a frame")
    noface_s: float | None = Field(default=None, ge=LOW_S, le=HIGH_S,
                                   description="Seconds without an assessable face")


class AlarmLimitsOut(AlarmLimitsIn):
    patient_id: int

    @classmethod
    def of(cls, row: AlarmLimit) -> AlarmLimitsOut:
        return cls(patient_id=row.patient_id, pain_s=row.pain_s, stale_s=row.stale_s,
                   noface_s=row.noface_s)
