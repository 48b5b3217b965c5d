"""What the agent sends, built from one frame's assessment: a record and the heartbeat's status.

These are the only places a frame's content leaves the device: a record carries numbers and,
at the first face and at each change of state, one snapshot JPEG downscaled to the server's
``snapshot_side``; a heartbeat carries what the bed shows now, numbers only.
"""

from __future__ import annotations

import base64
import uuid

import cv2
import numpy as np

from neopain.data.images import fit_within
from neopain.monitor.display import shown_of
from neopain.monitor.pipeline import FrameAssessment

MODEL_CHARS = 200
JPEG_QUALITY = 80


def snapshot_jpeg(frame: np.ndarray, *, side: int) -> str:
    """``frame`` as a base64 JPEG whose longest side is at most ``side`` pixels."""
    frame = fit_within(frame, side=side)
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"a frame of shape {frame.shape} could not be encoded as JPEG")
    return base64.b64encode(data.tobytes()).decode("ascii")


def new_record_id() -> str:
    """A record id unique per device forever (uuid4 hex: 32 of ``[0-9a-f]``)."""
    return uuid.uuid4().hex


def record_of(result: FrameAssessment, *, session_id: int, time: float | None,
              snapshot: str | None) -> dict:
    """The protocol's record of an assessed face (``result`` must hold a prediction).

    Args:
        result: the frame's assessment, with a face and an assessable prediction.
        session_id: the session the device is bound to now.
        time: the frame's time on the server's clock; None while the clock is not measured
            (the agent stamps it before sending).
        snapshot: the base64 JPEG (``snapshot_jpeg``) of a snapshot record, else None.
    """
    prediction, face = result.prediction, result.face
    if prediction is None or face is None:
        raise ValueError("record_of needs a frame with a face and its prediction")
    return {"id": new_record_id(), "session_id": int(session_id),
            "time": None if time is None else float(time),
            "label": prediction.label, "prob_pain": float(prediction.prob_pain),
            "smoothed": None if result.smoothed is None else float(result.smoothed),
            "state": result.state, "uncertain": bool(result.uncertain),
            "changed": bool(result.changed), "face_box": [float(v) for v in face.box],
            "latency_ms": float(result.latency_ms), "model": prediction.model[:MODEL_CHARS],
            "snapshot": snapshot}


def status_of(result: FrameAssessment | None, *, frame_at: float | None) -> dict | None:
    """The heartbeat's ``status``: what the bed shows now (``shown_of``) with the smoothed
    value and held state; None before the first frame. ``frame_at``: the frame's server time."""
    if result is None or frame_at is None:
        return None
    shown = shown_of(result)
    return {"kind": shown.kind, "smoothed": None if result.smoothed is None
            else float(result.smoothed), "confidence": shown.confidence,
            "held_state": result.held_state, "frame_at": float(frame_at)}
