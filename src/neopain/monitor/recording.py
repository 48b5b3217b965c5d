"""Which frames of a live stream enter the record: one rule for the browser bedside and the
edge agent.

A frame is recorded when it shows an assessable face and either its shown state
(``FrameAssessment.held_state``: the smoothed state, or ``uncertain``) differs from the last
recorded snapshot's (recorded WITH its picture: the first face and each change of state), or
``interval_s`` seconds of stream time have passed since the last record (the probability
timeline). Frames without a face, or with one the model cannot assess: never.
"""

from __future__ import annotations

from neopain.errors import NeopainError
from neopain.monitor.pipeline import FrameAssessment


class RecordPolicy:
    """The record rule (module docstring) for one stream, frame by frame.

    Args:
        interval_s: seconds of stream time between two timeline records (0: every frame).
        last_state: the state of the session's last snapshot when a stream resumes a session
            (None: none yet, so the first assessed face is a snapshot).

    Example:
        >>> policy = RecordPolicy(interval_s=5.0)
        >>> record, snapshot = policy.due(result)  # doctest: +SKIP
        >>> if record:
        ...     save(result, snapshot=snapshot)
        ...     policy.recorded(result, snapshot=snapshot)
    """

    def __init__(self, *, interval_s: float, last_state: str | None = None) -> None:
        self.interval_s = interval_s
        if not interval_s >= 0:
            raise NeopainError(f"interval_s={interval_s!r} must be a number of seconds >= 0 "
                               "(0: every assessed frame)")
        self.last_state_ = last_state
        self.last_recorded_s_: float | None = None

    def due(self, result: FrameAssessment) -> tuple[bool, bool]:
        """Whether ``result`` is to be recorded, and whether as a snapshot (with its picture)."""
        prediction = result.prediction
        if prediction is None or result.face is None or not prediction.assessable:
            return False, False
        shown = result.held_state
        snapshot = shown is not None and shown != self.last_state_
        timeline = (self.last_recorded_s_ is None
                    or result.time_s - self.last_recorded_s_ >= self.interval_s)
        return snapshot or timeline, snapshot

    def recorded(self, result: FrameAssessment, *, snapshot: bool) -> None:
        """Note that ``result`` was recorded (after the save succeeded)."""
        self.last_recorded_s_ = result.time_s
        if snapshot:
            self.last_state_ = result.held_state
