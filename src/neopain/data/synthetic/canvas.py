"""Anti-aliased drawing in face coordinates, with alpha, onto an image and a bit-mask layer.

Hand-written because no library draws alpha-blended, sub-pixel polygons and strokes into a
region of interest while marking the same shapes into a ground-truth mask; OpenCV supplies the
rasterizer (``fillPoly``/``polylines`` with ``LINE_AA``) and this module only places and blends.

Face coordinates: origin at the face centre, ``u`` to the image right, ``v`` down, one unit is
the face half-width. :class:`Pose` maps them to pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_SHIFT = 4  # sub-pixel bits for OpenCV's rasterizer
_SCALE = 1 << _SHIFT


@dataclass(frozen=True)
class Pose:
    """Where the face sits in the image: centre (px), size (px per unit), roll (deg), yaw squash."""

    cx: float
    cy: float
    scale: float
    roll_deg: float = 0.0
    squash: float = 1.0

    def matrix(self) -> np.ndarray:
        """2×3 affine matrix from face coordinates to pixels."""
        a = np.deg2rad(self.roll_deg)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        lin = rot @ np.diag([self.scale * self.squash, self.scale])
        return np.hstack([lin, [[self.cx], [self.cy]]])

    def to_px(self, points: np.ndarray) -> np.ndarray:
        """Map (..., 2) face coordinates to pixels."""
        m = self.matrix()
        return points @ m[:, :2].T + m[:, 2]

    def grid(self, x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """Face coordinates (u, v) of the pixels in columns x0..x1-1 and rows y0..y1-1."""
        inv = cv2.invertAffineTransform(self.matrix())
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        u = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
        v = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
        return u.astype(np.float32), v.astype(np.float32)


def ellipse_points(cu: float, cv: float, ru: float, rv: float, *, start: float = 0.0,
                   end: float = 360.0, n: int = 48) -> np.ndarray:
    """Points of an ellipse (arc) in face coordinates, angles in degrees."""
    t = np.deg2rad(np.linspace(start, end, n))
    return np.stack([cu + ru * np.cos(t), cv + rv * np.sin(t)], axis=1)


def curve(points: np.ndarray, n: int = 24) -> np.ndarray:
    """A smooth quadratic/cubic Bézier through control points (3 or 4 rows)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    p = np.asarray(points, dtype=float)
    if len(p) == 3:
        return (1 - t) ** 2 * p[0] + 2 * (1 - t) * t * p[1] + t**2 * p[2]
    if len(p) == 4:
        return ((1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1]
                + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3])
    raise ValueError(f"curve needs 3 or 4 control points, got {len(p)}")


class Canvas:
    """An RGB float image in [0, 1] plus a uint8 bit-mask layer, drawn in face coordinates."""

    def __init__(self, image: np.ndarray, pose: Pose) -> None:
        self.image = image
        self.pose = pose
        self.mask = np.zeros(image.shape[:2], dtype=np.uint8)

    def _roi(self, px: np.ndarray, pad: float) -> tuple[int, int, int, int] | None:
        h, w = self.image.shape[:2]
        x0 = max(int(np.floor(px[:, 0].min() - pad)) - 1, 0)
        y0 = max(int(np.floor(px[:, 1].min() - pad)) - 1, 0)
        x1 = min(int(np.ceil(px[:, 0].max() + pad)) + 2, w)
        y1 = min(int(np.ceil(px[:, 1].max() + pad)) + 2, h)
        return None if x0 >= x1 or y0 >= y1 else (x0, y0, x1, y1)

    def _coverage(self, points: np.ndarray, *, width: float | None, closed: bool = False,
                  antialias: bool = True) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
        """Rasterize a filled polygon (width None) or a stroke into a float coverage patch."""
        px = self.pose.to_px(np.asarray(points, dtype=float))
        stroke_px = 0.0 if width is None else max(width * self.pose.scale, 1.0)
        roi = self._roi(px, stroke_px)
        if roi is None:
            return None
        x0, y0, x1, y1 = roi
        patch = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        pts = np.round((px - [x0, y0]) * _SCALE).astype(np.int32)[None]
        line = cv2.LINE_AA if antialias else cv2.LINE_8
        if width is None:
            cv2.fillPoly(patch, pts, 255, lineType=line, shift=_SHIFT)
        else:
            cv2.polylines(patch, pts, closed, 255, thickness=max(int(round(stroke_px)), 1),
                          lineType=line, shift=_SHIFT)
        return patch.astype(np.float32) / 255.0, roi

    def _blend(self, cov: np.ndarray, roi: tuple[int, int, int, int], color, alpha: float) -> None:
        x0, y0, x1, y1 = roi
        a = (cov * alpha)[..., None]
        region = self.image[y0:y1, x0:x1]
        region *= 1.0 - a
        region += a * np.asarray(color, dtype=np.float32)

    def fill(self, points: np.ndarray, color, *, alpha: float = 1.0) -> None:
        """Fill a polygon given in face coordinates."""
        got = self._coverage(points, width=None)
        if got is not None and alpha > 0:
            self._blend(*got, color, alpha)

    def stroke(self, points: np.ndarray, color, *, width: float, alpha: float = 1.0,
               closed: bool = False) -> None:
        """Draw a polyline given in face coordinates; ``width`` is in face units."""
        got = self._coverage(points, width=width, closed=closed)
        if got is not None and alpha > 0:
            self._blend(*got, color, alpha)

    def mark(self, bit: int, points: np.ndarray, *, width: float | None = None) -> None:
        """Set ``bit`` in the mask layer inside a polygon (or along a stroke of ``width``)."""
        got = self._coverage(points, width=width, antialias=False)
        if got is None:
            return
        cov, (x0, y0, x1, y1) = got
        self.mask[y0:y1, x0:x1] |= (cov > 0.5).astype(np.uint8) << bit

    def clear(self, points: np.ndarray) -> None:
        """Clear every bit (actions and face) under a polygon: an occluder hides what is beneath."""
        got = self._coverage(points, width=None, antialias=False)
        if got is None:
            return
        cov, (x0, y0, x1, y1) = got
        self.mask[y0:y1, x0:x1][cov > 0.5] = 0

    def restrict_to(self, bit: int) -> None:
        """Clear every other bit where ``bit`` is not set (evidence lies on the face)."""
        self.mask[(self.mask >> bit) & 1 == 0] = 0
