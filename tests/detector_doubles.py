"""Face detectors for tests whose frames are drawn: the face is where the frame is not black."""

from __future__ import annotations

import numpy as np

from neopain.faces.base import Face, FaceDetector


class BrightBox(FaceDetector):
    """The box around the non-black pixels; no face in an all-black frame."""

    default_threshold = 0.0

    def _detect(self, image, *, prior):
        ys, xs = np.nonzero(image.max(axis=2))
        if xs.size == 0:
            return []
        return [Face((float(xs.min()), float(ys.min()), float(xs.max() + 1),
                      float(ys.max() + 1)), 0.9)]
