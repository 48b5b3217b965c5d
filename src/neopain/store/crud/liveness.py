"""Whether a live session's stream is still there: its connections, the frames it sends, and
ending the sessions that got no frame for too long (``end_idle_sessions``, run by the server's
sweeper on start-up and every few seconds after)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from neopain.store.crud.base import SYSTEM, commit, stage_audit
from neopain.store.tables import Alarm, AlarmPause, MonitoringSession, User, utc_now

SEEN_WRITE_S = 5.0
"""``note_frame`` writes ``last_seen_at`` at most this often (seconds): frames arrive several
times a second, the idle limit is minutes."""


def connect_session(db: Session, session: MonitoringSession, *, actor: User | None) -> None:
    """A stream connected to a live session: note it as seen, and audit a reconnection (a
    session seen before) as ``resume``; the first connection is part of its ``start``."""
    if session.last_seen_at is not None:
        stage_audit(db, actor, "resume", "session", session.id, f"patient={session.patient_id}")
    session.last_seen_at = utc_now()
    commit(db, f"connect to session {session.id}")


def note_frame(db: Session, *, session_id: int, now: datetime | None = None) -> bool:
    """Record that a live session's stream sent a frame at ``now`` (default: now); written only
    when the last note is half ``SEEN_WRITE_S`` old or more (the stream itself writes every
    ``SEEN_WRITE_S``; the half absorbs its timing jitter, so a note is never skipped for a few
    milliseconds), and never to an ended session. Whether it was written."""
    now = now or utc_now()
    seen = MonitoringSession.last_seen_at
    result = db.execute(
        update(MonitoringSession)
        .where(MonitoringSession.id == session_id, MonitoringSession.ended_at.is_(None),
               (seen.is_(None)) | (seen <= now - timedelta(seconds=SEEN_WRITE_S / 2)))
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False))
    commit(db, f"note a frame of session {session_id}")
    return result.rowcount == 1


def end_idle_sessions(db: Session, *, idle_s: float,
                      now: datetime | None = None) -> list[MonitoringSession]:
    """End every open live session whose stream was last seen (or, never seen, that started)
    more than ``idle_s`` seconds before ``now`` (default: now); each gets one ``stop`` audit row
    by the system saying for how long no frame came. Each session is ended once, also when
    several server processes sweep at the same time. The sessions ended.

    A closed tab must not silence a bed, so a session stays open (and on the ward station)
    while one of its alarms is unacknowledged, and its alarms' pause counts as being seen: the
    idle time runs from the later of its last frame and the end of its last pause, so its link
    alarm is raised after the pause (the link limit is shorter than ``idle_s``) before the sweep
    could end it.
    """
    now = now or utc_now()
    cutoff = now - timedelta(seconds=idle_s)
    last = func.coalesce(MonitoringSession.last_seen_at, MonitoringSession.started_at)
    unheard = exists().where(Alarm.session_id == MonitoringSession.id,
                             Alarm.resolved_at.is_(None), Alarm.acknowledged_at.is_(None))
    paused = exists().where(AlarmPause.session_id == MonitoringSession.id,
                            AlarmPause.until > cutoff)
    idle = (MonitoringSession.source == "live", MonitoringSession.ended_at.is_(None),
            last < cutoff, ~unheard, ~paused)
    candidates = list(db.scalars(select(MonitoringSession).where(*idle)
                                 .order_by(MonitoringSession.id)))
    ended = []
    for session in candidates:
        # a conditional update: another sweeper, or a frame, may have come in between
        won = db.execute(update(MonitoringSession)
                         .where(MonitoringSession.id == session.id, *idle)
                         .values(ended_at=now)
                         .execution_options(synchronize_session=False)).rowcount == 1
        if not won:
            continue
        quiet_s = (now - (session.last_seen_at or session.started_at)).total_seconds()
        stage_audit(db, SYSTEM, "stop", "session", session.id,
                    f"patient={session.patient_id}; no frame for {quiet_s:.0f} s "
                    f"(limit {idle_s:.0f} s)")
        ended.append(session)
    commit(db, "end idle sessions")
    for session in ended:
        db.refresh(session)
    return ended
