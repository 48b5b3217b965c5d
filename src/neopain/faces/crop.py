"""Face crops: a square around the face box with a margin, padded where it leaves the image,
optionally rotated so that the eyes are level, optionally resized. Pure functions.

Coordinates are continuous pixels, as MediaPipe, OpenCV's detection rectangles and
``Face.scaled`` use them: (0, 0) is the top-left corner of the image and pixel (row i, column j)
covers [j, j + 1) × [i, i + 1), its centre at (j + 0.5, i + 0.5). So a box (100, 100, 140, 140)
holds pixels 100 to 139. The crop is one affine map (``Crop.matrix``, original → crop
coordinates) applied to the pixels with ``cv2.warpAffine`` and to the keypoints with the same
matrix, so both move together exactly.

Padding: where the square leaves the image the crop is filled with black (``padding=
"constant"``, the default: padding is visible and no skin is invented) or with the nearest
edge pixels repeated (``padding="replicate"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from neopain.errors import NeopainError

Box = tuple[float, float, float, float]
PADDINGS = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}


@dataclass(frozen=True, eq=False)
class Crop:
    """A face crop: ``image`` (BGR uint8), ``keypoints`` in crop pixels (None when none were
    given), ``matrix`` the 2×3 affine map from original to crop pixels, and ``square`` the
    square (x1, y1, x2, y2) in original pixels (before any rotation)."""

    image: np.ndarray
    keypoints: np.ndarray | None
    matrix: np.ndarray
    square: Box


def _check_box(box: Sequence[float]) -> Box:
    values = tuple(float(v) for v in box)
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"box={tuple(box)} must be 4 finite numbers (x1, y1, x2, y2)")
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box={values} must have x2 > x1 and y2 > y1")
    return values


def square_box(box: Sequence[float], *, margin: float, image_shape: tuple[int, ...]) -> Box:
    """The square centred on ``box`` whose side is its longer side times (1 + 2 × margin).

    It may extend past the image (the crop pads there); it is not shifted inwards, so the face
    stays centred.

    Raises:
        ValueError: a box that is not 4 finite numbers with x2 > x1 and y2 > y1, a negative
            margin, or a box lying wholly outside the image of ``image_shape`` (H, W, ...).
    """
    x1, y1, x2, y2 = _check_box(box)
    if not margin >= 0:
        raise ValueError(f"margin={margin} must be 0 or more (a fraction of the box side)")
    height, width = image_shape[:2]
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise ValueError(f"box={(x1, y1, x2, y2)} lies outside the {width}×{height} image")
    half = max(x2 - x1, y2 - y1) * (1 + 2 * margin) / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return (cx - half, cy - half, cx + half, cy + half)


def eye_angle(keypoints: np.ndarray) -> float:
    """Angle of the eye line (image-left eye → image-right eye) in degrees, y pointing down."""
    (lx, ly), (rx, ry) = np.asarray(keypoints, dtype=float)[:2]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def _output_size(size: tuple[int, int] | None, side: float) -> tuple[int, int]:
    if size is None:
        n = max(1, round(side))
        return n, n
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in size):
        raise ValueError(f"size={size} must be None or (height, width), two positive integers")
    return int(size[0]), int(size[1])


def _to_crop(centre: tuple[float, float], *, angle: float, scale: tuple[float, float],
             out: tuple[int, int]) -> np.ndarray:
    """2×3 matrix: rotate by ``-angle`` about ``centre``, scale, put centre mid-output."""
    rotation = cv2.getRotationMatrix2D(centre, angle, 1.0)  # positive angle: counter-clockwise
    matrix = np.diag(scale) @ rotation
    height, width = out
    matrix[:, 2] = np.array([width / 2, height / 2]) - matrix[:, :2] @ centre
    return matrix


def _warp(image: np.ndarray, matrix: np.ndarray, out: tuple[int, int], border: int) -> np.ndarray:
    """``cv2.warpAffine`` with a matrix in corner coordinates (OpenCV's put pixel centres at
    integers, so the matrix is shifted by half a pixel on both sides)."""
    centred = matrix.copy()
    centred[:, 2] += matrix[:, :2] @ (0.5, 0.5) - 0.5
    return cv2.warpAffine(image, centred, (out[1], out[0]), flags=cv2.INTER_LINEAR,
                          borderMode=border, borderValue=0)


def crop_face(
    image: np.ndarray,
    box: Sequence[float],
    *,
    margin: float = 0.25,
    size: tuple[int, int] | None = None,
    keypoints: np.ndarray | None = None,
    align: bool = False,
    padding: str = "constant",
) -> Crop:
    """Crop a face: the square of ``square_box``, rotated (``align``), resized to ``size``.

    Args:
        image: H×W×C uint8 image (BGR for the faces package).
        box: face box (x1, y1, x2, y2) in ``image`` pixels.
        margin: added on every side, as a fraction of the box's longer side.
        size: output (height, width); None keeps the square's own size in pixels.
        keypoints: (N, 2) points to move with the crop (the 5 manifest keypoints).
        align: rotate about the square's centre so that the eyes (keypoints 0 and 1,
            image-left eye first) are level; needs ``keypoints``.
        padding: "constant" (black) or "replicate" (edge pixels) where the square leaves the
            image.

    Returns:
        A ``Crop``; ``crop.keypoints`` are ``keypoints`` mapped by ``crop.matrix``.

    Example:
        >>> crop = crop_face(image, face.box, size=(224, 224), keypoints=face.keypoints,
        ...                  align=True)  # doctest: +SKIP
    """
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"image has shape {image.shape}; expected a non-empty H×W(×C) array")
    if padding not in PADDINGS:
        raise ValueError(f"padding={padding!r} is not valid; valid: {', '.join(PADDINGS)}")
    points = None
    if keypoints is not None:
        points = np.asarray(keypoints, dtype=float)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"keypoints has shape {points.shape}; expected (N, 2)")
    if align and (points is None or len(points) < 2):
        raise ValueError("align=True needs keypoints whose first two are the eyes")
    square = square_box(box, margin=margin, image_shape=image.shape)
    side = square[2] - square[0]
    out = _output_size(size, side)
    centre = ((square[0] + square[2]) / 2, (square[1] + square[3]) / 2)
    angle = eye_angle(points) if align else 0.0
    border = PADDINGS[padding]
    native = max(1, round(side))
    if out[0] < native or out[1] < native:
        # shrinking: warpAffine samples without low-pass filtering and would alias, so cut the
        # square at its native size first, then shrink with INTER_AREA (which averages)
        first = _to_crop(centre, angle=angle, scale=(1.0, 1.0), out=(native, native))
        patch = _warp(image, first, (native, native), border)
        pixels = cv2.resize(patch, (out[1], out[0]), interpolation=cv2.INTER_AREA)
        matrix = np.diag((out[1] / native, out[0] / native)) @ first
    else:
        matrix = _to_crop(centre, angle=angle, scale=(out[1] / side, out[0] / side), out=out)
        pixels = _warp(image, matrix, out, border)
    moved = None if points is None else points @ matrix[:, :2].T + matrix[:, 2]
    return Crop(image=pixels, keypoints=moved, matrix=matrix, square=square)


def pixel_box(box: Sequence[float], *, image_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The whole pixels (left, top, right, bottom) a margin-0 crop of ``box`` takes: floor of
    the top-left corner, ceiling of the bottom-right, clipped to the image, at least 1 pixel.
    Training (``FaceDataset``), the monitor, the runtime and the explainers all crop with it.

    Raises:
        NeopainError: a box that is not 4 finite numbers with x2 > x1 and y2 > y1, or that lies
            outside the image.
    """
    height, width = image_shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        raise NeopainError(f"face box {tuple(box)} must be 4 finite numbers with x2 > x1 "
                           "and y2 > y1")
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise NeopainError(f"face box {(x1, y1, x2, y2)} lies outside the {width}×{height} image")
    left = int(np.clip(np.floor(x1), 0, width - 1))
    top = int(np.clip(np.floor(y1), 0, height - 1))
    right = int(np.clip(np.ceil(x2), left + 1, width))
    bottom = int(np.clip(np.ceil(y2), top + 1, height))
    return left, top, right, bottom


CROP_KINDS = ("image", "face_box", "square")


@dataclass(frozen=True)
class CropRule:
    """How a model's face crops are cut from an image: the same rule in training and at run time.

    Three kinds (build them with the class methods):

    - ``CropRule.whole_image()``: the whole image (a model trained on uncropped images);
    - ``CropRule.exact_box()``: the face box itself in whole pixels (``pixel_box``), clipped to
      the image, not squared, as training's ``crop_to_face`` cuts it; the model resizes it;
    - ``CropRule.padded_square(margin)``: the square of ``crop_face`` around the box, its side
      the box's longer side × (1 + 2 × margin), black where it leaves the image.

    Example:
        >>> rule = CropRule.padded_square(0.25)
        >>> crop = rule.cut(image, box=face.box)  # doctest: +SKIP
    """

    kind: str
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in CROP_KINDS:
            raise NeopainError(f"crop kind {self.kind!r} is not valid; valid: "
                               f"{', '.join(CROP_KINDS)}")
        if not math.isfinite(self.margin) or self.margin < 0 or \
                (self.kind != "square" and self.margin != 0):
            raise NeopainError(f"margin={self.margin!r} is not valid for a {self.kind} crop; "
                               "valid: 0 for image and face_box, a number >= 0 for square")

    @classmethod
    def whole_image(cls) -> CropRule:
        """The whole image, no face box needed."""
        return cls("image")

    @classmethod
    def exact_box(cls) -> CropRule:
        """The face box in whole pixels (``pixel_box``)."""
        return cls("face_box")

    @classmethod
    def padded_square(cls, margin: float) -> CropRule:
        """The square around the face box with ``margin`` on every side (``crop_face``)."""
        return cls("square", float(margin))

    @property
    def needs_box(self) -> bool:
        """Whether the rule cuts around a face box."""
        return self.kind != "image"

    def describe(self) -> str:
        """A short phrase for reports, e.g. ``square with margin 0.25``."""
        if self.kind == "square":
            return f"square with margin {self.margin:g}"
        return {"image": "whole image", "face_box": "face box"}[self.kind]

    def cut(self, image: np.ndarray, *, box: Sequence[float] | None) -> np.ndarray:
        """The crop of ``image`` (H×W×3 uint8) around ``box`` (x1, y1, x2, y2) by this rule.

        Raises:
            NeopainError: no box when the rule needs one, a box outside the image.
        """
        if self.kind == "image":
            return image
        if box is None:
            raise NeopainError(f"a {self.describe()} crop needs a face box; only the whole "
                               "image works without one")
        if self.kind == "face_box":
            left, top, right, bottom = pixel_box(box, image_shape=image.shape)
            return np.ascontiguousarray(image[top:bottom, left:right])
        try:
            return crop_face(image, box, margin=self.margin).image
        except ValueError as error:
            raise NeopainError(f"cannot crop the face: {error}") from None

    def placement(self, box: Sequence[float] | None, *, image_shape: tuple[int, ...]) -> Box:
        """Where the crop's pixels lie in the image: (left, top, right, bottom) in image pixels.

        A square may reach past the image (its crop is padded there); a heatmap over the crop
        is drawn over this rectangle.

        Raises:
            NeopainError: as ``cut``.
        """
        if self.kind == "image":
            return 0.0, 0.0, float(image_shape[1]), float(image_shape[0])
        if box is None:
            raise NeopainError(f"a {self.describe()} crop needs a face box")
        if self.kind == "face_box":
            return tuple(float(v) for v in pixel_box(box, image_shape=image_shape))
        try:
            return square_box(box, margin=self.margin, image_shape=image_shape)
        except ValueError as error:
            raise NeopainError(f"cannot crop the face: {error}") from None
