"""MediaPipe BlazeFace detectors: ``mediapipe-short`` (faces within ~2 m, the bedside camera)
and ``mediapipe-full`` (faces up to ~5 m, smaller in the frame).

Both use the legacy solutions API of mediapipe==0.10.21, whose wheel ships the models (nothing
is downloaded). Scores are BlazeFace's own confidences; the default threshold, 0.5, is
MediaPipe's default ``min_detection_confidence``.

Keypoints: BlazeFace gives 6 points (the subject's right eye, left eye, nose tip, mouth centre,
right ear, left ear). The manifest's 5 are derived from them: the eyes ordered image-left first,
the nose tip as given, and the two mouth corners ESTIMATED, not detected: the mouth centre
± 0.4 × the vector between the eyes, i.e. a mouth 0.8 eye-distances wide lying along the eye
line. On scikit-image's smiling astronaut they land within 0.3 eye distances of the visible
corners (a smile or a cry lifts and widens the real ones); use the face mesh
(``neopain.faces.landmarks``) when mouth corners must be measured.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from neopain.errors import NeopainError

from neopain.faces.base import DetectorError, Face, FaceDetector, register_detector

MOUTH_HALF_WIDTH = 0.4
"""Half the estimated mouth width, in units of the eye-to-eye vector."""


def keypoints_from_blazeface(points: np.ndarray) -> np.ndarray:
    """The 5 manifest keypoints from BlazeFace's 6 (pixels), mouth corners estimated.

    Args:
        points: (6, 2) array: subject's right eye, left eye, nose tip, mouth centre, ears.

    Returns:
        (5, 2) array in ``KEYPOINT_NAMES`` order: image-left eye, image-right eye, nose tip,
        image-left mouth corner, image-right mouth corner.
    """
    points = np.asarray(points, dtype=float)
    if points.shape != (6, 2):
        raise ValueError(f"points has shape {points.shape}; BlazeFace gives (6, 2)")
    eyes = points[:2][np.argsort(points[:2, 0], kind="stable")]
    half_mouth = MOUTH_HALF_WIDTH * (eyes[1] - eyes[0])
    mouth = points[3]
    return np.stack([eyes[0], eyes[1], points[2], mouth - half_mouth, mouth + half_mouth])



MEDIAPIPE_MISSING = ("{what} needs mediapipe, which is not installed here ({error}); install "
                     "mediapipe==0.10.21 (0.10.18 on a 64-bit ARM board), or use an exported "
                     "model.onnx with NEOPAIN_DETECTOR=opencv-haar and NEOPAIN_REDETECT_EVERY=0")


def import_mediapipe(solution: str, *, what: str) -> Any:
    """``mediapipe.python.solutions.<solution>``.

    Raises:
        NeopainError: mediapipe is not installed (naming ``what`` needed it and the ways out).
    """
    try:
        with _pyplot_on_first_use():
            return importlib.import_module(f"mediapipe.python.solutions.{solution}")
    except ImportError as error:
        raise NeopainError(MEDIAPIPE_MISSING.format(what=what, error=error)) from None


class _PyplotOnFirstUse(types.ModuleType):
    """Stands in for ``matplotlib.pyplot`` in mediapipe's drawing helpers, importing the real
    one on first use (neopain never draws with them)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("matplotlib.pyplot"), name)


@contextmanager
def _pyplot_on_first_use() -> Iterator[None]:
    """While mediapipe is first imported, ``import matplotlib.pyplot`` (drawing_utils does it at
    import) gets a stand-in: pyplot's import builds matplotlib's font list, about half a second
    of CPU and more on a bed device's first start, before its first assessment.

    Written here because ``importlib.util.LazyLoader`` does not help: on Python 3.11 an
    ``import`` statement reads the lazy module's ``__spec__``, which loads it at once.
    """
    name = "matplotlib.pyplot"
    if "mediapipe" in sys.modules or name in sys.modules:
        yield
        return
    stand_in = sys.modules[name] = _PyplotOnFirstUse(name)
    try:
        yield
    finally:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]


class _BlazeFace(FaceDetector):
    """A BlazeFace graph; subclasses pick the model (``model_selection``)."""

    default_threshold = 0.5
    has_keypoints = True
    model_selection = 0

    def __init__(self, *, threshold: float | None = None, max_side: int = 1280) -> None:
        super().__init__(threshold=threshold, max_side=max_side)
        # imported here: loading mediapipe takes about a second and most commands never need it
        face_detection = import_mediapipe("face_detection", what=f"the {self.name} detector")

        self._graph: Any = face_detection.FaceDetection(
            model_selection=self.model_selection, min_detection_confidence=self.threshold_)

    def _detect(self, image: np.ndarray, *, prior: Face | None) -> list[Face]:
        if self._graph is None:
            raise DetectorError(f"detector {self.name!r} is closed; create a new one")
        height, width = image.shape[:2]
        result = self._graph.process(np.ascontiguousarray(image[:, :, ::-1]))  # BGR → RGB
        faces = []
        for detection in result.detections or []:
            box = detection.location_data.relative_bounding_box
            x1, y1 = box.xmin * width, box.ymin * height
            points = np.array([[point.x * width, point.y * height]
                               for point in detection.location_data.relative_keypoints])
            faces.append(Face(
                box=(x1, y1, x1 + box.width * width, y1 + box.height * height),
                score=float(detection.score[0]),
                keypoints=keypoints_from_blazeface(points),
            ))
        return faces

    def close(self) -> None:
        """Close the MediaPipe graph (its threads and buffers). Safe to call twice."""
        if self._graph is not None:
            self._graph.close()
            self._graph = None


@register_detector("mediapipe-short")
class MediaPipeShortRange(_BlazeFace):
    """BlazeFace short-range (faces within about 2 m of the camera); see the module docstring."""

    model_selection = 0


@register_detector("mediapipe-full")
class MediaPipeFullRange(_BlazeFace):
    """BlazeFace full-range (faces up to about 5 m away); see the module docstring."""

    model_selection = 1
