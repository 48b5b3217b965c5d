"""How well heatmaps point at known evidence: attribution mass in ground-truth masks, pointing game.

With ground truth (the synthetic cohort's action masks: bit i of the mask PNG = ``ACTIONS[i]``),
two figures say whether an explanation method finds what the model should look at:

- the mass ratio: the share of a heatmap's positive mass inside the mask, divided by the
  mask's share of the image (1 = no better than spreading attribution evenly);
- the pointing game (Zhang et al., ECCV 2016): whether the heatmap's peak lies inside the mask.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from neopain.data.images import ImageReadError, read_gray
from neopain.errors import NeopainError
from neopain.explain.perception import into_frame

ACTION_BITS = 0b0011_1111
"""The six action bits of the synthetic cohort's masks (``data.synthetic.ACTIONS``)."""


CROP_MASKS = ("its mask column holds the masks of the original images (a crop manifest of "
              "neopain faces detect), which do not lie on the crops; valid: the manifest of "
              "the original images")
"""Why a crop manifest's masks cannot be used, and what to give instead."""


def masks_off_images(table) -> bool:
    """Whether ``table`` (a manifest's) is a ``faces detect`` crop manifest with masks: it keeps
    each original image's mask, which is drawn on the original image, not on the crop."""
    return ("mask" in table.columns and "original_image" in table.columns
            and bool((table["original_image"].astype(str).str.strip() != "").any()))


def read_action_mask(path: str | os.PathLike[str], *, bits: int = ACTION_BITS) -> np.ndarray:
    """A bit-mask PNG as a boolean (H, W) map of pixels with any of ``bits`` set.

    Raises:
        NeopainError: the file is missing or not an 8-bit single-channel image.
    """
    try:
        mask = read_gray(path, exact=True)
    except ImageReadError as error:
        raise NeopainError(f"mask {path} cannot be read ({error.reason}); valid: an 8-bit "
                           "single-channel PNG") from None
    return (mask & bits) > 0


def mask_in_input(mask: np.ndarray, *, size: tuple[int, int],
                  crop_box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """A whole-image boolean mask moved onto the network input: cropped like ``FaceDataset``
    (whole pixels), resized to ``size`` (height, width); a pixel is in when half of it is."""
    moved = into_frame(mask.astype(np.float32), shape=size, crop_box=crop_box)
    return moved >= 0.5


@dataclass(frozen=True)
class Localization:
    """Per image: mass share inside the mask, the mask's area share, and the pointing hit."""

    share: np.ndarray
    area: np.ndarray
    hit: np.ndarray

    @property
    def mass_ratio(self) -> float:
        """Mean share in the masks over their mean area share (>= 2: twice chance)."""
        return float(np.nanmean(self.share) / np.mean(self.area))

    @property
    def pointing(self) -> float:
        """Share of images whose heatmap peak lies in the mask."""
        return float(np.mean(self.hit))


def localization(heatmaps: np.ndarray, masks: np.ndarray) -> Localization:
    """Mass share and pointing game of heatmaps (N, H, W) against boolean masks (N, H, W).

    An all-zero heatmap has NaN share and misses the pointing game.

    Raises:
        NeopainError: shapes differ, or an empty mask (nothing to point at).
    """
    heat = np.clip(np.asarray(heatmaps, dtype=np.float64), 0, None)
    masks = np.asarray(masks, dtype=bool)
    if heat.shape != masks.shape or heat.ndim != 3:
        raise NeopainError(f"heatmaps {heat.shape} and masks {masks.shape} must both be "
                           "(N, H, W)")
    flat_heat, flat_mask = heat.reshape(len(heat), -1), masks.reshape(len(masks), -1)
    empty = np.flatnonzero(~flat_mask.any(axis=1))
    if empty.size:
        raise NeopainError(f"mask {int(empty[0])} is empty: the pointing game needs evidence "
                           "in every image; leave images without actions out")
    total = flat_heat.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, (flat_heat * flat_mask).sum(axis=1) / total, np.nan)
    peak = flat_heat.argmax(axis=1)
    hit = (total > 0) & flat_mask[np.arange(len(peak)), peak]
    return Localization(share=share, area=flat_mask.mean(axis=1), hit=hit)
