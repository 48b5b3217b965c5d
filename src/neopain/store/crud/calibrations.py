"""A live session's rest calibrations ("Calibrate at rest"): each one stored with who took it,
and audited; the newest is the session's reference, applied again when its stream resumes."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from neopain.store.crud.base import commit, stage_audit
from neopain.store.session import StoreError
from neopain.store.tables import MonitoringSession, SessionCalibration, User


def add_calibration(db: Session, *, session: MonitoringSession, actor: User | None, model: str,
                    frames: int, reference: Mapping[str, float]) -> SessionCalibration:
    """Store a rest calibration of ``session`` taken by ``actor`` for ``model`` from
    ``frames`` faces, with its audit row (``calibrate``), and commit.

    Raises:
        StoreError: the session has ended or is not live, ``frames`` is not a positive whole
            number, or ``reference`` holds anything but finite numbers.
    """
    if session.source != "live" or session.ended_at is not None:
        raise StoreError(f"session {session.id}: only a live session that has not ended can be "
                         "calibrated")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise StoreError(f"frames={frames!r} is not valid; valid: a whole number ≥ 1")
    bad = sorted(name for name, value in reference.items() if isinstance(value, bool)
                 or not isinstance(value, (int, float)) or not math.isfinite(value))
    if bad:
        raise StoreError(f"calibration reference: {', '.join(bad)} not finite numbers; valid: "
                         "finite numbers only")
    row = SessionCalibration(session_id=session.id, user_id=None if actor is None else actor.id,
                             model=model, frames=frames,
                             reference=json.dumps({k: float(v) for k, v in reference.items()}))
    db.add(row)
    db.flush()
    stage_audit(db, actor, "calibrate", "session", session.id,
                f"patient={session.patient_id}; {frames} rest frame(s); model={model}")
    commit(db, f"calibrate session {session.id}")
    return row


def latest_calibration(db: Session, *, session_id: int) -> SessionCalibration | None:
    """The session's newest rest calibration, or None."""
    return db.scalars(select(SessionCalibration)
                      .where(SessionCalibration.session_id == session_id)
                      .order_by(SessionCalibration.id.desc()).limit(1)).first()


def calibration_reference(row: SessionCalibration) -> dict[str, float]:
    """A stored calibration's reference values by name."""
    return {str(name): float(value) for name, value in json.loads(row.reference).items()}
