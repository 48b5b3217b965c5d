"""Following one stream's face from frame to frame instead of detecting it in every frame.

``FaceTracker.find(frame)`` runs the face mesh in video mode on the whole frame: it follows the
face of the previous frame (its landmark model alone, a few ms) and the box comes from the
landmarks. The detector (with ``choose_face``, as per-frame detection) runs only

- on the first frame, and after ``reset``;
- when the track is lost: the mesh finds no face, its box jumps (it overlaps the previous
  frame's box by less than ``FOLLOW_IOU``), or it leaves the frame (less than ``MIN_IN_FRAME``
  of its area inside the image, or a box that is not finite or has no area);
- every ``redetect_every`` frames, so that a face that left, or one ``choose_face`` would pick
  instead, is noticed within that many frames.

On a frame the detector ran on, its chosen face is the answer (no face: None, and no box is
kept). The track starts from it when the mesh's face lies on it (the landmarks' centre inside
the box) and the box lies at least ``MIN_IN_FRAME`` inside the image; else the face is given
without landmarks (the predictor meshes its crop itself) and the next frame is detected again.
Tracked boxes keep the detector's convention: at each detection the tracker notes where the
detector's box lies relative to the landmarks' bounding box, and places the boxes of the
following frames so. Like the detector's, a box may reach past the image (a crop pads there),
but a followed box lies at least ``MIN_IN_FRAME`` inside it: a face sliding out of the frame is
detected again, step by step as it goes, so a box never drifts off the image (the IoU check
alone compares with the previous box, which drifts too).

``cut_face`` cuts a face's crop by a predictor's ``CropRule`` and, for a tracked face, hands
its landmarks over in the crop's pixels (``landmarks.MeshedCrop``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from neopain.faces.base import DetectorError, Face, FaceDetector, choose_face, iou
from neopain.faces.crop import CropRule
from neopain.faces.landmarks import FaceMesh, MeshedCrop, keypoints_from_landmarks

FOLLOW_IOU = 0.3
"""A tracked box overlapping the previous frame's by less than this is a lost track: the
detector looks again (a face that jumped, or a mesh that went to another face)."""

MIN_IN_FRAME = 0.5
"""A tracked box with less than this share of its area inside the image is a lost track: the
detector looks again (a face leaving the frame; the mesh's landmarks of its unseen part are
guesses, and a box that drifted wholly outside cannot be cropped)."""


def _bounds(points: np.ndarray) -> np.ndarray:
    """The landmarks' bounding box (x1, y1, x2, y2)."""
    return np.concatenate([points[:, :2].min(axis=0), points[:, :2].max(axis=0)]).astype(float)


def in_frame(box: tuple[float, float, float, float], *, image_shape: tuple[int, ...]) -> float:
    """The share of ``box``'s area inside an image of ``image_shape`` (H, W, ...): 0 for a box
    that is not 4 finite numbers with x2 > x1 and y2 > y1."""
    x1, y1, x2, y2 = box
    if not (np.all(np.isfinite(box)) and x2 > x1 and y2 > y1):
        return 0.0
    height, width = image_shape[:2]
    inside = max(0.0, min(x2, width) - max(x1, 0.0)) * max(0.0, min(y2, height) - max(y1, 0.0))
    return inside / ((x2 - x1) * (y2 - y1))


class FaceTracker:
    """One stream's face, followed by the face mesh; the detector only where needed (module
    docstring). Frames must come in order; one tracker per stream; not thread-safe.

    Args:
        detector: the detector of the frames the tracker cannot follow; the caller owns it
            (``close`` leaves it open).
        redetect_every: the detector runs at least every this many frames (1: every frame).
        refine: the mesh with refined eyes and lips (478 points, what ``nfcs`` scores).
        min_confidence: the mesh's lowest face and tracking score.

    Attributes:
        detections_: how many frames the detector ran on.

    Raises:
        DetectorError: ``redetect_every`` is not a whole number >= 1.
    """

    def __init__(self, detector: FaceDetector, *, redetect_every: int = 10, refine: bool = True,
                 min_confidence: float = 0.5) -> None:
        if (isinstance(redetect_every, bool) or not isinstance(redetect_every, int)
                or redetect_every < 1):
            raise DetectorError(f"redetect_every={redetect_every!r} must be a whole number of "
                                "frames >= 1")
        self.detector = detector
        self.redetect_every = redetect_every
        self.refine = refine
        self.min_confidence = min_confidence
        self._mesh = FaceMesh(video=True, refine=refine, min_confidence=min_confidence)
        self.detections_ = 0
        self._forget()

    def _forget(self) -> None:
        self.box_: tuple[float, float, float, float] | None = None
        self.since_detection_ = 0
        self.score_ = 0.0
        self.offsets_ = np.zeros(4)  # detector box − landmark bounds, in landmark-box sizes

    def find(self, frame: np.ndarray, *, prior: Face | None = None) -> Face | None:
        """The subject's face in a BGR uint8 H×W×3 frame, or None; a followed face carries its
        ``landmarks``. ``prior``: a box already known for the frame (for the detector).

        Raises:
            LandmarkError, DetectorError: a frame that is not BGR uint8 H×W×3; a closed tracker.
        """
        points = self._mesh.landmarks(frame)
        if (points is not None and self.box_ is not None
                and self.since_detection_ < self.redetect_every):
            bounds = _bounds(points)
            size = np.tile(bounds[2:] - bounds[:2], 2)
            box = tuple(float(v) for v in bounds + self.offsets_ * size)
            if (in_frame(box, image_shape=frame.shape) >= MIN_IN_FRAME
                    and iou(box, self.box_) >= FOLLOW_IOU):
                self.box_ = box
                self.since_detection_ += 1
                return Face(box, self.score_, keypoints_from_landmarks(points), points)
        return self._detect(frame, points=points, prior=prior)

    def _detect(self, frame: np.ndarray, *, points: np.ndarray | None, prior: Face | None
                ) -> Face | None:
        self.detections_ += 1
        self._forget()
        face = choose_face(self.detector.detect(frame, prior=prior), image_shape=frame.shape)
        if face is None or points is None:
            return face
        x1, y1, x2, y2 = face.box
        centre_x, centre_y = points[:, :2].mean(axis=0)
        if not (x1 <= centre_x <= x2 and y1 <= centre_y <= y2):
            return face  # the mesh follows another face: not this one's landmarks
        if in_frame(face.box, image_shape=frame.shape) < MIN_IN_FRAME:
            return face  # mostly outside the frame: not followed (detected again next frame)
        bounds = _bounds(points)
        size = np.tile(bounds[2:] - bounds[:2], 2)
        self.offsets_ = (np.array(face.box, dtype=float) - bounds) / np.maximum(size, 1e-6)
        self.box_, self.score_, self.since_detection_ = face.box, face.score, 1
        return dataclasses.replace(face, landmarks=points)

    def reset(self) -> None:
        """Forget the track (a new stream): the next frame is detected afresh."""
        self._mesh.reset()
        self._forget()

    def close(self) -> None:
        """Free the face mesh (never the detector). Safe to call twice."""
        self._mesh.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cut_face(frame: np.ndarray, face: Face, *, rule: CropRule) -> np.ndarray:
    """The crop of ``face`` by ``rule`` (``CropRule.cut``); for a face with ``landmarks`` a
    ``MeshedCrop`` carrying them in the crop's pixels.

    Raises:
        NeopainError: as ``CropRule.cut``.
    """
    crop = rule.cut(frame, box=face.box)
    if face.landmarks is None:
        return crop
    left, top, right, bottom = rule.placement(face.box, image_shape=frame.shape)
    scale_x, scale_y = crop.shape[1] / (right - left), crop.shape[0] / (bottom - top)
    points = np.array(face.landmarks, dtype=np.float32)
    points[:, 0] = (points[:, 0] - left) * scale_x
    points[:, 1] = (points[:, 1] - top) * scale_y
    points[:, 2] *= scale_x
    return MeshedCrop(crop, landmarks=points)
