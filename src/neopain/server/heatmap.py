"""Heatmap regions for the live overlay: where on the face the model saw signs of pain.

The model's own ``evidence`` for the face crop (the NFCS scorer: its actions' facial regions
lit by intensity; an exported model: occlusion sensitivity) is reduced to a grid of
``EVIDENCE_CELLS`` × ``EVIDENCE_CELLS`` squares, each holding the strongest evidence inside
it, and sent as circles placed where the crop lies in the frame (``CropRule.placement``). A
model whose evidence is costly says so (``Predictor.evidence_interval_s``): a stream then
recomputes the grid at most that often and places the last grid on each frame's face in
between. The monitor asks for the coarser ``LIVE_EVIDENCE_GRID`` (occlusion: 36 model calls
instead of 64).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

EVIDENCE_CELLS = 8
LIVE_EVIDENCE_GRID = 6
MIN_WEIGHT = 0.2
_SAMPLES = 8  # heat samples per cell side


def evidence_cells(heat: np.ndarray) -> np.ndarray:
    """A crop's heatmap (0–1) as ``EVIDENCE_CELLS`` × ``EVIDENCE_CELLS`` squares, each the
    strongest evidence inside it (a mean would dim a small lit region below ``MIN_WEIGHT``)."""
    side = EVIDENCE_CELLS * _SAMPLES
    fine = cv2.resize(np.asarray(heat, np.float32), (side, side), interpolation=cv2.INTER_AREA)
    return fine.reshape(EVIDENCE_CELLS, _SAMPLES, EVIDENCE_CELLS, _SAMPLES).max(axis=(1, 3))


def cell_regions(cells: np.ndarray, *, placement: Sequence[float]) -> list[list[float]]:
    """``[x, y, radius, weight]`` circles in frame pixels: one per square of ``cells`` with
    weight >= ``MIN_WEIGHT``, laid over ``placement`` (left, top, right, bottom), the
    rectangle of the frame the model's crop covers."""
    x1, y1, x2, y2 = (float(v) for v in placement)
    rows, columns = cells.shape
    width, height = (x2 - x1) / columns, (y2 - y1) / rows
    return [[round(x1 + (column + 0.5) * width, 1), round(y1 + (row + 0.5) * height, 1),
             round(0.75 * max(width, height), 1), round(float(cells[row, column]), 2)]
            for row in range(rows) for column in range(columns)
            if cells[row, column] >= MIN_WEIGHT]
