"""Corruptions of a face crop at graded severities, for robustness tests (``robustness``).

Each corruption has five severities (1 mild … 5 severe; 0 is the clean crop) whose parameters
are listed in ``CORRUPTIONS``. Sizes are relative to the crop's longer side (``side``), so a
severity means the same on a 60-pixel and a 600-pixel face; downscaling names the face's
resolution in pixels, as a camera far from the cot gives it.

Brightness, downscale, blur, noise, JPEG, rotation and translation are albumentations
transforms with their parameter fixed at the severity. Two are written here, as albumentations
has nothing that does them: ``patches`` (black squares that stay where they were as the
severity adds more, see ``_patches``) and ``occlude_<region>``, which covers one facial region
(``faces.regions.REGIONS``, from the face's keypoints or mesh landmarks) with grey at growing
opacity. The random parts (noise, square positions, the direction of a rotation or shift) come
from the seed alone: the same on every run, and at every severity, so that a severity changes
only how strong they are.

Example:
    >>> worse = corrupt(crop, "blur", severity=3, seed=0)  # doctest: +SKIP
    >>> labels = region_map(crop.shape[:2], keypoints=points_on_crop)  # doctest: +SKIP
    >>> covered = corrupt(crop, "occlude_mouth", severity=5, seed=0,
    ...                   regions=labels)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from neopain.errors import NeopainError
from neopain.faces.regions import REGIONS

SEVERITIES = (1, 2, 3, 4, 5)
"""The graded severities; 0 stands for the clean crop in tables."""

GREY = 128
"""What an occluded region is covered with (mid-grey, BGR)."""
PATCH_SIDE = 0.15
"""The side of a ``patches`` square, as a share of the crop's longer side."""
MAX_PATCHES = 8

TransformMaker = Callable[[float, int, np.random.Generator], A.BasicTransform]
"""(parameter at the severity, the crop's longer side, a seeded generator) → a transform."""


@dataclass(frozen=True)
class Corruption:
    """One corruption: its parameter at each severity and what that parameter means.

    Attributes:
        name: the name ``--corruption`` takes.
        levels: the parameter at severities 1-5.
        unit: what the parameter is, for tables (``sigma, % of side``).
        region: the facial region it covers (``occlude_<region>``), else "".
    """

    name: str
    levels: tuple[float, ...]
    unit: str
    region: str = ""

    def parameter(self, severity: int) -> str:
        """The parameter at ``severity`` as a short text, e.g. ``sigma 2 % of side``."""
        return f"{self.unit} {self.levels[severity - 1]:g}"


def _signed(value: float, rng: np.random.Generator) -> float:
    return value if rng.random() < 0.5 else -value


def _brightness(level: float, side: int, rng: np.random.Generator) -> A.BasicTransform:
    return A.RandomBrightnessContrast(brightness_limit=(-level, -level), contrast_limit=(0, 0),
                                      p=1)


def _downscale(level: float, side: int, rng: np.random.Generator) -> A.BasicTransform:
    scale = level / side
    if scale >= 1:  # the face is already that coarse
        return A.NoOp()
    return A.Downscale(scale_range=(scale, scale), p=1,
                       interpolation_pair={"downscale": cv2.INTER_AREA,
                                           "upscale": cv2.INTER_LINEAR})


def _blur(level: float, side: int, rng: np.random.Generator) -> A.BasicTransform:
    sigma = level / 100 * side
    return A.GaussianBlur(blur_limit=0, sigma_limit=(sigma, sigma), p=1)


def _noise(level: float, side: int, rng: np.random.Generator) -> A.BasicTransform:
    return A.GaussNoise(std_range=(level, level), p=1)


def _jpeg(level: float, side: int, rng: np.random.Generator) -> A.BasicTransform:
    quality = int(level)
    return A.ImageCompression(compression_type="jpeg", quality_range=(quality, quality), p=1)


def _rotation(level: float, side: int, rng: np.random.Generator) -> A.BasicTransform:
    angle = _signed(level, rng)
    return A.Affine(rotate=(angle, angle), border_mode=cv2.BORDER_CONSTANT, fill=0, p=1)


def _translation(level: float, side: int, rng: np.random.Generator) -> A.BasicTransform:
    """A shift of ``level`` % of the longer side in a direction drawn from ``rng``, in pixels:
    albumentations' ``translate_percent`` takes x as a share of the width and y of the height,
    which on a non-square crop would make the length depend on the direction."""
    direction = rng.uniform(0, 2 * np.pi)
    length = level / 100 * side
    dx, dy = round(length * np.cos(direction)), round(length * np.sin(direction))
    return A.Affine(translate_px={"x": (dx, dx), "y": (dy, dy)},
                    border_mode=cv2.BORDER_CONSTANT, fill=0, p=1)


def _patches(crop: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Black squares of ``PATCH_SIDE`` × the crop's side at the first ``count`` of
    ``MAX_PATCHES`` positions drawn from ``rng``, so that with the same seed a severity's
    squares are those of the severity below plus more. Written here: albumentations'
    CoarseDropout draws the positions of N squares anew for each N."""
    height, width = crop.shape[:2]
    size = max(1, round(PATCH_SIDE * max(height, width)))
    tops = rng.integers(0, max(1, height - size + 1), MAX_PATCHES)
    lefts = rng.integers(0, max(1, width - size + 1), MAX_PATCHES)
    out = crop.copy()
    for top, left in zip(tops[:count], lefts[:count]):
        out[top:top + size, left:left + size] = 0
    return out


_MAKERS: dict[str, TransformMaker] = {
    "brightness": _brightness, "downscale": _downscale, "blur": _blur, "noise": _noise,
    "jpeg": _jpeg, "rotation": _rotation, "translation": _translation,
}  # fmt: skip

CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in (
    Corruption("brightness", (0.1, 0.2, 0.3, 0.45, 0.6), "darker by (share of white)"),
    Corruption("downscale", (64, 40, 28, 20, 14), "face resolution (px of side)"),
    Corruption("blur", (1.5, 3, 4.5, 6, 8), "Gaussian sigma (% of side)"),
    Corruption("noise", (0.04, 0.08, 0.12, 0.18, 0.25), "Gaussian noise std (share of white)"),
    Corruption("jpeg", (40, 25, 15, 10, 5), "JPEG quality"),
    Corruption("rotation", (8, 15, 22, 30, 40), "rotated by ± (degrees)"),
    Corruption("translation", (5, 10, 15, 20, 25), "shifted by (% of side)"),
    Corruption("patches", (1, 2, 4, 6, MAX_PATCHES), "black squares of 15 % of side (count)"),
    *(Corruption(f"occlude_{region}", (0.2, 0.4, 0.6, 0.8, 1.0), f"{region} covered (opacity)",
                 region=region) for region in REGIONS),
)}
"""Every corruption by name, in table order."""


def check_corruption(name: str, severity: int) -> Corruption:
    """The corruption called ``name``, after checking ``severity``.

    Raises:
        NeopainError: an unknown name or a severity outside 1-5 (naming what is valid).
    """
    if name not in CORRUPTIONS:
        raise NeopainError(f"corruption {name!r} is not valid; valid: {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise NeopainError(f"severity={severity!r} is not valid; valid: "
                           f"{', '.join(map(str, SEVERITIES))} (0 is the clean image)")
    return CORRUPTIONS[name]


def corrupt(crop: np.ndarray, name: str, *, severity: int, seed: int,
            regions: np.ndarray | None = None) -> np.ndarray:
    """The face crop (H×W×3 uint8) corrupted by ``name`` at ``severity``; the same crop, name,
    severity and seed always give the same picture.

    Args:
        regions: for ``occlude_<region>``: the crop's region map (``faces.regions.region_map``
            over the crop's pixels).

    Raises:
        NeopainError: an unknown name or severity (``check_corruption``), or a region occlusion
            without a region map of the crop's shape.
    """
    corruption = check_corruption(name, severity)
    level = corruption.levels[severity - 1]
    if corruption.region:
        if regions is None or regions.shape != crop.shape[:2]:
            raise NeopainError(f"corruption {name!r} needs the face's regions over the crop "
                               "(keypoints or landmarks); the face has none")
        covered = regions == REGIONS.index(corruption.region)
        out = crop.copy()
        out[covered] = np.round((1 - level) * crop[covered] + level * GREY).astype(np.uint8)
        return out
    rng = np.random.default_rng(seed)
    if name == "patches":
        return _patches(crop, int(level), rng)
    transform = _MAKERS[name](level, max(crop.shape[:2]), rng)
    return A.Compose([transform], seed=int(rng.integers(2**31)))(image=crop)["image"]
