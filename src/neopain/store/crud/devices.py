"""Bed devices (``neopain agent``): registering one with a token shown once, revoking it,
binding it to a patient's live session and unbinding it, and the records it sends, stored once
each (a device's record id is unique per device) and only for a session the device was bound to
at the record's time."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from neopain.store.crud.base import commit, stage_audit
from neopain.store.crud.records import (
    NewAssessment, _assessment_row, _stage_end_once, _stage_start,
)
from neopain.store.session import StoreError
from neopain.store.tables import (
    Assessment, Device, DeviceBinding, MonitoringSession, Patient, User, utc_now,
)

TOKEN_PREFIX = "npd_"
"""Device tokens start with this, so one pasted in the wrong place is recognisable."""
NAME_LENGTH = 100
CLOCK_SKEW_S = 2.0
"""How far a record's time may lie outside its binding (the device's clock offset is measured,
not exact, and it learns of a new binding at its next heartbeat)."""
SEEN_WRITE_S = 5.0
"""``note_device_seen`` writes ``last_seen_at`` at most this often."""


def token_hash(token: str) -> str:
    """The SHA-256 (hex) a device token is stored and looked up by."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def create_device(db: Session, *, actor: User | None, name: str) -> tuple[Device, str]:
    """Register a bed device; the device and its token (shown once: only its hash is kept).

    Raises:
        StoreError: an empty or over-long name, or one another device has.
    """
    name = " ".join(name.split())
    if not 1 <= len(name) <= NAME_LENGTH:
        raise StoreError(f"a device name must be 1–{NAME_LENGTH} characters, e.g. "
                         "\"NICU bed 7\"")
    if db.scalar(select(Device.id).where(Device.name == name)) is not None:
        raise StoreError(f"a device named {name!r} exists already; choose another name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    device = Device(name=name, token_hash=token_hash(token),
                    created_by=None if actor is None else actor.id)
    db.add(device)
    db.flush()
    stage_audit(db, actor, "device_create", "device", device.id)
    commit(db, "register a device")
    return device, token


def get_device(db: Session, device_id: int) -> Device | None:
    """The device with this id, or None."""
    return db.get(Device, device_id)


def find_device(db: Session, *, name: str) -> Device | None:
    """The device with this name, or None."""
    return db.scalar(select(Device).where(Device.name == " ".join(name.split())))


def device_of_token(db: Session, token: str) -> Device | None:
    """The device this token belongs to (revoked ones too), or None."""
    return db.scalar(select(Device).where(Device.token_hash == token_hash(token)))


@dataclass(frozen=True)
class DeviceView:
    """A device with the live session it is bound to now (None: unbound)."""

    device: Device
    session: MonitoringSession | None
    patient: Patient | None

    @property
    def state(self) -> str:
        """``revoked``, ``watching`` (bound to an open live session) or ``free``."""
        if self.device.revoked_at is not None:
            return "revoked"
        return "free" if self.session is None else "watching"


def list_devices(db: Session) -> list[DeviceView]:
    """Every device, by name, with its current session and patient."""
    bound = {binding.device_id: (session, patient) for binding, session, patient in db.execute(
        select(DeviceBinding, MonitoringSession, Patient)
        .join(MonitoringSession, MonitoringSession.id == DeviceBinding.session_id)
        .join(Patient, Patient.id == MonitoringSession.patient_id)
        .where(DeviceBinding.unbound_at.is_(None), MonitoringSession.ended_at.is_(None)))}
    return [DeviceView(device, *bound.get(device.id, (None, None)))
            for device in db.scalars(select(Device).order_by(Device.name))]


def current_session(db: Session, *, device_id: int) -> MonitoringSession | None:
    """The open live session the device is bound to now, or None."""
    return db.scalar(select(MonitoringSession)
                     .join(DeviceBinding, DeviceBinding.session_id == MonitoringSession.id)
                     .where(DeviceBinding.device_id == device_id,
                            DeviceBinding.unbound_at.is_(None),
                            MonitoringSession.ended_at.is_(None)))


def session_devices(db: Session, *, session_ids: Sequence[int]) -> dict[int, str]:
    """The name of the device that fed (or feeds) each of these sessions, by session id; a
    session no device fed is left out (a revoked device's bed keeps its name on the ward)."""
    return dict(db.execute(select(DeviceBinding.session_id, Device.name)
                           .join(Device, Device.id == DeviceBinding.device_id)
                           .where(DeviceBinding.session_id.in_(session_ids))).all())


def _close_open_binding(db: Session, device: Device, *, actor: User | None,
                        now: datetime, end_session: bool) -> MonitoringSession | None:
    """Stage the end of the device's open binding (and of its session when asked); the
    session it was bound to, or None."""
    binding = db.scalar(select(DeviceBinding).where(DeviceBinding.device_id == device.id,
                                                    DeviceBinding.unbound_at.is_(None)))
    if binding is None:
        return None
    session = db.get(MonitoringSession, binding.session_id)
    binding.unbound_at = now if session.ended_at is None else min(now, session.ended_at)
    binding.unbound_by = None if actor is None else actor.id
    stage_audit(db, actor, "device_unbind", "device", device.id, f"session={session.id}")
    if end_session:
        _stage_end_once(db, session, actor=actor, when=now)
    return session


def bind_device(db: Session, device: Device, *, patient: Patient,
                actor: User | None) -> MonitoringSession:
    """Start a live session of ``patient`` fed by ``device`` and bind them, in one transaction.

    Raises:
        StoreError: the device is revoked, or bound to another open session (unbind it first).
    """
    # a conditional write, first: it waits for a revocation being committed, and one that
    # commits after this transaction finds the binding and ends it
    usable = db.execute(update(Device).where(Device.id == device.id,
                                             Device.revoked_at.is_(None))
                        .values(name=Device.name)
                        .execution_options(synchronize_session=False)).rowcount == 1
    if not usable:
        db.rollback()
        raise StoreError(f"device {device.name!r} is revoked; register a new one")
    bound = current_session(db, device_id=device.id)
    if bound is not None:
        db.rollback()
        raise StoreError(f"device {device.name!r} already watches another bed (session "
                         f"{bound.id}); unbind it there first")
    now = utc_now()
    _close_open_binding(db, device, actor=actor, now=now, end_session=False)  # an ended one
    session = _stage_start(db, actor=actor, patient=patient, source="live",
                           model=f"bed device {device.name}")
    db.add(DeviceBinding(device_id=device.id, session_id=session.id, bound_at=now,
                         bound_by=None if actor is None else actor.id))
    stage_audit(db, actor, "device_bind", "device", device.id,
                f"session={session.id} patient={patient.id}")
    commit(db, f"bind device {device.id}")
    return session


def unbind_device(db: Session, device: Device, *, actor: User | None) -> MonitoringSession | None:
    """End the device's binding and the live session it fed; the session, or None when it
    was not bound (nothing changes then)."""
    session = _close_open_binding(db, device, actor=actor, now=utc_now(), end_session=True)
    if session is not None:
        commit(db, f"unbind device {device.id}")
        db.refresh(session)  # its end, written by a conditional update
    return session


def revoke_device(db: Session, device: Device, *, actor: User | None) -> bool:
    """Revoke a device for good (its token is refused from now on) and end its binding; the
    session it fed stays open, so its bed shows the camera link lost until a clinician acts.
    Whether this call revoked it (False: revoked before)."""
    now = utc_now()
    won = db.execute(update(Device).where(Device.id == device.id, Device.revoked_at.is_(None))
                     .values(revoked_at=now, revoked_by=None if actor is None else actor.id)
                     .execution_options(synchronize_session=False)).rowcount == 1
    if won:
        _close_open_binding(db, device, actor=actor, now=now, end_session=False)
        stage_audit(db, actor, "device_revoke", "device", device.id)
    commit(db, f"revoke device {device.id}")
    db.refresh(device)
    return won


@dataclass(frozen=True)
class AgentFigures:
    """What a device's agent says of itself in its heartbeat."""

    queued: int
    dropped: int
    fps: float
    model: str


def note_device_seen(db: Session, *, device_id: int, now: datetime,
                     figures: AgentFigures | None = None) -> bool:
    """Note a request from the device at ``now`` (with what its agent said); whether written.
    The caller calls it at most every ``SEEN_WRITE_S`` (a device beats twice a second)."""
    values: dict[str, object] = {"last_seen_at": now}
    if figures is not None:
        values.update(queued=figures.queued, dropped=figures.dropped,
                      fps=round(figures.fps, 1), model=figures.model[:200])
    written = db.execute(update(Device).where(Device.id == device_id)
                         .values(**values).execution_options(synchronize_session=False)
                         ).rowcount
    commit(db, f"note device {device_id}")
    return written == 1


class ForeignSessionError(StoreError):
    """A device sent records for sessions it was never bound to (another bed's):
    ``sessions``."""

    def __init__(self, message: str, *, sessions: list[int]) -> None:
        super().__init__(message)
        self.sessions = sessions


@dataclass(frozen=True)
class DeviceRecord:
    """One assessment a device sends (``add_device_records``); times aware UTC."""

    record_id: str
    session_id: int
    time: datetime
    label: str
    prob_pain: float
    smoothed: float | None
    state: str | None
    uncertain: bool
    changed: bool
    face_box: Sequence[float]
    latency_ms: float
    model: str
    snapshot: bytes | None = None


@dataclass(frozen=True)
class Refused:
    """A record that will never be stored, and why (no patient data)."""

    record_id: str
    reason: str
    detail: str


def _bindings(db: Session, *, device_id: int, session_ids: set[int]
              ) -> dict[int, list[tuple[DeviceBinding, MonitoringSession]]]:
    found: dict[int, list[tuple[DeviceBinding, MonitoringSession]]] = {}
    for binding, session in db.execute(
            select(DeviceBinding, MonitoringSession)
            .join(MonitoringSession, MonitoringSession.id == DeviceBinding.session_id)
            .where(DeviceBinding.device_id == device_id,
                   DeviceBinding.session_id.in_(session_ids))):
        found.setdefault(session.id, []).append((binding, session))
    return found


def _binding_covers(binding: DeviceBinding, session: MonitoringSession, when: datetime,
                    now: datetime) -> bool:
    skew = timedelta(seconds=CLOCK_SKEW_S)
    ends = [t for t in (binding.unbound_at, session.ended_at) if t is not None]
    end = min(ends) if ends else now
    return binding.bound_at - skew <= when <= end + skew


def add_device_records(db: Session, *, device_id: int, records: Sequence[DeviceRecord]
                       ) -> tuple[list[str], list[Refused]]:
    """Store one request's records of a device in one transaction; the ids acknowledged
    (stored now or before: a record sent twice is stored once) and the records refused for
    good (a session the device was not bound to at the record's time, a time in the future).

    Raises:
        ForeignSessionError: a record names a session the device was never bound to (nothing
            of the request is stored).
        StoreError: the database refused the transaction (nothing of it was stored; e.g.
            another request stored one of the records a moment ago: send them again).
    """
    now = utc_now()
    bindings = _bindings(db, device_id=device_id, session_ids={r.session_id for r in records})
    foreign = sorted({r.session_id for r in records} - set(bindings))
    if foreign:
        raise ForeignSessionError(f"this device was never bound to session {foreign[0]}; it "
                                  "may send records only for the sessions it fed",
                                  sessions=foreign)
    stored = set(db.scalars(select(Assessment.record_id).where(
        Assessment.device_id == device_id,
        Assessment.record_id.in_([r.record_id for r in records]))))
    result = _stage_records(db, device_id, records, stored=stored, bindings=bindings, now=now)
    try:
        db.commit()
    except IntegrityError:  # the same records stored by another request at the same moment
        db.rollback()
        raise StoreError("device records: stored by another request at the same moment; "
                         "send them again") from None
    return result


def _stage_records(db: Session, device_id: int, records: Sequence[DeviceRecord], *,
                   stored: set[str],
                   bindings: dict[int, list[tuple[DeviceBinding, MonitoringSession]]],
                   now: datetime) -> tuple[list[str], list[Refused]]:
    acked: list[str] = []
    refused: list[Refused] = []
    for record in records:
        if record.record_id in stored:
            acked.append(record.record_id)
            continue
        if record.time > now + timedelta(seconds=CLOCK_SKEW_S):
            refused.append(Refused(record.record_id, "invalid", "time lies in the future of "
                                   "the server's clock"))
            continue
        cover = [session for binding, session in bindings.get(record.session_id, [])
                 if _binding_covers(binding, session, record.time, now)]
        if not cover:
            refused.append(Refused(record.record_id, "not_bound",
                                   f"this device was not bound to session {record.session_id} "
                                   "at the record's time"))
            continue
        session = cover[0]
        row = _assessment_row(session, NewAssessment(
            face_found=True, model=record.model, latency_ms=record.latency_ms,
            offset_s=(record.time - session.started_at).total_seconds(), label=record.label,
            prob_pain=record.prob_pain, smoothed=record.smoothed, state=record.state,
            uncertain=record.uncertain, changed=record.changed,
            face_box=[float(v) for v in record.face_box], snapshot=record.snapshot,
            time=record.time))
        row.device_id, row.record_id = device_id, record.record_id
        db.add(row)
        stored.add(record.record_id)  # a second copy in this request is acknowledged
        acked.append(record.record_id)
    return acked, refused
