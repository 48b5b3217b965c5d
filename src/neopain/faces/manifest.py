"""``manifest``: the face box (and keypoints) the manifest already has, as the published
iCOPE+UNIFESP table provides; it looks at no pixels.

It returns the ``prior`` face given to ``detect`` with score 1.0 (the annotation is taken as
certain), or nothing when the row has no box. Its default threshold is 0.0.
"""

from __future__ import annotations

import numpy as np

from neopain.faces.base import Face, FaceDetector, register_detector


@register_detector("manifest")
class ManifestBoxes(FaceDetector):
    """The manifest's own face box and keypoints, passed to ``detect`` as ``prior``.

    >>> detector = ManifestBoxes()
    >>> detector.detect(image, prior=Face((10, 20, 110, 140), 1.0))  # doctest: +SKIP
    [Face(box=(10.0, 20.0, 110.0, 140.0), score=1.0, keypoints=None)]
    """

    default_threshold = 0.0
    has_keypoints = True  # when the manifest has them
    reads_pixels = False

    def _detect(self, image: np.ndarray, *, prior: Face | None) -> list[Face]:
        if prior is None:
            return []
        x1, y1, x2, y2 = (float(value) for value in prior.box)
        return [Face(box=(x1, y1, x2, y2), score=1.0, keypoints=prior.keypoints)]
