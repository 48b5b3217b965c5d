""""Calibrate at rest" for one live stream: a few seconds of the baby at rest become the
model's reference for this session, stored, audited and applied again when the stream resumes.

The page sends ``{"type": "calibrate", "seconds": 3}``; ``StreamCalibration.request`` starts
collecting (or says why not), ``add`` keeps the face crops of the next frames for that many
seconds (at most ``MAX_SECONDS`` and ``MAX_CROPS``) and then asks the model for a calibration
(``Predictor.calibrate``), stores it (``crud.add_calibration``) and hands back the stream's own
calibrated view of the shared model (``Predictor.with_calibration``): other streams keep
theirs. The answer waits in ``take``: ``{"type": "calibrated", "frames": N, "at": iso time}``
or ``{"type": "error", "command": "calibrate", "message": …}`` naming why (no face at rest, a
model that needs no calibration, already collecting). Nothing here asks which model runs.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from neopain.errors import NeopainError
from neopain.monitor.pipeline import FrameAssessment
from neopain.prediction import Calibration, Predictor
from neopain.store import crud
from neopain.store.tables import SessionCalibration

DEFAULT_SECONDS = 3.0
MAX_SECONDS = 10.0
MAX_CROPS = 30
"""A calibration rests on the face crops of at most ``MAX_SECONDS`` of frames and at most
``MAX_CROPS`` crops, whichever comes first."""

log = logging.getLogger("neopain.server")


def calibration_error(message: str) -> dict[str, Any]:
    """The reply that says why a calibration was not taken."""
    return {"type": "error", "command": "calibrate", "message": message}


def calibrated_reply(row: SessionCalibration, *, restored: bool = False) -> dict[str, Any]:
    """The reply that says a calibration applies: from how many frames, taken when."""
    return {"type": "calibrated", "frames": row.frames, "at": row.created_at.isoformat(),
            "restored": restored}


MAX_CROP_SIDE = 640
"""Collected crops are shrunk to this side at most: 30 whole 1920-pixel frames (a model that
crops nothing) would otherwise hold some 300 MB per stream while collecting."""


def _bounded(crop: np.ndarray) -> np.ndarray:
    side = max(crop.shape[:2])
    if side <= MAX_CROP_SIDE:
        return crop
    scale = MAX_CROP_SIDE / side
    return cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


class StreamCalibration:
    """One stream's rest calibration: collecting, calibrating, storing, restoring.

    Args:
        store: the records.
        session_id: the live session calibrated.
        max_crops: the most crops a calibration collects.
    """

    def __init__(self, store: sessionmaker[Session], *, session_id: int,
                 max_crops: int = MAX_CROPS) -> None:
        self.store = store
        self.session_id = session_id
        self.max_crops = max_crops
        self.seconds_: float | None = None  # collecting for this long; None: not collecting
        self.user_id_: int | None = None
        self.started_s_: float | None = None
        self.crops_: list[np.ndarray] = []
        self.frames_ = 0
        self._replies: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # requests come from the event loop, frames do not

    def request(self, command: Mapping[str, Any], *, user_id: int | None,
                calibrates: bool = True) -> dict[str, Any] | None:
        """Start collecting for ``command["seconds"]`` (default ``DEFAULT_SECONDS``) of the
        next frames; None, or the error reply (the model needs no calibration, already
        collecting, a bad number of seconds)."""
        if not calibrates:  # say so now, not after collecting frames for nothing
            return calibration_error("Not calibrated: this model needs no calibration.")
        with self._lock:
            return self._request(command, user_id=user_id)

    def _request(self, command: Mapping[str, Any], *, user_id: int | None
                 ) -> dict[str, Any] | None:
        if self.seconds_ is not None:
            return calibration_error("A calibration is already being collected; wait for it "
                                     "to finish.")
        seconds = command.get("seconds", DEFAULT_SECONDS)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
                math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
            return calibration_error(f"seconds={seconds!r} is not valid; valid: a number of "
                                     f"seconds above 0 and at most {MAX_SECONDS:g}.")
        self.seconds_, self.user_id_, self.started_s_ = float(seconds), user_id, None
        self.crops_, self.frames_ = [], 0
        return None

    def add(self, result: FrameAssessment, *, predictor: Predictor) -> Predictor | None:
        """Collect one assessed frame's crop (on the stream's thread); when the time is up or
        ``max_crops`` are in, calibrate ``predictor`` (the stream's model) and store it. The
        calibrated view the stream uses from now on, or None (still collecting, or it
        failed: the reply in ``take`` says why)."""
        with self._lock:
            if self.seconds_ is None:
                return None
            if self.started_s_ is None:
                self.started_s_ = result.time_s
            self.frames_ += 1
            if result.crop is not None:
                self.crops_.append(_bounded(result.crop))
            if (result.time_s - self.started_s_ < self.seconds_
                    and len(self.crops_) < self.max_crops):
                return None
            crops, frames, seconds = self.crops_, self.frames_, self.seconds_
        try:
            return self._calibrate(predictor, crops=crops, frames=frames, seconds=seconds)
        except NeopainError as error:  # scoring or store errors name what was wrong
            self._reply(calibration_error(f"Not calibrated: {error}"))
            return None
        except (SQLAlchemyError, ValueError, cv2.error) as error:  # never ends the stream
            log.warning("calibration of session %d failed: %s", self.session_id,
                        type(error).__name__)
            self._reply(calibration_error("Not calibrated: the calibration could not be "
                                          "computed or saved; try again."))
            return None
        finally:  # a new request may come only now: "already collecting" until here
            with self._lock:
                self.seconds_, self.crops_ = None, []

    def _calibrate(self, predictor: Predictor, *, crops: list[np.ndarray], frames: int,
                   seconds: float) -> Predictor | None:
        if not crops:
            raise NeopainError(f"no face at rest: no face was found in the {frames} frame(s) "
                               f"of {seconds:g} s; keep the baby's face in view and try again")
        calibration = predictor.calibrate(crops)
        if calibration is None:
            raise NeopainError(f"the model {predictor.name} needs no calibration")
        view = predictor.with_calibration(calibration)
        with self.store() as db:
            session = crud.get_session(db, self.session_id)
            user = None if self.user_id_ is None else crud.get_user(db, self.user_id_)
            row = crud.add_calibration(db, session=session, actor=user,
                                       model=calibration.model, frames=calibration.frames,
                                       reference=calibration.reference)
            self._reply(calibrated_reply(row))
        return view

    def restore(self, predictor: Predictor) -> Predictor:
        """``predictor`` with the session's stored calibration applied (a resumed stream), or
        ``predictor`` itself when there is none for this model."""
        with self.store() as db:
            row = crud.latest_calibration(db, session_id=self.session_id)
            if row is None or row.model != predictor.name:
                return predictor
            calibration = Calibration(model=row.model, frames=row.frames,
                                      reference=crud.calibration_reference(row))
            reply = calibrated_reply(row, restored=True)
        try:
            view = predictor.with_calibration(calibration)
        except NeopainError as error:
            log.warning("session %s: stored calibration not applied: %s", self.session_id,
                        error)
            return predictor
        self._reply(reply)
        return view

    def _reply(self, reply: dict[str, Any]) -> None:
        with self._lock:
            self._replies.append(reply)

    def take(self) -> list[dict[str, Any]]:
        """The replies waiting to be sent (``calibrated`` or an error), once."""
        with self._lock:
            replies, self._replies = self._replies, []
        return replies
