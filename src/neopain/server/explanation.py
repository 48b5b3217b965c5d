"""The explanation panel of a live reply: what the model saw, the DAN score, or why not.

``StreamExplainer`` belongs to one live stream. For every frame it builds the reply's
``explanation``:

- ``status``: ``"assessed"``, ``"cannot_assess"`` (with ``reason``: head turned, face too
  small, no face mesh …) or ``"no_face"``;
- ``lines``: the model's own words for an assessed face (``Predictor.explain``; the NFCS
  scorer names the actions present, "brow bulge, eye squeeze — 2 of 7"); [] otherwise;
- ``note``: for a model that names nothing (an exported network), that its evidence is the
  heatmap overlay;
- ``dan``: the DAN facial score (0-4) of the last ``DAN_WINDOW_S`` seconds of the scorer's
  results (``scoring.dan.score_window``), with the frames it rests on; None for a model whose
  predictions carry no NFCS count and flags.

Generic code here never asks which model runs: the lines and the window's score come through
the predictor's hooks (``explain``, ``window_score``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from neopain.monitor.images import UNKNOWN_REASON
from neopain.monitor.pipeline import FrameAssessment
from neopain.monitor.video import DAN_WINDOW_S  # 20 frames at the page's 2 per second
from neopain.prediction import Prediction, Predictor


HEATMAP_NOTE = ("This model names no facial actions: its evidence is the heatmap overlay "
                "(tick Heatmap overlay to see where it saw pain).")
NO_FACE = "no face found in the frame"


class StreamExplainer:
    """The explanation of each frame of one stream, with its window of NFCS results.

    Args:
        window_s: seconds of stream time the DAN score looks back over.
    """

    def __init__(self, *, window_s: float = DAN_WINDOW_S) -> None:
        self.window_s = window_s
        self.recent_: deque[tuple[float, Prediction]] = deque()

    def explain(self, result: FrameAssessment, *, predictor: Predictor) -> dict[str, Any]:
        """The ``explanation`` of the reply to ``result`` (see the module's docstring)."""
        prediction = result.prediction
        if prediction is not None:
            self.recent_.append((result.time_s, prediction))
        # the last window_s seconds, (now - window_s, now]: 20 frames at 2 per second, as a
        # video's [start, start + window_s) holds
        while self.recent_ and result.time_s - self.recent_[0][0] >= self.window_s:
            self.recent_.popleft()
        reply: dict[str, Any] = {"status": "no_face", "lines": [], "note": "",
                                 "reason": NO_FACE, "dan": self._dan(predictor)}
        if prediction is None:
            return reply
        if not prediction.assessable:
            reply.update(status="cannot_assess", reason=prediction.reason or UNKNOWN_REASON)
            return reply
        lines = predictor.explain(prediction)
        reply.update(status="assessed", reason="", lines=list(lines or []),
                     note=HEATMAP_NOTE if lines is None else "")
        return reply

    def _dan(self, predictor: Predictor) -> dict[str, Any] | None:
        score = predictor.window_score([p for _, p in self.recent_]) if self.recent_ else None
        return None if score is None else {**score, "window_s": self.window_s}
