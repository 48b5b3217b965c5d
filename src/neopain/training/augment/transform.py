"""The augmentation transform: albumentations, with the 5 face keypoints and the face box moved
with the image and re-ordered after a flip.

One transform serves both uses: offline, ``augment_fold`` writes N augmented copies of each
training image of one fold (the published 20×) with their manifest; online, an ``Augmenter`` is
the ``transform`` of ``neopain.training.dataset.FaceDataset``.

Coordinates are pixels with pixel (i, j)'s centre at x=i, y=j (as cv2 draws and warps), so a
point is inside a W×H image when -0.5 <= x <= W - 0.5 and -0.5 <= y <= H - 0.5.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from numbers import Integral, Real
from typing import TYPE_CHECKING

import cv2
import numpy as np

from neopain.data.manifest import N_KEYPOINTS
from neopain.errors import NeopainError
from neopain.models.preprocess import resize_sample

if TYPE_CHECKING:
    import albumentations as A


logger = logging.getLogger(__name__)

FILL_MODES = {"nearest": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}
"""How pixels from outside the image are filled: ``nearest`` repeats the edge pixel (Keras'
default ``fill_mode``), ``constant`` fills black. Reflecting modes are left out: albumentations
adds mirrored copies of the keypoints for them."""

FLIP_ORDER = (1, 0, 2, 4, 3)
"""Keypoint order after a horizontal flip: eyes and mouth corners trade places, so that index 0
is again the image-left eye and index 3 the image-left mouth corner."""

JPEG_QUALITY = 95
ProgressHook = Callable[[int, int], None]


@dataclass(frozen=True)
class AugmentSpec:
    """The random transform, with the published defaults (in Keras ``ImageDataGenerator`` terms).

    Attributes:
        rotate: rotation in degrees, drawn from [-rotate, rotate].
        shear: shear angle along x in degrees, drawn from [-shear, shear] (the publication
            gives no value; 10° is ours).
        shift: shift as a share of the width and of the height, each drawn from [-shift, shift].
        zoom: (low, high) scale factor of the image content, one factor for both axes so faces
            keep their proportions (Keras draws one per axis and zooms by its inverse).
        brightness: (low, high) factor every pixel value is multiplied by, clipped to 255: what
            Keras' ``brightness_range`` does (PIL ``ImageEnhance.Brightness``), not an offset.
        flip: probability of a horizontal flip (keypoints are mirrored and re-ordered).
        size: (height, width) of the output; None keeps each image's size.
        fill_mode: ``nearest`` or ``constant`` (see ``FILL_MODES``).
        max_attempts: draws tried until all 5 keypoints lie inside the output; if none does,
            the copy gets only the brightness change and resize (a counted *fallback*).
    """

    rotate: float = 30.0
    shear: float = 10.0
    shift: float = 0.2
    zoom: tuple[float, float] = (0.7, 1.5)
    brightness: tuple[float, float] = (0.5, 1.1)
    flip: float = 0.5
    size: tuple[int, int] | None = None
    fill_mode: str = "nearest"
    max_attempts: int = 50

    def __post_init__(self) -> None:
        for name, high in {"rotate": 180.0, "shear": 45.0, "shift": 0.9, "flip": 1.0}.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value <= high:
                raise NeopainError(f"{name}={value!r} must be a number in [0, {high:g}]")
        for name in ("zoom", "brightness"):
            value = tuple(getattr(self, name))
            if len(value) != 2 or not 0 < value[0] <= value[1] < math.inf:
                raise NeopainError(f"{name}={value!r} must be (low, high) with 0 < low <= high")
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        if self.size is not None:
            size = tuple(self.size)
            if len(size) != 2 or not all(_is_count(v) for v in size):
                raise NeopainError(f"size={self.size!r} must be (height, width) in whole pixels "
                                   ">= 1, or None to keep each image's size")
            object.__setattr__(self, "size", (int(size[0]), int(size[1])))
        if self.fill_mode not in FILL_MODES:
            raise NeopainError(f"fill_mode={self.fill_mode!r} is not valid; valid: "
                               f"{', '.join(FILL_MODES)}")
        check_count("max_attempts", self.max_attempts)


def _is_count(value: object) -> bool:
    """Whether ``value`` is a whole number >= 1 (numpy integers too, bools not)."""
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


def check_count(name: str, value: object) -> None:
    if not _is_count(value):
        raise NeopainError(f"{name}={value!r} must be a whole number >= 1")


@dataclass(frozen=True)
class AugmentedSample:
    """An augmented image with its keypoints (5, 2) and face box (None where none was given).

    ``flipped``: the mirror was applied; ``attempts``: draws made; ``fallback``: no draw kept
    the keypoints inside, so only brightness and resize were applied.
    """

    image: np.ndarray
    keypoints: np.ndarray | None
    box: tuple[float, float, float, float] | None
    flipped: bool
    attempts: int
    fallback: bool


def _albumentations():
    """albumentations, imported on first use rather than with neopain: importing it takes 2 s
    (it imports torch) and, unless NO_ALBUMENTATIONS_UPDATE is set, asks PyPI for a newer
    version, a network call neopain must not make at run time."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return albumentations


def points_inside(points: np.ndarray, *, width: int, height: int) -> bool:
    """Whether every (x, y) lies on a pixel: -0.5 <= x <= width - 0.5, likewise y.

    Pixel-area bounds (not pixel centres) so that resizing keeps an inside point inside.
    """
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    return bool(np.all((points >= -0.5) & (points <= np.array([width, height]) - 0.5)))


def _box_around(corners: np.ndarray, *, width: int, height: int):
    """Axis-aligned box around 4 moved corners, clipped to the image; None if nothing is left."""
    x1, y1 = np.clip(corners.min(axis=0), 0, [width, height])
    x2, y2 = np.clip(corners.max(axis=0), 0, [width, height])
    return (float(x1), float(y1), float(x2), float(y2)) if x2 > x1 and y2 > y1 else None


class Augmenter:
    """The random transform of an ``AugmentSpec``, applied to an image, its keypoints and box.

    A draw is rotation, shear, shift and zoom (``A.Affine``), brightness
    (``A.MultiplicativeNoise``, one factor per image) and a horizontal flip; it is redrawn until
    the 5 keypoints lie inside the output (images without keypoints keep the first draw). Then
    the resize. The face box moves as its 4 corners and becomes the clipped box around them.

    Args:
        spec: the transform's ranges.
        seed: seeds the generator used by calls that pass no ``rng``.

    Example:
        >>> augment = Augmenter(AugmentSpec(size=(224, 224)))
        >>> sample = augment(image, keypoints, box, rng=np.random.default_rng(7))
    """

    def __init__(self, spec: AugmentSpec = AugmentSpec(), *, seed: int | None = None) -> None:
        self.spec = spec
        self.seed = seed

    def __getstate__(self) -> dict:
        return {"spec": self.spec, "seed": self.seed}  # pipelines are rebuilt after unpickling

    def _pipelines(self) -> tuple[A.Compose, A.Compose]:
        if "_pipelines_" not in self.__dict__:
            A = _albumentations()
            spec = self.spec
            points = A.KeypointParams(format="xy", remove_invisible=False)
            brightness = A.MultiplicativeNoise(multiplier=spec.brightness, per_channel=False,
                                               elementwise=False, p=1.0)
            affine = A.Affine(
                rotate=(-spec.rotate, spec.rotate),
                shear={"x": (-spec.shear, spec.shear), "y": (0.0, 0.0)},
                translate_percent={"x": (-spec.shift, spec.shift), "y": (-spec.shift, spec.shift)},
                scale=spec.zoom, keep_ratio=True, border_mode=FILL_MODES[spec.fill_mode], fill=0,
                p=1.0)
            # albumentations 2.0.8 mirrors keypoints but cannot re-order them on a flip (its
            # KeypointParams has no label mapping), so the applied transforms are recorded and
            # the left/right keypoints are swapped after the call when HorizontalFlip ran.
            full = A.Compose([affine, brightness, A.HorizontalFlip(p=spec.flip)],
                             keypoint_params=points, save_applied_params=True, strict=True)
            fallback = A.Compose([brightness], strict=True)  # no geometry: points stay
            self._pipelines_ = (full, fallback)
        return self._pipelines_

    def __call__(self, image: np.ndarray, keypoints: np.ndarray | None = None,
                 box: Sequence[float] | None = None, *,
                 rng: np.random.Generator | None = None) -> AugmentedSample:
        """Augment one uint8 image (H×W or H×W×C, any channel order).

        Args:
            image: the image.
            keypoints: (5, 2) pixel coordinates in manifest order, or None.
            box: face box ``[x1, y1, x2, y2]`` in pixels, or None.
            rng: the randomness of this call; without it, the augmenter's own seeded generator.

        Raises:
            NeopainError: keypoints that are not 5 finite pairs or lie outside the image.
        """
        if rng is None:
            rng = self.__dict__.setdefault("_rng_", np.random.default_rng(self.seed))
        height, width = image.shape[:2]
        if keypoints is not None:
            keypoints = np.asarray(keypoints, dtype=float)
            if keypoints.shape != (N_KEYPOINTS, 2) or not np.isfinite(keypoints).all():
                raise NeopainError(f"keypoints must be {N_KEYPOINTS} finite [x, y] pairs, got "
                                   f"shape {keypoints.shape}")
            if not points_inside(keypoints, width=width, height=height):
                raise NeopainError(f"keypoints lie outside the {width}x{height} image; valid: "
                                   f"-0.5 <= x <= {width - 0.5} and -0.5 <= y <= {height - 0.5}")
        points = [keypoints] if keypoints is not None else []
        if box is not None:
            x1, y1, x2, y2 = box
            points.append([[x1, y1], [x2, y1], [x1, y2], [x2, y2]])
        points = np.concatenate([np.zeros((0, 2)), *points]).astype(float)
        full, fallback = self._pipelines()
        for attempt in range(1, self.spec.max_attempts + 1):
            out = _draw(full, image, points, rng)
            moved = np.asarray(out["keypoints"], dtype=float).reshape(-1, 2)
            if keypoints is None or points_inside(moved[:N_KEYPOINTS], width=width, height=height):
                flipped = any(name == "HorizontalFlip" for name, _ in out["applied_transforms"])
                return self._finish(out["image"], moved, keypoints is not None, box is not None,
                                    flipped=flipped, attempts=attempt)
        out = _draw(fallback, image, None, rng)
        sample = self._finish(out["image"], points, True, box is not None, flipped=False,
                              attempts=self.spec.max_attempts)
        return replace(sample, fallback=True)

    def _finish(self, image: np.ndarray, moved: np.ndarray, has_keypoints: bool, has_box: bool,
                *, flipped: bool, attempts: int) -> AugmentedSample:
        if self.spec.size is not None:
            image, moved = resize_sample(image, moved, size=self.spec.size)
        keypoints = moved[:N_KEYPOINTS] if has_keypoints else None
        if keypoints is not None and flipped:
            keypoints = keypoints[list(FLIP_ORDER)]
        height, width = image.shape[:2]
        box = _box_around(moved[-4:], width=width, height=height) if has_box else None
        return AugmentedSample(image=image, keypoints=keypoints, box=box, flipped=flipped,
                               attempts=attempts, fallback=False)


def _draw(pipeline: A.Compose, image: np.ndarray, points: np.ndarray | None,
          rng: np.random.Generator) -> dict:
    seeds = rng.integers(0, 2**63, size=2)
    pipeline.set_random_state(np.random.default_rng(seeds[0]), random.Random(int(seeds[1])))
    return pipeline(image=image) if points is None else pipeline(image=image, keypoints=points)


def copy_rng(seed: int, image: str, copy: int) -> np.random.Generator:
    """The generator of one augmented copy, from the seed, the image path text and the copy.

    Not from the row number or worker, so a copy is the same whatever the row order, the fold or
    the number of workers.
    """
    digest = hashlib.sha256(os.path.normpath(image).replace(os.sep, "/").encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little"), copy])

