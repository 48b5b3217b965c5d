"""Drawing helpers shared by the pictures commands leave behind (matplotlib, no pyplot)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

KEYPOINT_COLOURS = ("red", "blue", "yellow", "magenta", "cyan")
"""Index 0-4: image-left eye, image-right eye, nose, image-left and image-right mouth corner."""


def show_face(ax, image: np.ndarray, *, title: str, box: Sequence[float] | None = None,
              keypoints: np.ndarray | None = None) -> None:
    """Draw a BGR image on ``ax`` with its face box and keypoints coloured by index."""
    ax.imshow(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    if box is not None:
        x1, y1, x2, y2 = box
        ax.plot([x1, x2, x2, x1, x1], [y1, y1, y2, y2, y1], c="deepskyblue", lw=1.2)
    if keypoints is not None and not np.isnan(keypoints).any():
        ax.scatter(keypoints[:, 0], keypoints[:, 1], s=12, c=list(KEYPOINT_COLOURS),
                   edgecolors="k", linewidths=0.4)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
