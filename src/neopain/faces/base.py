"""The ``FaceDetector`` base class, the ``Face`` record, the detector registry and the rule that
picks the subject's face.

Every detector takes a BGR uint8 H×W×3 image and returns ``Face`` records in that image's pixel
coordinates, sorted by score (highest first), with only faces at or above its threshold.
Large images are downscaled so that their longer side is at most ``max_side`` before detection
and the boxes and keypoints are mapped back. A detector family overrides one hook,
``_detect``; detectors hold native resources, so they are context managers (``close``).
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import numpy as np

from neopain.data.images import fit_within
from neopain.errors import NeopainError

KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""Manifest keypoint order; left and right are IMAGE-left and IMAGE-right."""


def image_left_first(points: np.ndarray) -> np.ndarray:
    """5 keypoints with each eye pair and each mouth-corner pair put image-left first
    (``KEYPOINT_NAMES``); models report them in the subject's left/right or either order."""
    points = np.array(points, dtype=np.float64, copy=True)
    for a, b in ((0, 1), (3, 4)):
        if points[a, 0] > points[b, 0]:
            points[[a, b]] = points[[b, a]]
    return points


class DetectorError(NeopainError):
    """A detector that cannot be built or run (unknown name, bad option, unusable model file)."""


@dataclass(frozen=True)
class Face:
    """One detected face: ``box`` (x1, y1, x2, y2) in pixels, ``score`` in [0, 1], the 5
    keypoints as a (5, 2) array in ``KEYPOINT_NAMES`` order, or None when the detector has none,
    and the face mesh's landmarks ((468 or 478, 3), the same pixels) when a tracker
    (``faces.tracking``) found them, else None."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray | None = None
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)

    def scaled(self, factor: float) -> Face:
        """The same face in an image ``factor`` times as large (box, keypoints and landmarks
        scaled)."""
        keypoints = None if self.keypoints is None else self.keypoints * factor
        landmarks = None if self.landmarks is None else self.landmarks * factor
        return Face(tuple(v * factor for v in self.box), self.score, keypoints, landmarks)


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


CLOSE_SCORES = 0.05


def choose_face(faces: list[Face], *, image_shape: tuple[int, ...]) -> Face | None:
    """The subject's face among detections, or None when there is none.

    The rule: the highest score wins; faces scoring within 0.05 of the best count as tied, and
    among those the largest box wins, then the one whose centre is nearest the image centre
    (the camera points at the infant: other faces are smaller, parents at the edge).
    """
    if not faces:
        return None
    best = max(face.score for face in faces)
    tied = [face for face in faces if face.score >= best - CLOSE_SCORES]
    height, width = image_shape[:2]

    def off_centre(face: Face) -> float:
        x1, y1, x2, y2 = face.box
        return math.hypot((x1 + x2) / 2 - width / 2, (y1 + y2) / 2 - height / 2)

    return min(tied, key=lambda face: (-round(face.area), off_centre(face)))


class FaceDetector(ABC):
    """Base of every detector family: downscaling, sorting, thresholding; one hook ``_detect``.

    Args:
        threshold: the lowest score reported; None uses the family's ``default_threshold``.
        max_side: longer image side used for detection; larger images are downscaled and the
            results mapped back to the original pixels.
    """

    name: ClassVar[str] = ""
    default_threshold: ClassVar[float] = 0.5
    has_keypoints: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False
    """True for a family that runs the user's own model file, given as ``model=PATH``."""
    reads_pixels: ClassVar[bool] = True
    """False for a family that reports faces it was told of (``manifest``) instead of looking."""

    def __init__(self, *, threshold: float | None = None, max_side: int = 1280) -> None:
        self.threshold = threshold
        self.max_side = max_side
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise DetectorError(f"threshold={threshold} must lie in [0, 1]")
        if max_side < 64:
            raise DetectorError(f"max_side={max_side} must be at least 64 pixels")

    @property
    def threshold_(self) -> float:
        """The threshold in use."""
        return self.default_threshold if self.threshold is None else self.threshold

    def detect(self, image: np.ndarray, *, prior: Face | None = None) -> list[Face]:
        """Faces in a BGR uint8 H×W×3 image, highest score first, at or above the threshold.

        ``prior`` is what the manifest already says for this image; only the ``manifest``
        detector uses it.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DetectorError(f"expected a BGR uint8 H×W×3 image, got {image.dtype} "
                                f"{image.shape}; read images with neopain.data.images.read_image")
        height, width = image.shape[:2]
        factor = min(1.0, self.max_side / max(height, width))
        small = fit_within(image, side=self.max_side)
        faces = self._detect(small, prior=None if prior is None else prior.scaled(factor))
        if factor != 1.0:
            faces = [face.scaled(1.0 / factor) for face in faces]
        faces = [face for face in faces if face.score >= self.threshold_]
        return sorted(faces, key=lambda face: -face.score)

    @abstractmethod
    def _detect(self, image: np.ndarray, *, prior: Face | None) -> list[Face]:
        """Faces in ``image`` (already downscaled), in its pixels, any order, any score."""

    @classmethod
    def files_read(cls, options: Mapping[str, object]) -> dict[str, Path]:
        """The files a detector built with ``options`` reads, by name: their content decides
        its output, so a resumed ``faces detect`` hashes them. By default, the options that
        name a file; a family that finds files of its own (``opencv-ssd``'s network file next
        to its weights) adds them."""
        return {name: Path(value) for name, value in options.items()
                if isinstance(value, (str, os.PathLike)) and Path(value).is_file()}

    def close(self) -> None:  # noqa: B027 - a hook that does nothing by default (STYLE rule 7)
        """Release native resources (graphs, sessions). Safe to call twice."""

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_REGISTRY: dict[str, type[FaceDetector]] = {}
D = TypeVar("D", bound=type[FaceDetector])


def register_detector(name: str) -> Callable[[D], D]:
    """Class decorator: make a detector family constructible by name."""

    def add(cls: D) -> D:
        if name in _REGISTRY:
            raise ValueError(f"detector {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return add


def _load_families() -> None:
    # imported here so that each family registers itself; mediapipe and onnxruntime load
    # only when a detector is created
    from neopain.faces import (  # noqa: F401
        centerface,
        dlib_hog,
        manifest,
        mediapipe,
        mtcnn,
        onnx,
        opencv,
        retinaface,
        ssd,
        yolo_face,
    )


def list_detectors() -> list[str]:
    """Names of every registered detector."""
    _load_families()
    return sorted(_REGISTRY)


def detector_class(name: str) -> type[FaceDetector]:
    """The class of a registered detector (its ``default_threshold``, ``has_keypoints``, doc).

    Raises:
        DetectorError: unknown name (the valid ones are listed).
    """
    _load_families()
    if name not in _REGISTRY:
        raise DetectorError(f"unknown detector {name!r}; valid: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_detector(name: str, **options: object) -> FaceDetector:
    """Build a detector by name, e.g. ``create_detector("mediapipe-short", threshold=0.6)``.

    Raises:
        DetectorError: unknown name (the valid ones are listed) or bad options.
    """
    family = detector_class(name)
    try:
        return family(**options)
    except TypeError as error:
        raise DetectorError(f"detector {name!r}: {error}") from None


def open_detector_or_problem(name: str, **options: object) -> tuple[FaceDetector | None, str]:
    """Detector ``name`` built with ``options``, or why it cannot run here.

    A package that is not installed, a model file that is missing or unusable, or a bad option
    is found before any image is read. A family that runs the user's model file
    (``needs_model``) without ``model=`` cannot run.

    Returns:
        (the open detector, "") or (None, the reason); the caller closes the detector.
    """
    family = detector_class(name)
    if family.needs_model and options.get("model") is None:
        return None, f"needs the model file: model=PATH (--model {name}=PATH on the command line)"
    try:
        return create_detector(name, **options), ""
    except DetectorError as error:
        return None, str(error)


def detector_problem(name: str, **options: object) -> str | None:
    """Why detector ``name`` cannot run here with ``options``, or None when it can (it is built
    and closed at once; see ``open_detector_or_problem``)."""
    detector, problem = open_detector_or_problem(name, **options)
    if detector is None:
        return problem
    detector.close()
    return None
