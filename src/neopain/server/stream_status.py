"""A live stream's status in the records, for the alarm engine and the ward station.

``StatusWriter`` turns each frame's assessment into the bed's state (``pain``, ``nopain``,
``cannot_assess``, ``no_face``: what the live page shows, ``server.display``) and writes it
with ``crud.write_status``: at once when the state or the onset of pain changes, otherwise at
most every ``alarm_rules.STATUS_WRITE_S`` (frames come several times a second; the rules count
in seconds), and once more when the stream closes (``streaming`` false), so the last frame's
time is then exact.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from neopain.monitor.alarm_rules import STATUS_WRITE_S
from neopain.monitor.pipeline import FrameAssessment
from neopain.server.display import Shown
from neopain.store import crud
from neopain.store.crud import StreamStatus
from neopain.store.session import StoreError

log = logging.getLogger("neopain.server")

WARD_STATE = {"pain": "pain", "nopain": "nopain", "unassessable": "cannot_assess",
              "noface": "no_face"}
"""The ward's name for each kind the live panel shows."""


class StatusWriter:
    """Writes one stream's status (module docstring); called on the stream's own thread."""

    def __init__(self, store: sessionmaker[Session], *, session_id: int) -> None:
        self.store = store
        self.session_id = session_id
        self.written_: StreamStatus | None = None
        self.pending_: StreamStatus | None = None

    def frame(self, result: FrameAssessment, *, shown: Shown, now: datetime) -> None:
        """Note one frame's assessment, received at ``now``."""
        last = self.pending_ or self.written_
        state = WARD_STATE[shown.kind]
        assessed = shown.kind in ("pain", "nopain")
        pain_since = None
        if result.state == "pain":  # the held state: it outlasts a frame or two without a face
            pain_since = last.pain_since if last is not None and last.pain_since else now
        status = StreamStatus(
            state=state, smoothed=result.smoothed, confidence=shown.confidence,
            first_frame_at=now if last is None else last.first_frame_at, last_frame_at=now,
            last_assessed_at=now if assessed else None if last is None else last.last_assessed_at,
            pain_since=pain_since)
        written = self.written_
        due = (written is None or state != written.state or pain_since != written.pain_since
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
                crud.write_status(db, session_id=self.session_id, status=status)
        except (StoreError, SQLAlchemyError) as error:  # the next frame tries again
            log.warning("writing the status of session %d failed: %s", self.session_id,
                        type(error).__name__)
            self.pending_ = status
            return
        self.written_, self.pending_ = status, None

