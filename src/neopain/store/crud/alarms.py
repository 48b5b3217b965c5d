"""The ward's alarms and what they are judged on: a live stream's status, each alarm's
transitions (raised, acknowledged, escalated, resolved), a session's alarm pauses and a
patient's alarm limits. Every transition is one conditional write with its audit row in the
same transaction, so several server processes on one database make each transition once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from neopain.store.crud.base import SYSTEM, commit, stage_audit
from neopain.store.session import StoreError
from neopain.store.tables import (
    Alarm, AlarmLimit, AlarmPause, LiveStatus, MonitoringSession, Patient, User, utc_now,
)

MAX_PAUSE_MINUTES = 60
"""The longest alarm pause: a paused bed always comes back."""
LIMIT_RANGE_S = (5.0, 3600.0)
"""A patient's own alarm limit lies in this range of seconds."""


@dataclass(frozen=True)
class StreamStatus:
    """A live stream's status to write (``tables.LiveStatus``, without the session id)."""

    state: str
    smoothed: float | None
    confidence: float | None
    first_frame_at: datetime
    last_frame_at: datetime
    last_assessed_at: datetime | None
    held_state: str | None
    pain_since: datetime | None
    stream_started_at: datetime
    streaming: bool = True


def write_status(db: Session, *, session_id: int, status: StreamStatus) -> bool:
    """Write a live stream's status (insert or replace); whether it was written. Never to an
    ended session, and never over the status of a stream that started later (the newest
    stream of a session speaks for it; an old one's dead socket may be noticed late)."""
    values = vars(status)
    open_session = select(MonitoringSession.id).where(MonitoringSession.id == session_id,
                                                      MonitoringSession.ended_at.is_(None))
    changed = db.execute(update(LiveStatus).where(
        LiveStatus.session_id == session_id, LiveStatus.session_id.in_(open_session),
        LiveStatus.stream_started_at <= status.stream_started_at)
        .values(**values).execution_options(synchronize_session=False)).rowcount
    if changed == 0:
        if db.get(LiveStatus, session_id) is not None or db.scalar(open_session) is None:
            db.rollback()
            return False
        db.add(LiveStatus(session_id=session_id, **values))
    try:
        commit(db, f"write the status of session {session_id}")
    except StoreError:  # two streams of one session inserted at once: the other row stands
        return False
    return True


def stream_status_of(row: LiveStatus) -> StreamStatus:
    """A ``live_status`` row as the ``StreamStatus`` that wrote it."""
    return StreamStatus(**{field.name: getattr(row, field.name) for field in fields(StreamStatus)})


def read_status(db: Session, *, session_id: int) -> LiveStatus | None:
    """A live session's status as its streams last wrote it, or None."""
    return db.get(LiveStatus, session_id, populate_existing=True)


def raise_alarm(db: Session, *, session: MonitoringSession, rule: str, priority: str,
                condition_since: datetime, limit_s: float, now: datetime) -> Alarm | None:
    """Raise ``rule``'s alarm for ``session``; None when it is raised already (here or by
    another server process: the partial unique index refuses a second unresolved one) or the
    session has ended meanwhile."""
    ended = db.scalar(select(MonitoringSession.ended_at).where(
        MonitoringSession.id == session.id))
    if ended is not None:
        return None
    alarm = Alarm(session_id=session.id, patient_id=session.patient_id, rule=rule,
                  priority=priority, condition_since=condition_since, limit_s=limit_s,
                  raised_at=now, resolution="")
    db.add(alarm)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        return None
    stage_audit(db, SYSTEM, "alarm_raise", "alarm", alarm.id,
                f"session={session.id} patient={session.patient_id} rule={rule}")
    commit(db, "raise an alarm")
    return alarm


def _transition(db: Session, alarm_id: int, *, condition: tuple, values: dict, actor: User | str,
                action: str, detail: str) -> bool:
    """One conditional update of an alarm and its audit row; whether this call made it."""
    won = db.execute(update(Alarm).where(Alarm.id == alarm_id, *condition).values(**values)
                     .execution_options(synchronize_session=False)).rowcount == 1
    if won:
        stage_audit(db, actor, action, "alarm", alarm_id, detail)
    commit(db, f"{action} alarm {alarm_id}")
    return won


def resolve_alarm(db: Session, *, alarm_id: int, resolution: str, now: datetime) -> bool:
    """Resolve an unresolved alarm (``resolution``: why, e.g. ``cleared``); whether this call
    did (False when another process did first)."""
    return _transition(db, alarm_id, condition=(Alarm.resolved_at.is_(None),),
                       values={"resolved_at": now, "resolution": resolution}, actor=SYSTEM,
                       action="alarm_resolve", detail=resolution)


def escalate_alarm(db: Session, *, alarm_id: int, now: datetime) -> bool:
    """Escalate an unresolved, unacknowledged alarm once; whether this call did."""
    return _transition(db, alarm_id,
                       condition=(Alarm.resolved_at.is_(None), Alarm.acknowledged_at.is_(None),
                                  Alarm.escalated_at.is_(None)),
                       values={"escalated_at": now}, actor=SYSTEM, action="alarm_escalate",
                       detail="not acknowledged in time")


def acknowledge_alarm(db: Session, alarm: Alarm, *, actor: User,
                      now: datetime | None = None) -> Alarm:
    """Acknowledge an active alarm (who, when; once: a second acknowledgement changes nothing).

    Raises:
        StoreError: the alarm is resolved already.
    """
    if alarm.resolved_at is not None:
        raise StoreError(f"alarm {alarm.id} is resolved already ({alarm.resolution}); "
                         "only an active alarm can be acknowledged")
    _transition(db, alarm.id, condition=(Alarm.resolved_at.is_(None),
                                         Alarm.acknowledged_at.is_(None)),
                values={"acknowledged_at": now or utc_now(), "acknowledged_by": actor.id},
                actor=actor, action="alarm_ack", detail=f"session={alarm.session_id}")
    db.refresh(alarm)
    if alarm.resolved_at is not None and alarm.acknowledged_at is None:
        raise StoreError(f"alarm {alarm.id} was resolved in the meantime ({alarm.resolution})")
    return alarm


def get_alarm(db: Session, alarm_id: int) -> Alarm | None:
    """The alarm with this id, or None."""
    return db.get(Alarm, alarm_id)


def pause_alarms(db: Session, session: MonitoringSession, *, actor: User, minutes: int,
                 reason: str, now: datetime | None = None) -> AlarmPause:
    """Pause a live session's alarms for ``minutes`` (0 ends a pause now) with a reason.

    Raises:
        StoreError: the session is not an open live session, ``minutes`` is outside
            0-``MAX_PAUSE_MINUTES`` or the reason is empty.
    """
    if session.source != "live" or session.ended_at is not None:
        raise StoreError(f"session {session.id} is not an open live session; only those "
                         "have alarms to pause")
    if not 0 <= minutes <= MAX_PAUSE_MINUTES:
        raise StoreError(f"minutes={minutes} is outside 0-{MAX_PAUSE_MINUTES}")
    if not reason.strip():
        raise StoreError("reason is empty; say why the alarms are paused")
    now = now or utc_now()
    pause = AlarmPause(session_id=session.id, user_id=actor.id, created_at=now,
                       until=now + timedelta(minutes=minutes), reason=reason.strip()[:200])
    db.add(pause)
    # the reason is free text a clinician typed: kept in its row, never in the audit log
    stage_audit(db, actor, "alarm_pause", "session", session.id,
                f"patient={session.patient_id} minutes={minutes}")
    commit(db, "pause alarms")
    return pause


def current_pauses(db: Session, *, session_ids: list[int],
                   now: datetime) -> dict[int, AlarmPause]:
    """The pause in force for each of these sessions that has one (its newest pause, if its
    time has not run out)."""
    newest = (select(func.max(AlarmPause.id)).where(AlarmPause.session_id.in_(session_ids))
              .group_by(AlarmPause.session_id))
    # the newest pause of each (a 0-minute pause ends an older one), if it still runs: not
    # every pause a session ever had, on every tick
    pauses = db.scalars(select(AlarmPause).where(AlarmPause.id.in_(newest),
                                                 AlarmPause.until > now))
    return {pause.session_id: pause for pause in pauses}


def alarm_limits(db: Session, *, patient_ids: list[int]) -> dict[int, AlarmLimit]:
    """The patients' own alarm limits, for those that have any."""
    rows = db.scalars(select(AlarmLimit).where(AlarmLimit.patient_id.in_(patient_ids)))
    return {row.patient_id: row for row in rows}


def set_alarm_limits(db: Session, patient: Patient, *, actor: User, pain_s: float | None,
                     stale_s: float | None, noface_s: float | None,
                     stale_below_s: float = LIMIT_RANGE_S[1]) -> AlarmLimit:
    """Set a patient's own alarm limits (None: the server's default) and audit it.

    Args:
        stale_below_s: the link limit must be below this (the server's idle end of a session:
            a silent bed must alarm before its session is ended).

    Raises:
        StoreError: a limit outside ``LIMIT_RANGE_S``, or a link limit not below
            ``stale_below_s``.
    """
    low, high = LIMIT_RANGE_S
    values = {"pain_s": pain_s, "stale_s": stale_s, "noface_s": noface_s}
    for name, value in values.items():
        if value is not None and not low <= value <= high:
            raise StoreError(f"{name}={value:g} is outside {low:g}-{high:g} seconds")
    if stale_s is not None and stale_s >= stale_below_s:
        raise StoreError(f"stale_s={stale_s:g} must be below {stale_below_s:g} seconds, after "
                         "which the server ends a silent session (NEOPAIN_SESSION_IDLE_S)")
    row = db.get(AlarmLimit, patient.id) or AlarmLimit(patient_id=patient.id)
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at, row.updated_by = utc_now(), actor.id
    db.add(row)
    given = ", ".join(name for name, value in values.items() if value is not None) or "none"
    stage_audit(db, actor, "alarm_limits", "patient", patient.id, f"own limits: {given}")
    commit(db, "set alarm limits")
    return row
