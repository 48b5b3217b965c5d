"""Dense face landmarks: the MediaPipe face mesh (468 points, 478 with the iris refinement).

``FaceMesh`` runs in image mode (every image on its own: a face search, then the mesh) or in
video mode (the face found in one frame is tracked into the next, searched again only when the
tracking is lost), and returns the points in image pixels. ``keypoints_from_landmarks`` derives
the manifest's 5 keypoints from them; ``save_landmarks`` / ``load_landmarks`` keep them per image
as ``.npy`` files. A ``MeshedCrop`` is a face crop that carries the landmarks already found for
it (``landmarks_of``), so that a predictor scoring landmarks need not run the mesh again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from neopain.data.files import FileReadError, load_npy, regular_file_error
from neopain.data.outputs import atomic_output
from neopain.errors import NeopainError

logger = logging.getLogger(__name__)

N_LANDMARKS = 468
_MAX_LANDMARKS_BYTES = 2**20  # 478 points in float64 take 11 KiB
N_REFINED_LANDMARKS = 478
"""With ``refine=True`` the mesh adds 5 points per iris: 468-472 (the subject's right iris,
image-left in a frontal photo) and 473-477 (the subject's left)."""

# MediaPipe names the eyes and mouth corners from the subject's side. Its model labels a face by
# how the face looks, so the subject's right eye is the image-left one in any upright face
# (mirrored or not) and stays index 0 when the head rolls: the order turns with the face, like
# the keypoints training.augment rotates and re-orders only on a flip. The contours are those of
# mediapipe's FACEMESH_RIGHT_EYE and FACEMESH_LEFT_EYE connections (a test checks they agree).
RIGHT_EYE_CONTOUR = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
LEFT_EYE_CONTOUR = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398,
                    466)  # fmt: skip
NOSE_TIP = 1  # mediapipe's "noseTip" annotation; 4 sits a few pixels higher, on the bridge
RIGHT_MOUTH_CORNER = 61
LEFT_MOUTH_CORNER = 291


class LandmarkError(NeopainError):
    """Landmarks that cannot be computed, saved or read (bad image, bad array, bad file)."""


def _check_confidence(value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise LandmarkError(f"min_confidence={value} must lie in [0, 1]")


class FaceMesh:
    """MediaPipe face mesh for one face per image; a context manager that frees the graph.

    Args:
        video: video (tracking) mode: frames must be given in order; the face found in one
            frame is followed into the next. False: every image is searched on its own.
        refine: add the 10 iris points (478 landmarks instead of 468).
        min_confidence: lowest face detection score accepted, and in video mode the tracking
            score below which the face is searched again.

    The MediaPipe graph is built on the first ``landmarks`` call and freed by ``close`` (or
    leaving the ``with`` block); a mesh that is not closed keeps about 18 MB until the process
    ends, even when no longer referenced.

    Example::

        with FaceMesh(video=True) as mesh:
            for frame in frames:
                points = mesh.landmarks(frame)  # (468, 3) or None
    """

    def __init__(self, *, video: bool = False, refine: bool = False,
                 min_confidence: float = 0.5) -> None:
        _check_confidence(min_confidence)
        self.video = video
        self.refine = refine
        self.min_confidence = min_confidence
        self._graph: Any = None
        self._closed = False

    @property
    def n_landmarks(self) -> int:
        """Points per face: 468, or 478 with ``refine``."""
        return N_REFINED_LANDMARKS if self.refine else N_LANDMARKS

    def _build(self) -> Any:
        # imported here: mediapipe takes about a second to import and loads native libraries
        from neopain.faces.mediapipe import import_mediapipe

        face_mesh = import_mediapipe("face_mesh", what="the face mesh (nfcs, face following)")
        return face_mesh.FaceMesh(
            static_image_mode=not self.video,
            max_num_faces=1,
            refine_landmarks=self.refine,
            min_detection_confidence=self.min_confidence,
            min_tracking_confidence=self.min_confidence,
        )

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """The face's landmarks in a BGR uint8 H×W×3 image, or None when no face is found.

        Returns:
            A (468, 3) or (478, 3) float32 array: x and y in image pixels, z the depth
            relative to the face's centre in the same pixel scale (negative: nearer the camera).

        Raises:
            LandmarkError: the image is not BGR uint8 H×W×3 or is empty; the mesh is closed.
        """
        if (not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3
                or image.dtype != np.uint8 or image.size == 0):
            what = (f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray)
                    else type(image).__name__)
            raise LandmarkError(f"expected a BGR uint8 H×W×3 image, got {what}; read images "
                                "with neopain.data.images.read_image")
        if self._closed:
            raise LandmarkError("this FaceMesh is closed; create a new one")
        if self._graph is None:
            self._graph = self._build()
        result = self._graph.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        if not result.multi_face_landmarks:
            return None
        height, width = image.shape[:2]
        points = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark],
                          dtype=np.float32)
        # mediapipe gives x, y as fractions of the image's width and height, z on the scale of x
        return points * np.array([width, height, width], dtype=np.float32)

    def reset(self) -> None:
        """Forget the tracked face (video mode): the next frame is searched afresh."""
        if self._graph is not None:
            self._graph.reset()

    def close(self) -> None:
        """Free the MediaPipe graph. Safe to call twice."""
        self._closed = True
        if self._graph is not None:
            graph, self._graph = self._graph, None
            graph.close()

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_points(points: np.ndarray, *, what: str, columns: tuple[int, ...] = (3,)) -> np.ndarray:
    points = np.asarray(points)
    if (points.ndim != 2 or points.shape[0] not in (N_LANDMARKS, N_REFINED_LANDMARKS)
            or points.shape[1] not in columns):
        shapes = " or ".join(f"({N_LANDMARKS} or {N_REFINED_LANDMARKS}, {n})" for n in columns)
        raise LandmarkError(f"{what} has shape {points.shape}; valid: face mesh landmarks, "
                            f"{shapes}")
    if points.dtype.kind not in "iuf":  # integers or floats
        raise LandmarkError(f"{what} has dtype {points.dtype}; valid: real numbers")
    if not np.isfinite(points).all():
        raise LandmarkError(f"{what} holds NaN or infinite values; valid: finite numbers")
    return points


class MeshedCrop(np.ndarray):
    """A face crop (BGR uint8 H×W×3) carrying the face mesh's landmarks in its own pixels, found
    before it was cut (``faces.tracking.cut_face``). Any predictor sees an ordinary array; one
    that scores landmarks reads them with ``landmarks_of`` instead of meshing the crop again.
    Arrays made from it (slices, copies, arithmetic) carry none.

    Raises:
        LandmarkError: ``landmarks`` are not face mesh landmarks.
    """

    landmarks: np.ndarray | None

    def __new__(cls, crop: np.ndarray, *, landmarks: np.ndarray) -> MeshedCrop:
        points = _check_points(landmarks, what="landmarks").astype(np.float32)
        out = np.asarray(crop).view(cls)
        out.landmarks = points
        return out

    def __array_finalize__(self, obj: object) -> None:
        self.landmarks = None


def landmarks_of(crop: np.ndarray) -> np.ndarray | None:
    """The landmarks a ``MeshedCrop`` carries; None for any other array."""
    return crop.landmarks if isinstance(crop, MeshedCrop) else None


def keypoints_from_landmarks(points: np.ndarray) -> np.ndarray:
    """The manifest's 5 keypoints from face mesh landmarks, as a (5, 2) float array.

    Order (``neopain.faces.base.KEYPOINT_NAMES``): image-left eye centre, image-right eye
    centre, nose tip, image-left mouth corner, image-right mouth corner. Eye centres are the
    mean of each eye's 16 contour points; the nose tip is point 1; the mouth corners are points
    61 and 291. "Image-left" is the side the subject's right eye shows on in an upright face;
    when the head is rolled the order turns with the face rather than being sorted by x.

    Raises:
        LandmarkError: not a (468 or 478) × (2 or 3) array of finite numbers.
    """
    points = _check_points(points, what="points", columns=(2, 3)).astype(float)
    keypoints = [
        points[list(RIGHT_EYE_CONTOUR), :2].mean(axis=0),
        points[list(LEFT_EYE_CONTOUR), :2].mean(axis=0),
        points[NOSE_TIP, :2],
        points[RIGHT_MOUTH_CORNER, :2],
        points[LEFT_MOUTH_CORNER, :2],
    ]
    return np.stack(keypoints)


def save_landmarks(points: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write landmarks as a ``.npy`` file (float32), creating its folder; returns the path.

    Written through ``atomic_output``, so an interrupted run never leaves a truncated file
    behind.

    Raises:
        LandmarkError: ``points`` are not face mesh landmarks, or ``path`` does not end in .npy.
    """
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise LandmarkError(f"landmarks path {path} must end in .npy")
    points = _check_points(points, what="landmarks to save").astype(np.float32)
    with atomic_output(path) as partial:  # ends in .npy: np.save adds nothing
        np.save(partial, points, allow_pickle=False)
    return path


def load_landmarks(path: str | os.PathLike[str]) -> np.ndarray:
    """Read landmarks written by ``save_landmarks``: a (468 or 478, 3) float32 array.

    Raises:
        LandmarkError: the file is missing, not a ``.npy`` array, or not face mesh landmarks;
            the message names the file.
    """
    path = Path(path)
    if (error := regular_file_error(path)) is not None and error.missing:
        raise LandmarkError(f"landmarks file {path} not found")
    try:
        points = load_npy(path, what="landmarks written by save_landmarks",
                          max_bytes=_MAX_LANDMARKS_BYTES)
    except FileReadError as error:
        raise LandmarkError(f"landmarks file {path} {error.reason}") from None
    return _check_points(points, what=f"landmarks file {path}").astype(np.float32)
