"""A picture of augmented copies beside their originals, keypoints coloured by index."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from matplotlib.figure import Figure

from neopain.data.augment.transform import read_image
from neopain.data.manifest import load_manifest

KEYPOINT_COLOURS = ("red", "blue", "yellow", "magenta", "cyan")
"""Index 0-4: image-left eye, image-right eye, nose, image-left and image-right mouth corner."""


def _show(ax, image: np.ndarray, points: np.ndarray, title: str) -> None:
    ax.imshow(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    if not np.isnan(points).any():
        ax.scatter(points[:, 0], points[:, 1], s=14, c=list(KEYPOINT_COLOURS), edgecolors="k",
                   linewidths=0.4)
    ax.set_title(title, fontsize=7)
    ax.set_axis_off()


def augment_sheet(manifest: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  examples: int = 4, copies: int = 4) -> Path:
    """Draw ``examples`` originals, each followed by its first ``copies`` augmented copies.

    Args:
        manifest: the manifest ``augment_fold`` wrote (with ``augmented_from`` and ``copy``).
        out: the PNG to write.

    Keypoints keep their colour by index (``KEYPOINT_COLOURS``): after a flip, red is still the
    image-left eye, which shows that flips re-order the keypoints.
    """
    augmented = load_manifest(manifest)
    table = augmented.table
    originals = list(dict.fromkeys(table["augmented_from"]))[:examples]
    points = augmented.keypoints()
    fig = Figure(figsize=(1.9 * (copies + 1), 1.9 * len(originals)), layout="constrained")
    axes = fig.subplots(len(originals), copies + 1, squeeze=False)
    for ax_row, original in zip(axes, originals):
        rows = np.flatnonzero(table["augmented_from"].to_numpy() == original)[:copies]
        source = read_image(augmented.root / original)
        if source is None:
            raise FileNotFoundError(augmented.root / original)
        first = rows[0]
        _show(ax_row[0], source, np.full((5, 2), np.nan),
              f"{table['subject'].iat[first]} {table['label'].iat[first]}: original")
        for ax, row in zip(ax_row[1:], rows):
            _show(ax, read_image(augmented.image_path(row)), points[row],
                  f"copy {table['copy'].iat[row]}")
        for ax in ax_row[1 + len(rows):]:
            ax.set_axis_off()
    out = Path(out)
    fig.savefig(out, dpi=90)
    return out
