"""``dlib-hog``: dlib's frontal-face detector (HOG features and a linear SVM, sliding windows over
an image pyramid) from dlib-bin==20.0.1.post1 (Boost Software License), whose library holds the
model. It gives boxes only, no keypoints.

The SVM gives a margin, not a probability; the score is a logistic of it:

    score = 1 / (1 + exp(−(margin − 0.25) / 0.25))

so the default threshold 0.5 keeps windows whose margin is at least 0.25 (dlib's own cut is
margin 0, score 0.27). The offset and width are a heuristic read off a few images, not a
calibration: scikit-image's astronaut's face has margin 1.16 (score 0.98), the mission patch on
her suit 0.12 (0.37), the 3/4-turned cameraman −0.11 (0.19); photos without a face (coffee,
chelsea, rocket, gravel, brick, grass) give at most −0.38 (0.07). Faces drawn by ``neopain
synth`` give −1.0 to 1.3: the detector misses most of the small noisy ones.

The image is given in RGB and upsampled ``upsample`` times (each doubles its side) before the
scan: the model's window is 80×80 pixels, so one upsampling finds faces down to about 40 pixels
(dlib's examples do the same) at 3 to 6 times the time.
"""

from __future__ import annotations

import functools
import importlib
import math
import pickle
from typing import Any

import numpy as np

from neopain.faces.base import DetectorError, Face, FaceDetector, register_detector

MARGIN_AT_HALF = 0.25
"""The SVM margin that maps to score 0.5."""
MARGIN_SCALE = 0.25
"""The margin step that multiplies the odds by e."""
MAX_UPSAMPLE = 3


def score_from_margin(margin: float) -> float:
    """The [0, 1] score of an SVM margin (see the module docstring)."""
    return 1.0 / (1.0 + math.exp(-(margin - MARGIN_AT_HALF) / MARGIN_SCALE))


def margin_from_score(score: float) -> float:
    """The SVM margin whose score is ``score`` (scores 0 and 1 are taken as 1e-6 from them)."""
    score = min(max(score, 1e-6), 1.0 - 1e-6)
    return MARGIN_AT_HALF + MARGIN_SCALE * math.log(score / (1.0 - score))


def import_dlib() -> Any:
    """The ``dlib`` module.

    Raises:
        DetectorError: dlib is not installed (saying how to install it).
    """
    try:
        return importlib.import_module("dlib")
    except ImportError as error:
        raise DetectorError(f"the dlib-hog detector needs dlib, which is not installed here "
                            f"({error}); install it with pip install \"neopain[detectors]\" "
                            f"(or pip install dlib-bin==20.0.1.post1)") from None


@functools.cache
def _frontal_face_model() -> bytes:
    # dlib decodes its built-in model from text in about 0.17 s per detector; it is decoded
    # once per process and kept pickled (155 kB): each detector unpickles its own copy in 1 ms
    # (a dlib detector keeps scratch state while it runs, so one is never shared)
    return pickle.dumps(import_dlib().get_frontal_face_detector())


@register_detector("dlib-hog")
class DlibHog(FaceDetector):
    """dlib's HOG frontal-face detector (see the module docstring).

    Args:
        threshold: lowest score reported (default 0.5: SVM margin >= 0.25).
        max_side: longer image side used for detection.
        upsample: times the image is doubled before the scan (0 to 3); each finds faces half as
            large, at 3 to 6 times the time.

    Raises:
        DetectorError: a bad option, or dlib is not installed (the message says how to install
            it).
    """

    default_threshold = 0.5
    has_keypoints = False

    def __init__(self, *, threshold: float | None = None, max_side: int = 1280,
                 upsample: int = 1) -> None:
        super().__init__(threshold=threshold, max_side=max_side)
        self.upsample = upsample
        if not 0 <= upsample <= MAX_UPSAMPLE:
            raise DetectorError(f"upsample={upsample} must be 0 to {MAX_UPSAMPLE}")
        import_dlib()
        self._detector: Any = pickle.loads(_frontal_face_model())

    def _detect(self, image: np.ndarray, *, prior: Face | None) -> list[Face]:
        if self._detector is None:
            raise DetectorError(f"detector {self.name!r} is closed; create a new one")
        rectangles, margins, _ = self._detector.run(
            np.ascontiguousarray(image[:, :, ::-1]), self.upsample,
            margin_from_score(self.threshold_))
        # dlib's rectangles include their right and bottom pixel rows
        return [
            Face(box=(float(box.left()), float(box.top()), float(box.right() + 1),
                      float(box.bottom() + 1)),
                 score=score_from_margin(float(margin)))
            for box, margin in zip(rectangles, margins)
        ]

    def close(self) -> None:
        """Drop the detector. Safe to call twice."""
        self._detector = None
