"""Facial regions, and the share of a heatmap that falls in each.

Regions are laid out in a face frame: the origin midway between the eyes, ``u`` along the eye
line (towards the image-right eye), ``v`` perpendicular to it (towards the mouth), both in units
of the inter-ocular distance, so the layout scales and turns with the face. With the 5 keypoints
the facial features are ellipses and polygons placed from the eyes, nose and mouth corners
(proportions measured on the synthetic cohort's ground-truth action masks). With the 468 face
mesh landmarks the frame comes from the keypoints the mesh gives, and the face outline, the
brows and the mouth follow the mesh (convex hulls of MediaPipe's contours; the mouth also keeps
the keypoint ellipse, which holds a dropped jaw). The eyes stay ellipses around the mesh's eye
centres: the contour of a squeezed eye is a thin slit, narrower than the squeeze.

Every pixel belongs to at most one region: later regions in ``_PAINT_ORDER`` are painted over
earlier ones (the eyes over the brows, the mouth over the nasolabial folds).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pandas as pd

from neopain.errors import NeopainError
from neopain.faces.landmarks import N_LANDMARKS, keypoints_from_landmarks

REGIONS = ("forehead", "brows", "eyes", "nose", "nasolabial", "mouth", "chin", "cheeks")
"""Region names; ``region_map`` labels pixels with their index here, -1 outside every region."""

OUTSIDE = "outside"
"""The share of a heatmap outside every region (background, hair, ears)."""

_PAINT_ORDER = ("cheeks", "forehead", "chin", "brows", "nasolabial", "nose", "mouth", "eyes")

# MediaPipe face mesh contours (mediapipe.solutions.face_mesh_connections; a test checks them)
FACE_OVAL = (10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176,
             234, 251, 284, 288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400,
             454)  # fmt: skip
LIPS_OUTER = (0, 17, 37, 39, 40, 61, 84, 91, 146, 181, 185, 267, 269, 270, 291, 314, 321, 375,
              405, 409)  # fmt: skip
BROWS = (46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334,
         336)  # fmt: skip


class _Frame:
    """Pixel coordinates of an image in the face frame (u, v), from 5 keypoints."""

    def __init__(self, keypoints: np.ndarray, shape: tuple[int, int]) -> None:
        left, right = keypoints[0], keypoints[1]
        self.d = float(np.linalg.norm(right - left))
        if not np.isfinite(self.d) or self.d < 1e-6:
            raise NeopainError("the two eye keypoints coincide; valid: keypoints in the order "
                               "left eye, right eye, nose, left and right mouth corner")
        self.origin = (left + right) / 2.0
        self.ex = (right - left) / self.d
        self.ey = np.array([-self.ex[1], self.ex[0]])
        ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
        self.u, self.v = self.to_frame(np.stack([xs, ys], axis=-1))
        self.nose = self.to_frame(keypoints[2])
        corners = self.to_frame(keypoints[3:5])
        self.mouth_centre = corners.mean(axis=0)
        self.mouth_half = max(abs(corners[1, 0] - corners[0, 0]) / 2.0, 0.1)

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) pixel (x, y) → (..., 2) frame (u, v); or (u, v) separately for a grid."""
        shifted = np.asarray(points, dtype=np.float64) - self.origin
        u, v = shifted @ self.ex / self.d, shifted @ self.ey / self.d
        return np.stack([u, v], axis=-1) if shifted.ndim < 3 else (u, v)

    def ellipse(self, centre: Sequence[float], a: float, b: float) -> np.ndarray:
        return ((self.u - centre[0]) / a) ** 2 + ((self.v - centre[1]) / b) ** 2 <= 1.0

    def near_segment(self, start: np.ndarray, end: np.ndarray, radius: float) -> np.ndarray:
        direction = end - start
        t = ((self.u - start[0]) * direction[0] + (self.v - start[1]) * direction[1])
        t = np.clip(t / float(direction @ direction), 0.0, 1.0)
        du, dv = self.u - (start[0] + t * direction[0]), self.v - (start[1] + t * direction[1])
        return du * du + dv * dv <= radius * radius


def _hull_mask(points: np.ndarray, shape: tuple[int, int], *, scale: float = 1.0) -> np.ndarray:
    centre = points.mean(axis=0)
    scaled = centre + scale * (points - centre)
    mask = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(scaled * 16).astype(np.int32))  # 4 fractional bits
    cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _keypoint_regions(frame: _Frame) -> dict[str, np.ndarray]:
    u, v = frame.u, frame.v
    nose_v = frame.nose[1]
    mouth_u, mouth_v = frame.mouth_centre
    half = frame.mouth_half
    face = frame.ellipse((0.0, -0.2), 1.35, 1.8)
    widening = np.clip((v + 0.15) / max(nose_v + 0.27, 0.1), 0.0, 1.0)
    nasolabial = np.zeros_like(face)
    for side in (-1.0, 1.0):
        ala = np.array([side * 0.27, nose_v - 0.05])
        corner = np.array([mouth_u + side * (half + 0.12), mouth_v + 0.12])
        nasolabial |= frame.near_segment(ala, corner, 0.13)
    return {
        "face": face,
        "forehead": face & (v < -0.7),
        "brows": face & (v >= -0.7) & (v < -0.18) & (np.abs(u) < 0.95),
        "eyes": frame.ellipse((-0.5, 0.0), 0.42, 0.22) | frame.ellipse((0.5, 0.0), 0.42, 0.22),
        "nose": (v >= -0.15) & (v <= nose_v + 0.12) & (np.abs(u) <= 0.12 + 0.12 * widening),
        "nasolabial": nasolabial,
        "mouth": frame.ellipse((mouth_u, mouth_v + 0.12), half + 0.1, 0.42),
        "chin": face & (v > mouth_v + 0.4) & (np.abs(u - mouth_u) < 0.75),
        "cheeks": face & (np.abs(u) >= 0.3) & (v >= 0.22) & (v <= mouth_v + 0.4),
    }


def _landmark_regions(frame: _Frame, landmarks: np.ndarray,
                      shape: tuple[int, int]) -> dict[str, np.ndarray]:
    regions = _keypoint_regions(frame)
    points = landmarks[:, :2].astype(np.float64)
    face = _hull_mask(points[list(FACE_OVAL)], shape)
    brows = frame.to_frame(points[list(BROWS)])
    top, bottom = brows[:, 1].min() - 0.12, brows[:, 1].max() + 0.08
    width = np.abs(brows[:, 0]).max() + 0.05
    regions.update(
        face=face,
        forehead=face & (frame.v < top),
        brows=face & (frame.v >= top) & (frame.v < bottom) & (np.abs(frame.u) < width),
        mouth=regions["mouth"] | _hull_mask(points[list(LIPS_OUTER)], shape, scale=1.1),
        chin=regions["chin"] & face,
        cheeks=regions["cheeks"] & face,
    )
    return regions


def region_map(shape: tuple[int, int], *, keypoints: np.ndarray | None = None,
               landmarks: np.ndarray | None = None) -> np.ndarray:
    """Label every pixel of an image of ``shape`` (height, width) with its facial region.

    Args:
        shape: (height, width) of the image (or heatmap) in the keypoints' pixel frame.
        keypoints: (5, 2) image-left eye, image-right eye, nose tip, image-left and
            image-right mouth corner, in pixels.
        landmarks: (468 or 478, 2 or 3) face mesh points in pixels; used when given.

    Returns:
        int8 (height, width): the index in ``REGIONS``, -1 outside every region.

    Raises:
        NeopainError: neither keypoints nor landmarks, or points with NaN or a bad shape.
    """
    shape = (int(shape[0]), int(shape[1]))
    if landmarks is not None:
        landmarks = np.asarray(landmarks, dtype=np.float64)
        if landmarks.ndim != 2 or landmarks.shape[0] < N_LANDMARKS or landmarks.shape[1] < 2:
            raise NeopainError(f"landmarks have shape {landmarks.shape}; valid: face mesh "
                               f"points ({N_LANDMARKS} or more, 2 or 3)")
        keypoints = keypoints_from_landmarks(landmarks[:N_LANDMARKS, :2])
    if keypoints is None:
        raise NeopainError("facial regions need keypoints or landmarks; detect faces first "
                           "(neopain faces detect) so that the manifest has keypoints")
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.shape != (5, 2) or not np.isfinite(keypoints).all():
        raise NeopainError(f"keypoints have shape {keypoints.shape} or hold NaN; valid: 5 "
                           "finite [x, y] pairs")
    frame = _Frame(keypoints, shape)
    regions = (_landmark_regions(frame, landmarks, shape) if landmarks is not None
               else _keypoint_regions(frame))
    labels = np.full(shape, -1, dtype=np.int8)
    for name in _PAINT_ORDER:
        labels[regions[name]] = REGIONS.index(name)
    return labels


def region_shares(heatmap: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The share of a heatmap's positive mass in each region, plus ``outside``.

    Shares add up to 1; all are NaN when the heatmap has no positive value.

    Raises:
        NeopainError: heatmap and labels differ in shape.
    """
    heat = np.clip(np.asarray(heatmap, dtype=np.float64), 0.0, None)
    if heat.shape != labels.shape:
        raise NeopainError(f"heatmap shape {heat.shape} differs from the region map's "
                           f"{labels.shape}")
    total = heat.sum()
    sums = np.bincount((labels.astype(np.int64) + 1).ravel(), weights=heat.ravel(),
                       minlength=len(REGIONS) + 1)
    shares = sums / total if total > 0 else np.full(len(sums), np.nan)
    return {**{name: float(shares[i + 1]) for i, name in enumerate(REGIONS)},
            OUTSIDE: float(shares[0])}


def regions_by_class(shares: pd.DataFrame, *,
                     by: Sequence[str] = ("method", "pred")) -> pd.DataFrame:
    """Mean share per region for each group (default: method and predicted class).

    ``shares`` has one row per heatmap with the ``by`` columns and one column per region
    (``REGIONS`` and ``outside``); the result adds ``images`` (rows averaged) and is sorted.

    Raises:
        NeopainError: a ``by`` or region column is missing.
    """
    columns = [*REGIONS, OUTSIDE]
    missing = [c for c in (*by, *columns) if c not in shares.columns]
    if missing:
        raise NeopainError(f"region shares lack the column(s) {', '.join(missing)}")
    grouped = shares.groupby(list(by), sort=True)
    table = grouped[columns].mean()
    table.insert(0, "images", grouped.size())
    return table
