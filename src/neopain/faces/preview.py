"""A picture of what face detectors found on one photograph, beside a few face crops."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from neopain.faces.base import Face
from neopain.plots import show_face


def detections_sheet(image: np.ndarray, found: Mapping[str, Face | None],
                     crops: Sequence[tuple[np.ndarray, np.ndarray | None]],
                     out: str | os.PathLike[str]) -> Path:
    """One row with each detector's chosen face on ``image`` (BGR), one row of face crops.

    Args:
        found: detector name → the face it chose (None: no face found).
        crops: (crop image BGR, its 5 keypoints or None) pairs.
        out: the PNG to write.
    """
    columns = max(len(found), len(crops), 1)
    fig = Figure(figsize=(2.4 * columns, 5.0), layout="constrained")
    axes = fig.subplots(2, columns, squeeze=False)
    for ax, (name, face) in zip(axes[0], found.items()):
        if face is None:
            show_face(ax, image, title=f"{name}: no face")
        else:
            show_face(ax, image, title=f"{name}: score {face.score:.2f}", box=face.box,
                      keypoints=face.keypoints)
    for ax, (crop, points) in zip(axes[1], crops):
        show_face(ax, crop, title=f"crop {crop.shape[1]}×{crop.shape[0]}", keypoints=points)
    for row, used in ((0, len(found)), (1, len(crops))):
        for ax in axes[row][used:]:
            ax.set_axis_off()
    out = Path(out)
    fig.savefig(out, dpi=90)
    return out
