"""The records tables (SQLAlchemy 2): users, their login sessions and login rate limit, the
server processes' shared keys,
patients, monitoring sessions, assessments, sessions' rest calibrations, the ward's live status,
alarms, alarm pauses and patients' alarm limits, bed devices and their bindings to sessions, and
the audit log.

Rows holding patient data never leave the server as they are: the server turns them into its
own output schemas. Times are stored as UTC and read back timezone-aware (``UtcDateTime``), on
SQLite (which has no time zones) as on PostgreSQL.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import (
    Boolean, CheckConstraint, Date, DateTime, Float, ForeignKey, Index, Integer, LargeBinary,
    MetaData, String, Text, TypeDecorator, case, false, text,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship

ROLES = ("admin", "clinician", "researcher")
SOURCES = ("live", "image", "video")
LABELS = ("nopain", "pain")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator[datetime]):
    """A datetime stored as naive UTC and returned as aware UTC (SQLite keeps no time zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"time={value.isoformat()} has no time zone; pass an aware datetime")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    """A person who logs in: ``role`` is admin, clinician or researcher."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('admin', 'clinician', 'researcher')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class LoginSession(Base):
    """A logged-in browser: the SHA-256 of its cookie token (the token itself is never stored)."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)

    user: Mapped[User] = relationship(lazy="joined")


class LoginThrottle(Base):
    """Login attempts counted per key (the SHA-256 of ``address:…`` or ``user:…``, so a
    password typed into the username field is never stored) in a window that starts at the
    key's first attempt: the login rate limit, shared by every server process."""

    __tablename__ = "login_throttle"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class ServerKey(Base):
    """A key the server processes sharing this database must agree on (``csrf``: the key of
    the CSRF tokens and signed links), made once at random by the first process that needs it."""

    __tablename__ = "server_keys"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class Patient(Base):
    """A patient: a name and/or a record number, birth date, gestational age, free notes."""

    __tablename__ = "patients"
    __table_args__ = (
        CheckConstraint("name <> '' OR record_number <> ''", name="identified"),
        CheckConstraint("gestational_age_weeks IS NULL OR "
                        "(gestational_age_weeks >= 20 AND gestational_age_weeks <= 45)",
                        name="gestational_age"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    record_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    birth_date: Mapped[date | None] = mapped_column(Date)
    gestational_age_weeks: Mapped[float | None] = mapped_column(Float)
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class MonitoringSession(Base):
    """One live monitoring run, or one uploaded image or video, of one patient."""

    __tablename__ = "monitoring_sessions"
    __table_args__ = (CheckConstraint("source IN ('live', 'image', 'video')", name="source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(8))
    model: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # a live session's stream: when it last connected or sent a frame (written at most every
    # few seconds); None before its first connection. Sessions idle too long end themselves.
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Assessment(Base):
    """One assessed frame or image.

    ``uncertain``: the model's referral band referred it, and the page said "uncertain – look
    at the baby" (``label`` and ``state`` are kept, but were not shown as an assessment).

    ``snapshot`` (JPEG bytes) is kept for the frames a clinician looks back at: the first face of
    a session and the first frame after each change of state, and every uploaded image.
    ``offset_s`` is the time since the session started (or, for videos, in the video).
    """

    __tablename__ = "assessments"
    __table_args__ = (
        CheckConstraint("label IS NULL OR label IN ('nopain', 'pain')", name="label"),
        CheckConstraint("prob_pain IS NULL OR (prob_pain >= 0 AND prob_pain <= 1)", name="prob"),
        Index("ix_assessments_patient_time", "patient_id", "time"),
        Index("ix_assessments_session_time", "session_id", "time"),
        Index("uq_assessments_device_record", "device_id", "record_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("monitoring_sessions.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    time: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    offset_s: Mapped[float] = mapped_column(Float, default=0.0)
    face_found: Mapped[bool] = mapped_column(Boolean)
    label: Mapped[str | None] = mapped_column(String(8))
    prob_pain: Mapped[float | None] = mapped_column(Float)
    smoothed: Mapped[float | None] = mapped_column(Float)
    state: Mapped[str | None] = mapped_column(String(8))
    uncertain: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    changed: Mapped[bool] = mapped_column(Boolean, default=False)
    model: Mapped[str] = mapped_column(String(200))
    latency_ms: Mapped[float] = mapped_column(Float)
    face_box: Mapped[str | None] = mapped_column(String(100))  # JSON [x1, y1, x2, y2]
    has_snapshot: Mapped[bool] = mapped_column(Boolean, default=False)
    snapshot: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    # a bed device's record: the device and the record's own id (unique per device, so a
    # record the device sends twice is stored once); None for the browser and uploads
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    record_id: Mapped[str | None] = mapped_column(String(64))

    @hybrid_property
    def shown_state(self) -> str | None:
        """What the page showed: ``uncertain`` for a referred row, else its smoothed state
        (in SQL too: ``select(Assessment.shown_state)``)."""
        return "uncertain" if self.uncertain else self.state

    @shown_state.inplace.expression
    @classmethod
    def _shown_state_sql(cls):
        return case((cls.uncertain, "uncertain"), else_=cls.state)

    @property
    def confidence(self) -> float | None:
        """P(label), 0.5–1; None when no face was assessed."""
        if self.prob_pain is None or self.label is None:
            return None
        return self.prob_pain if self.label == "pain" else 1.0 - self.prob_pain


class SessionCalibration(Base):
    """A session's reference taken at rest ("Calibrate at rest"): who took it, when, from how
    many frames, for which model, and the model's reference values (``reference``: JSON of
    names to numbers, face geometry, no image). The newest one applies to the session."""

    __tablename__ = "session_calibrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("monitoring_sessions.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    model: Mapped[str] = mapped_column(String(200))
    frames: Mapped[int] = mapped_column(Integer)
    reference: Mapped[str] = mapped_column(Text)


class LiveStatus(Base):
    """A live session's stream as it stands: written by the stream at most every second and at
    once when its state changes; read by the alarm engine and the ward station."""

    __tablename__ = "live_status"
    __table_args__ = (
        CheckConstraint("state IN ('pain', 'nopain', 'uncertain', 'cannot_assess', 'no_face')",
                        name="state"),
        CheckConstraint("held_state IS NULL OR held_state IN ('pain', 'nopain', 'uncertain')",
                        name="held_state"),
    )

    session_id: Mapped[int] = mapped_column(ForeignKey("monitoring_sessions.id"),
                                            primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    smoothed: Mapped[float | None] = mapped_column(Float)
    # P(state shown), 0.5-1, by the live page's rule (monitor.display); None: no number shown
    confidence: Mapped[float | None] = mapped_column(Float)
    first_frame_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_frame_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_assessed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # pain, nopain, uncertain (the referral band holds both); None: unknown
    held_state: Mapped[str | None] = mapped_column(String(16))
    pain_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # False once the stream closed: last_frame_at is then exact, not up to a second old
    streaming: Mapped[bool] = mapped_column(Boolean, default=True)
    # the writing stream's start: an older stream (a dead socket noticed late) writes no more
    stream_started_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Alarm(Base):
    """One alarm of one live session: raised → acknowledged (who, when) → resolved, and
    escalated when nobody acknowledged it in time. At most one unresolved alarm per session and
    rule (a partial unique index), so several server processes raise it once."""

    __tablename__ = "alarms"
    __table_args__ = (
        CheckConstraint("rule IN ('pain', 'link', 'noface')", name="rule"),
        CheckConstraint("priority IN ('high', 'medium', 'low')", name="priority"),
        Index("uq_alarms_active", "session_id", "rule", unique=True,
              sqlite_where=text("resolved_at IS NULL"),
              postgresql_where=text("resolved_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("monitoring_sessions.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    rule: Mapped[str] = mapped_column(String(8))
    priority: Mapped[str] = mapped_column(String(8))
    condition_since: Mapped[datetime] = mapped_column(UtcDateTime)
    limit_s: Mapped[float] = mapped_column(Float)
    raised_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("users.id",
                                                                   ondelete="SET NULL"))
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    resolution: Mapped[str] = mapped_column(String(32), default="")

    acknowledger: Mapped[User | None] = relationship(lazy="joined")


class AlarmPause(Base):
    """A clinician paused a session's alarms until ``until``, saying why; the newest pause of a
    session applies (a pause of 0 minutes ends one early)."""

    __tablename__ = "alarm_pauses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("monitoring_sessions.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    until: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(String(200))


class AlarmLimit(Base):
    """A patient's own alarm limits, seconds (None: the server's default)."""

    __tablename__ = "alarm_limits"

    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), primary_key=True)
    pain_s: Mapped[float | None] = mapped_column(Float)
    stale_s: Mapped[float | None] = mapped_column(Float)
    noface_s: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class Device(Base):
    """A bed device running ``neopain agent``: its name, the SHA-256 of its token (the token
    itself is shown once, never stored), who registered it, when it was revoked (a revoked
    device is refused for good) and last heard from, and what its agent said then."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # what its agent said at that moment (its heartbeat): records waiting in its outbox, records
    # it could not keep, frames assessed per second, its model; None before the first
    queued: Mapped[int | None] = mapped_column(Integer)
    dropped: Mapped[int | None] = mapped_column(Integer)
    fps: Mapped[float | None] = mapped_column(Float)
    model: Mapped[str | None] = mapped_column(String(200))


class DeviceBinding(Base):
    """A device bound to one live monitoring session, from ``bound_at`` until ``unbound_at``
    (None: bound now). A device's records are taken for a session only for times it was bound
    to it; one open binding per device and per session."""

    __tablename__ = "device_bindings"
    __table_args__ = (
        Index("uq_device_bindings_open_device", "device_id", unique=True,
              sqlite_where=text("unbound_at IS NULL"),
              postgresql_where=text("unbound_at IS NULL")),
        Index("uq_device_bindings_open_session", "session_id", unique=True,
              sqlite_where=text("unbound_at IS NULL"),
              postgresql_where=text("unbound_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("monitoring_sessions.id"), index=True)
    bound_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    bound_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    unbound_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    unbound_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class AuditEntry(Base):
    """Who viewed or changed what, when. ``detail`` never holds patient data."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer)  # kept when the user is gone
    username: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(32))
    object_type: Mapped[str] = mapped_column(String(32), default="")
    object_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(String(200), default="")
