"""Landmark-driven warps of a real face photograph: NFCS facial actions put onto a neutral face.

Each function takes a BGR uint8 image and its face mesh landmarks (``FaceMesh.landmarks``:
(468 or 478, 3), image pixels) and returns a new image in which chosen mesh points have moved
(brows down and together, eyelids closer, lips apart, jaw down, mouth corners out and down or
in) and the rest of the face has not. The displacement field is piecewise affine over a
triangulation of the moved points' targets, the mesh points farther away (held still) and a
still ring around the face (scipy's ``LinearNDInterpolator``; a thin-plate spline overshoots
and folds the skin between points that move apart), lightly blurred to hide the triangle
edges and applied with ``cv2.remap``: deterministic, about 0.05-0.2 s per image.

Displacements are in units of the inter-ocular distance (IOD, between the eye-contour centres)
along the face's own axes (the eye line and its normal), so they mean the same on any face
size and roll. ``amount`` scales them (1.0: a clear action, 0: no change).

Example::

    from face_warps import pain_face   # tests/ is on the test path (pyproject)
    with FaceMesh() as mesh:
        warped = pain_face(image, mesh.landmarks(image))   # brows, eyes, lips, mouth
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from scipy.interpolate import LinearNDInterpolator

from neopain.faces.landmarks import LEFT_EYE_CONTOUR, RIGHT_EYE_CONTOUR

# brows: upper contour (outer → inner) and lower contour, per side (mediapipe's eyebrow sets)
_BROWS = (70, 63, 105, 66, 107, 46, 53, 52, 65, 55,
          300, 293, 334, 296, 336, 276, 283, 282, 295, 285)  # fmt: skip
_INNER_BROWS = (107, 66, 55, 65, 336, 296, 285, 295)
_GLABELLA = (9, 8)
# eyelids (corner → corner, without the corners) and the matching point on the other lid
_UPPER_LIDS = (246, 161, 160, 159, 158, 157, 173, 466, 388, 387, 386, 385, 384, 398)
_LOWER_LIDS = (7, 163, 144, 145, 153, 154, 155, 249, 390, 373, 374, 380, 381, 382)
# lips (mediapipe's lip contours): inner and outer, upper and lower, corners excluded
_UPPER_INNER = (191, 80, 81, 82, 13, 312, 311, 310, 415)
_LOWER_INNER = (95, 88, 178, 87, 14, 317, 402, 318, 324)
_UPPER_OUTER = (185, 40, 39, 37, 0, 267, 269, 270, 409)
_LOWER_OUTER = (146, 91, 181, 84, 17, 314, 405, 321, 375)
_CORNERS = (61, 78, 291, 308)
_CHIN = (18, 200, 199, 175, 152, 148, 176, 149, 377, 400, 378, 201, 421, 208, 428, 171, 396,
         32, 262, 140, 369)  # fmt: skip
_JAW_SIDES = (150, 379, 136, 365, 172, 397)

Displacements = dict[int, np.ndarray]


def _axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Unit vector along the eye line (image-left eye → image-right eye), unit vector down the
    face, the IOD in pixels and the point between the eyes."""
    right = points[list(RIGHT_EYE_CONTOUR), :2].mean(axis=0)
    left = points[list(LEFT_EYE_CONTOUR), :2].mean(axis=0)
    across = left - right
    iod = float(np.linalg.norm(across))
    across /= iod
    down = np.array([-across[1], across[0]])
    return across, down, iod, (left + right) / 2


def _brows(points: np.ndarray, amount: float) -> Displacements:
    across, down, iod, centre = _axes(points)
    moves: Displacements = {}
    for index in _BROWS:
        move = 0.09 * amount * iod * down
        if index in _INNER_BROWS:
            side = np.sign((points[index, :2] - centre) @ across)
            move = move - side * 0.05 * amount * iod * across  # drawn together
        moves[index] = move
    for index in _GLABELLA:
        moves[index] = 0.05 * amount * iod * down
    return moves


def _eyes(points: np.ndarray, amount: float) -> Displacements:
    moves: Displacements = {}
    for upper, lower in zip(_UPPER_LIDS, _LOWER_LIDS):
        gap = points[lower, :2] - points[upper, :2]  # upper lid → lower lid
        moves[upper] = 0.65 * amount * gap
        moves[lower] = -0.25 * amount * gap
    return moves


def _lips(points: np.ndarray, amount: float) -> Displacements:
    _, down, iod, _ = _axes(points)
    moves: Displacements = {}
    for index in _LOWER_INNER + _LOWER_OUTER:
        moves[index] = 0.14 * amount * iod * down
    for index in _UPPER_INNER:
        moves[index] = -0.03 * amount * iod * down
    return moves


def _mouth_reach(points: np.ndarray, across: np.ndarray) -> dict[int, float]:
    """Each mouth point's position along the lips, -1 (one corner) … 1 (the other)."""
    middle = points[[61, 291], :2].mean(axis=0)
    half_width = np.linalg.norm(points[291, :2] - points[61, :2]) / 2
    mouth = _UPPER_INNER + _LOWER_INNER + _UPPER_OUTER + _LOWER_OUTER + _CORNERS
    return {index: float((points[index, :2] - middle) @ across) / half_width for index in mouth}


def _mouth(points: np.ndarray, amount: float) -> Displacements:
    across, down, iod, _ = _axes(points)
    return {index: amount * iod * (0.14 * reach * across + 0.08 * abs(reach) * down)
            for index, reach in _mouth_reach(points, across).items()}


def _jaw(points: np.ndarray, amount: float) -> Displacements:
    _, down, iod, _ = _axes(points)
    moves: Displacements = {}
    for index in _LOWER_INNER + _LOWER_OUTER + _CHIN:
        moves[index] = 0.25 * amount * iod * down
    for index, share in zip(_JAW_SIDES, (0.6, 0.6, 0.35, 0.35, 0.15, 0.15)):
        moves[index] = share * 0.25 * amount * iod * down
    for index in (61, 291, 78, 308):
        moves[index] = 0.08 * amount * iod * down
    return moves


def _purse(points: np.ndarray, amount: float) -> Displacements:
    across, _, iod, _ = _axes(points)
    return {index: -0.18 * amount * iod * reach * across
            for index, reach in _mouth_reach(points, across).items()}


def _combine(*parts: Displacements) -> Displacements:
    out: Displacements = {}
    for part in parts:
        for index, move in part.items():
            out[index] = out.get(index, np.zeros(2)) + move
    return out


def warp_face(image: np.ndarray, landmarks: np.ndarray, moves: Displacements, *,
              pinned: tuple[int, ...] = (), free_radius: float = 0.2) -> np.ndarray:
    """``image`` with each mesh point ``i`` in ``moves`` shifted by ``moves[i]`` (pixels, x y).

    Mesh points within ``free_radius`` IOD of a moved point follow freely (the skin around a
    moving feature stretches); the points in ``pinned`` and every point farther away stay
    where they are, as does a ring around the face, so the warp stays local.
    """
    height, width = image.shape[:2]
    points = np.asarray(landmarks, dtype=float)[:, :2]
    _, _, iod, _ = _axes(points)
    moved = np.array(sorted(moves), dtype=int)
    shift = np.array([moves[i] for i in moved], dtype=float)
    near = np.linalg.norm(points[:, None] - points[moved][None], axis=2).min(axis=1)
    still = (near > free_radius * iod) | np.isin(np.arange(len(points)), pinned)
    still[moved] = False
    low, high = points.min(axis=0), points.max(axis=0)
    centre, half = (low + high) / 2, (high - low) / 2 * 1.3
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    ring = centre + half * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    anchors = np.vstack([points[still], ring])
    # backward map, piecewise affine over a triangulation of the moved points' targets and
    # the anchors: at each output pixel, where to sample the source image
    field = LinearNDInterpolator(np.vstack([points[moved] + shift, anchors]),
                                 np.vstack([-shift, np.zeros_like(anchors)]), fill_value=0.0)
    x0, y0 = np.floor(np.maximum(centre - half, 0)).astype(int)
    x1 = int(min(np.ceil(centre[0] + half[0]), width))
    y1 = int(min(np.ceil(centre[1] + half[1]), height))
    gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    offsets = field(gx, gy).astype(np.float32)
    offsets = cv2.GaussianBlur(offsets, (0, 0), sigmaX=0.6)  # soften the triangle creases
    map_x, map_y = np.meshgrid(np.arange(width, dtype=np.float32),
                               np.arange(height, dtype=np.float32))
    map_x[y0:y1, x0:x1] += offsets[..., 0]
    map_y[y0:y1, x0:x1] += offsets[..., 1]
    return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def _warp(build: Callable[[np.ndarray, float], Displacements]):
    def warp(image: np.ndarray, landmarks: np.ndarray, *, amount: float = 1.0) -> np.ndarray:
        return warp_face(image, landmarks, build(np.asarray(landmarks, dtype=float), amount))

    return warp


lower_brows = _warp(_brows)
lower_brows.__doc__ = "Brows lowered (0.09 IOD) and their inner heads drawn together (brow bulge)."
narrow_eyes = _warp(_eyes)
narrow_eyes.__doc__ = ("Eyelids closed by 80% of their opening: upper lid 55% down, lower lid "
                       "25% up (eye squeeze).")
part_lips = _warp(_lips)
part_lips.__doc__ = "Lower lip pulled down 0.14 IOD, upper inner lip up 0.03 IOD (open lips)."
stretch_mouth = _warp(_mouth)
stretch_mouth.__doc__ = ("Mouth corners pulled 0.14 IOD outwards and 0.08 IOD down, the lips "
                         "following (the crying mouth's horizontal stretch).")

drop_jaw = _warp(_jaw)
drop_jaw.__doc__ = ("Jaw pulled down: lower lip and chin 0.25 IOD down, the jaw's sides less, "
                    "the lip corners 0.08 IOD (vertical mouth stretch).")
purse_lips = _warp(_purse)
purse_lips.__doc__ = "Lips drawn together: each corner 0.18 IOD towards the middle (lip purse)."


def pain_face(image: np.ndarray, landmarks: np.ndarray, *, amount: float = 1.0) -> np.ndarray:
    """All four at once, in one warp: brows lowered, eyes narrowed, lips parted, mouth
    stretched."""
    points = np.asarray(landmarks, dtype=float)
    moves = _combine(_brows(points, amount), _eyes(points, amount), _lips(points, amount),
                     _mouth(points, amount))
    return warp_face(image, points, moves)
