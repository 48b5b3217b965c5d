"""The monitor's one pain model: loaded as the bedside runs it, shared by every stream."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from neopain.config import Settings
from neopain.prediction import Calibration, Prediction, Predictor, load_predictor
from neopain.server.heatmap import LIVE_EVIDENCE_GRID


def load_live_predictor(settings: Settings) -> Predictor:
    """``settings.model`` loaded as the monitor runs it (a coarser evidence grid)."""
    return load_predictor(settings.model, evidence_grid=LIVE_EVIDENCE_GRID)


class SharedPredictor(Predictor):
    """A predictor used by several streams: predictions pass one at a time (models such as the
    face mesh are not thread-safe), and so does evidence unless the model is thread-safe (an
    exported model's occlusion then never holds up another bed). ``close`` closes it.

    ``with_calibration`` gives one stream its own view of the model (``Predictor``'s hook)
    behind the same lock: the other streams keep theirs.
    """

    def __init__(self, inner: Predictor, *, lock: threading.Lock | None = None) -> None:
        self._inner = inner
        self.name = inner.name
        self.crop = inner.crop
        self.evidence_interval_s = inner.evidence_interval_s
        self.calibrates = inner.calibrates
        self._lock = threading.Lock() if lock is None else lock

    def predict_crops(self, crops: Sequence[np.ndarray]) -> list[Prediction]:
        with self._lock:
            return self._inner.predict_crops(crops)

    def evidence(self, crops: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        if self._inner.thread_safe:
            return self._inner.evidence(crops)
        with self._lock:
            return self._inner.evidence(crops)

    def explain(self, prediction: Prediction) -> list[str] | None:
        return self._inner.explain(prediction)  # reads the prediction only: no lock

    def window_score(self, predictions: Sequence[Prediction]) -> dict[str, float] | None:
        return self._inner.window_score(predictions)  # reads predictions only: no lock

    def calibrate(self, crops: Sequence[np.ndarray]) -> Calibration | None:
        with self._lock:
            return self._inner.calibrate(crops)

    def with_calibration(self, calibration: Calibration) -> Predictor:
        view = self._inner.with_calibration(calibration)
        return self if view is self._inner else SharedPredictor(view, lock=self._lock)

    def close(self) -> None:
        with self._lock:
            self._inner.close()
