"""Looking back: a patient's sessions summed up (duration, pain share, episodes), and what the
audit log page needs besides ``base.list_audit`` (its newest id, the names to filter by).
Queries only; nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from neopain.store.tables import Assessment, AuditEntry, MonitoringSession

MAX_GAP_S = 5.0
"""The longest time one saved row stands for: rows come once per timeline interval while a
face is assessed, so a longer gap had no assessable face and counts as not assessed."""


@dataclass(frozen=True)
class SessionSummary:
    """One monitoring session summed up from its rows.

    ``duration_s``: for a live session that has ended, from its start to its end; for a video,
    the video time up to its last assessed frame; None for an open live session and an image.
    ``assessed_s`` / ``pain_s``: seconds assessed and seconds in pain, each saved row's state
    holding until the next row (at most ``max_gap_s``); a row's state is its smoothed state,
    or its label where it has none (an uploaded image). ``uncertain_s``: the seconds of rows
    the referral band referred ("uncertain – look at the baby"): neither assessed nor in pain.
    ``rated`` / ``pain_rows``: rows with a state, not referred, and those in pain.
    ``episodes``: runs of rows in pain among those (a row in pain after a row not in pain, or
    first; pain broken only by uncertain rows is one episode, as for the alarms).
    """

    session: MonitoringSession
    assessments: int
    duration_s: float | None
    assessed_s: float
    pain_s: float
    episodes: int
    rated: int = 0
    pain_rows: int = 0
    uncertain_s: float = 0.0

    @property
    def pain_share(self) -> float | None:
        """Share of the assessed time in pain; for rows without duration (a single image),
        the share of rows in pain; None when nothing was assessed (or all the time with a
        face was uncertain: a last row after it stands for no time)."""
        if self.assessed_s > 0:
            return self.pain_s / self.assessed_s
        if self.uncertain_s > 0:
            return None
        return self.pain_rows / self.rated if self.rated else None


def session_summaries(db: Session, *, patient_id: int,
                      max_gap_s: float = MAX_GAP_S) -> list[SessionSummary]:
    """Every session of a patient, newest first, with its duration, pain share and episodes."""
    ordered = {"partition_by": Assessment.session_id, "order_by": Assessment.id}
    state = func.coalesce(Assessment.state, Assessment.label)
    # time: every row with a state holds until the next (a referred one as uncertain)
    rows = (select(Assessment.session_id, Assessment.offset_s,
                   case((Assessment.uncertain, "uncertain"), else_=state).label("state"),
                   func.lead(Assessment.offset_s).over(**ordered).label("next_s"))
            .where(Assessment.patient_id == patient_id, state.is_not(None))
            .subquery())
    gap = rows.c.next_s - rows.c.offset_s
    held = func.coalesce(case((gap > max_gap_s, max_gap_s), else_=gap), 0.0)
    pain, unsure = rows.c.state == "pain", rows.c.state == "uncertain"
    timed = {row.session_id: row for row in db.execute(
        select(rows.c.session_id,
               func.sum(case((unsure, 0.0), else_=held)).label("assessed_s"),
               func.sum(case((pain, held), else_=0.0)).label("pain_s"),
               func.sum(case((unsure, held), else_=0.0)).label("uncertain_s"),
               func.max(rows.c.offset_s).label("last_s"))
        .group_by(rows.c.session_id))}
    # episodes and counts: the rows not referred, each after the one before it
    rated = (select(Assessment.session_id, state.label("state"),
                    func.lag(state).over(**ordered).label("previous"))
             .where(Assessment.patient_id == patient_id, state.is_not(None),
                    Assessment.uncertain.is_(False))
             .subquery())
    in_pain = rated.c.state == "pain"
    starts = in_pain & ((rated.c.previous.is_(None)) | (rated.c.previous != "pain"))
    counted = {row.session_id: row for row in db.execute(
        select(rated.c.session_id, func.sum(case((starts, 1), else_=0)).label("episodes"),
               func.count().label("rated"),
               func.sum(case((in_pain, 1), else_=0)).label("pain_rows"))
        .group_by(rated.c.session_id))}
    counts = {session_id: count for session_id, count in db.execute(
        select(Assessment.session_id, func.count()).where(Assessment.patient_id == patient_id)
        .group_by(Assessment.session_id))}
    sessions = db.scalars(select(MonitoringSession)
                          .where(MonitoringSession.patient_id == patient_id)
                          .order_by(MonitoringSession.id.desc()))
    summaries = []
    for session in sessions:
        sums, seen = timed.get(session.id), counted.get(session.id)
        summaries.append(SessionSummary(
            session=session, assessments=counts.get(session.id, 0),
            duration_s=_duration_s(session, None if sums is None else sums.last_s),
            assessed_s=0.0 if sums is None else float(sums.assessed_s),
            pain_s=0.0 if sums is None else float(sums.pain_s),
            uncertain_s=0.0 if sums is None else float(sums.uncertain_s),
            episodes=0 if seen is None else int(seen.episodes),
            rated=0 if seen is None else int(seen.rated),
            pain_rows=0 if seen is None else int(seen.pain_rows)))
    return summaries


def _duration_s(session: MonitoringSession, last_offset_s: float | None) -> float | None:
    if session.source == "live":
        if session.ended_at is None:
            return None
        return (session.ended_at - session.started_at).total_seconds()
    if session.source == "video":
        return last_offset_s or 0.0
    return None


def newest_audit_id(db: Session) -> int:
    """The id of the newest audit row (0 when there is none)."""
    return db.scalar(select(func.max(AuditEntry.id))) or 0


def audit_choices(db: Session) -> tuple[list[str], list[str]]:
    """The usernames and the actions that occur in the audit log, sorted (for filters)."""
    names = db.scalars(select(AuditEntry.username).distinct().order_by(AuditEntry.username))
    actions = db.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action))
    return [n for n in names if n], list(actions)
