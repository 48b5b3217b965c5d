"""``opencv-haar``: OpenCV's Viola–Jones frontal-face cascade (shipped in ``cv2.data``).

It gives boxes only, no keypoints. A cascade has no probability; the score is a logistic of
the weight OpenCV reports for a detection (``detectMultiScale3(..., outputRejectLevels=True)``:
the sum of the last stage's weak classifiers, which must be at least that stage's threshold,
−2.99, to pass at all):

    score = 1 / (1 + exp(−(weight − 1.5)))

so the default threshold 0.5 keeps detections whose weight is at least 1.5. The offset is a
heuristic read off a few images, not a calibration: real faces (scikit-image's astronaut)
weigh about 5.8 (score 0.99), while the false detection in scikit-image's gravel texture
weighs 1.2 (score 0.43); faces drawn by ``neopain synth`` weigh 0.4 to 7.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from neopain.faces.base import DetectorError, Face, FaceDetector, register_detector

CASCADE_FILE = "haarcascade_frontalface_default.xml"
WEIGHT_AT_HALF = 1.5
"""The cascade weight that maps to score 0.5."""


def score_from_weight(weight: float) -> float:
    """The [0, 1] score of a cascade detection weight (see the module docstring)."""
    return 1.0 / (1.0 + math.exp(-(weight - WEIGHT_AT_HALF)))


@register_detector("opencv-haar")
class HaarCascade(FaceDetector):
    """OpenCV's frontal-face Haar cascade.

    Args:
        threshold: lowest score reported (default 0.5: cascade weight >= 1.5).
        max_side: longer image side used for detection.
        scale_factor: step between the scanned window sizes (OpenCV's ``scaleFactor``).
        min_neighbors: overlapping raw detections a face needs (OpenCV's ``minNeighbors``).
        min_size: smallest face side scanned, in pixels of the (downscaled) image.
    """

    default_threshold = 0.5
    has_keypoints = False

    def __init__(
        self,
        *,
        threshold: float | None = None,
        max_side: int = 1280,
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        min_size: int = 24,
    ) -> None:
        super().__init__(threshold=threshold, max_side=max_side)
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        if not scale_factor > 1.0:
            raise DetectorError(f"scale_factor={scale_factor} must be greater than 1")
        if min_neighbors < 0:
            raise DetectorError(f"min_neighbors={min_neighbors} must be 0 or more")
        if min_size < 1:
            raise DetectorError(f"min_size={min_size} must be at least 1 pixel")
        path = Path(cv2.data.haarcascades) / CASCADE_FILE
        self._cascade: cv2.CascadeClassifier | None = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise DetectorError(f"OpenCV's cascade {path} is missing or unreadable; "
                                "reinstall opencv-python-headless")

    def _detect(self, image: np.ndarray, *, prior: Face | None) -> list[Face]:
        if self._cascade is None:
            raise DetectorError(f"detector {self.name!r} is closed; create a new one")
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        boxes, _levels, weights = self._cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size), outputRejectLevels=True)
        return [
            Face(box=(float(x), float(y), float(x + w), float(y + h)),
                 score=score_from_weight(float(weight)))
            for (x, y, w, h), weight in zip(boxes, np.ravel(weights))
        ]

    def close(self) -> None:
        """Drop the cascade. Safe to call twice."""
        self._cascade = None
