"""A live stream's status in the records, for the alarm engine and the ward station.

``StatusWriter`` turns each frame's assessment into the bed's state (``pain``, ``nopain``,
``uncertain``, ``cannot_assess``, ``no_face``: what the live page shows, ``monitor.display``)
and writes it with ``crud.write_status``: at once when the state or the onset of pain changes,
otherwise at most every ``alarm_rules.STATUS_WRITE_S`` (frames come several times a second; the
rules count in seconds), and once more when the stream closes (``streaming`` false), so the last
frame's time is then exact.

The held state it writes for the alarm rules is ``FrameAssessment.held_state``: ``uncertain``
while the model's referral band refers the face, else the smoothed ``pain``/``nopain``.
Uncertain is unknown for pain, like a face lost for a while: it keeps the onset of pain, so
pain broken by moments of uncertainty is pain since its start (docs/monitor.md, "Alarms").
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from neopain.monitor.alarm_rules import STATUS_WRITE_S
from neopain.monitor.pipeline import FrameAssessment
from neopain.monitor.display import Shown
from neopain.store import crud
from neopain.store.crud import StreamStatus
from neopain.store.session import StoreError

log = logging.getLogger("neopain.server")

WARD_STATE = {"pain": "pain", "nopain": "nopain", "uncertain": "uncertain",
              "unassessable": "cannot_assess", "noface": "no_face"}
"""The ward's name for each kind the live panel shows."""


class StatusWriter:
    """Writes one stream's status (module docstring); called on the stream's own thread.

    A stream that resumes a session (``resume``) continues from the status its session's
    last stream wrote: the first frame, the last assessed face and the onset of pain carry
    over, so a reconnection neither clears a standing pain alarm nor restarts its clock. The
    onset of pain is dropped only when the held state is no pain; while it is unknown or
    uncertain (no face for a while, no face judged yet since the reconnection, or a face the
    band refers) it is kept.
    """

    def __init__(self, store: sessionmaker[Session], *, session_id: int,
                 started_at: datetime) -> None:
        self.store = store
        self.session_id = session_id
        self.started_at = started_at
        self.carried_: StreamStatus | None = None
        self.written_: StreamStatus | None = None
        self.pending_: StreamStatus | None = None

    def resume(self) -> None:
        """Read the session's status as its last stream left it, to continue from (a failed
        read is logged, and the stream starts afresh)."""
        try:
            with self.store() as db:
                row = crud.read_status(db, session_id=self.session_id)
        except (StoreError, SQLAlchemyError) as error:
            log.warning("reading the status of session %d failed: %s", self.session_id,
                        type(error).__name__)
            return
        if row is not None:
            self.carried_ = replace(crud.stream_status_of(row), stream_started_at=self.started_at)

    def frame(self, result: FrameAssessment, *, shown: Shown, now: datetime) -> None:
        """Note one frame's assessment, received at ``now``."""
        self.reading(kind=shown.kind, smoothed=result.smoothed, confidence=shown.confidence,
                     held=result.held_state, now=now)

    def reading(self, *, kind: str, smoothed: float | None, confidence: float | None,
                held: str | None, now: datetime) -> None:
        """Note what a frame taken at ``now`` showed (``Shown.kind`` and ``confidence``,
        ``FrameAssessment.smoothed`` and ``held_state``): a bed device sends these, not
        frames."""
        last = self.pending_ or self.written_ or self.carried_
        state = WARD_STATE[kind]
        # a face whose pain the model could say: uncertain is not one (alarm_rules: after
        # noface_s it raises "No assessment")
        assessed = kind in ("pain", "nopain")
        before = None if last is None else last.pain_since
        # the held state outlasts a frame or two without a face; unknown and uncertain keep the
        # onset (pain broken by moments of uncertainty is still pain since its start)
        pain_since = {"pain": before or now, "nopain": None}.get(held, before)
        status = StreamStatus(
            state=state, smoothed=smoothed, confidence=confidence,
            first_frame_at=now if last is None else last.first_frame_at, last_frame_at=now,
            last_assessed_at=now if assessed else None if last is None else last.last_assessed_at,
            held_state=held, pain_since=pain_since, stream_started_at=self.started_at)
        written = self.written_
        due = (written is None or state != written.state or pain_since != written.pain_since
               or held != written.held_state
               or now - written.last_frame_at >= timedelta(seconds=STATUS_WRITE_S))
        if due:
            self._write(status)
        else:
            self.pending_ = status

    def close(self) -> None:
        """The stream closed: write its newest status, no longer streaming."""
        last = self.pending_ or self.written_
        if last is not None:
            self._write(replace(last, streaming=False))

    def _write(self, status: StreamStatus) -> None:
        try:
            with self.store() as db:
                written = crud.write_status(db, session_id=self.session_id, status=status)
        except (StoreError, SQLAlchemyError) as error:  # the next frame tries again
            log.warning("writing the status of session %d failed: %s", self.session_id,
                        type(error).__name__)
            written = False
        if written:
            self.written_, self.pending_ = status, None
        else:  # a newer stream speaks for the session, or the write failed: kept for later
            self.pending_ = status

