"""Augmentation that moves the 5 face keypoints (and the face box) with the image.

``transform`` holds the one transform (``AugmentSpec`` → ``Augmenter``), used online as the
``transform`` of ``neopain.training.dataset.FaceDataset``; ``offline`` writes N augmented copies of
each training image of one fold with their manifest (``augment_fold``).
"""

from neopain.training.augment.offline import AugmentResult, augment_fold
from neopain.training.augment.transform import (
    FILL_MODES,
    FLIP_ORDER,
    AugmentedSample,
    Augmenter,
    AugmentSpec,
    copy_rng,
    points_inside,
)

__all__ = [
    "FILL_MODES", "FLIP_ORDER", "AugmentResult", "AugmentSpec", "AugmentedSample", "Augmenter",
    "augment_fold", "copy_rng", "points_inside",
]  # fmt: skip
