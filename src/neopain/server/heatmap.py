"""Heatmap regions for the live overlay: where on the face the model saw signs of pain.

For the NFCS model (``details`` holds one intensity per facial action) each action lights the
area it moves: brows, eyes, nasolabial folds, mouth, weighted by its intensity relative to its
threshold (1 at the threshold or beyond). The areas are placed from the detector's 5 keypoints,
so no extra model runs per frame.

An exported model (``.onnx``) has no action intensities and no gradients: its evidence is
occlusion sensitivity (``monitor.overlays.occlusion_heatmap``) over a grid of
``OCCLUSION_SQUARES`` × ``OCCLUSION_SQUARES`` squares of its face crop, 36 extra model calls. A
stream computes it at most every ``OCCLUSION_INTERVAL_S`` seconds and places the last grid on
each frame's face box in between.
"""

from __future__ import annotations

import cv2
import numpy as np

from neopain.export.runtime import OnnxPredictor
from neopain.faces.base import Face
from neopain.monitor.overlays import occlusion_heatmap
from neopain.monitor.pipeline import crop_for_predictor, exact_crop_region
from neopain.prediction import Prediction
from neopain.scoring.actions import DEFAULT_THRESHOLDS

# action → areas it moves: (anchor, radius in inter-ocular distances)
AREAS: dict[str, tuple[tuple[str, float], ...]] = {
    "brow_bulge": (("brows", 0.55),),
    "eye_squeeze": (("left_eye", 0.35), ("right_eye", 0.35)),
    "nasolabial_furrow": (("left_fold", 0.3), ("right_fold", 0.3)),
    "open_lips": (("mouth", 0.45),),
    "vertical_mouth_stretch": (("mouth", 0.55),),
    "horizontal_mouth_stretch": (("mouth", 0.55),),
    "lip_purse": (("mouth", 0.4),),
}
MIN_WEIGHT = 0.2
OCCLUSION_SQUARES = 6
OCCLUSION_INTERVAL_S = 2.0


def heatmap_regions(face: Face, prediction: Prediction) -> list[list[float]] | None:
    """``[x, y, radius, weight]`` circles in frame pixels, or None when the model gives no
    action intensities or the detector no keypoints."""
    actions = [name for name in AREAS if name in prediction.details]
    if face.keypoints is None or not actions:
        return None
    left_eye, right_eye, nose, mouth_left, mouth_right = np.asarray(face.keypoints, float)
    across = right_eye - left_eye
    iod = float(np.linalg.norm(across))
    if iod < 1:
        return None
    across /= iod
    down = np.array([-across[1], across[0]])  # image y grows downwards
    anchors = {
        "brows": (left_eye + right_eye) / 2 - 0.45 * iod * down,
        "left_eye": left_eye,
        "right_eye": right_eye,
        "left_fold": nose - 0.45 * iod * across + 0.3 * iod * down,
        "right_fold": nose + 0.45 * iod * across + 0.3 * iod * down,
        "mouth": (mouth_left + mouth_right) / 2,
    }
    regions = []
    for name in actions:
        weight = float(np.clip(prediction.details[name] / DEFAULT_THRESHOLDS[name], 0.0, 1.0))
        if weight < MIN_WEIGHT:
            continue
        for anchor, radius in AREAS[name]:
            x, y = anchors[anchor]
            regions.append([round(float(x), 1), round(float(y), 1), round(radius * iod, 1),
                            round(weight, 2)])
    return regions


def occlusion_cells(predictor: OnnxPredictor, frame: np.ndarray, face: Face) -> np.ndarray:
    """Evidence for pain per square of the model's crop (``OCCLUSION_SQUARES`` square, 0–1)."""
    crop = crop_for_predictor(frame, face.box, margin=predictor.margin)
    heat = occlusion_heatmap(predictor, crop, squares=OCCLUSION_SQUARES)
    cells = cv2.resize(heat, (OCCLUSION_SQUARES, OCCLUSION_SQUARES), interpolation=cv2.INTER_AREA)
    return cells / cells.max() if cells.max() > 0 else cells


def cell_regions(cells: np.ndarray, frame_shape: tuple[int, ...], face: Face, *,
                 margin: float | None) -> list[list[float]]:
    """``[x, y, radius, weight]`` circles in frame pixels: one per square of ``cells`` with
    weight >= ``MIN_WEIGHT``, placed on the region the model crops from this frame."""
    x1, y1, x2, y2 = exact_crop_region(face.box, image_shape=frame_shape, margin=margin)
    rows, columns = cells.shape
    width, height = (x2 - x1) / columns, (y2 - y1) / rows
    return [[round(x1 + (column + 0.5) * width, 1), round(y1 + (row + 0.5) * height, 1),
             round(0.75 * max(width, height), 1), round(float(cells[row, column]), 2)]
            for row in range(rows) for column in range(columns)
            if cells[row, column] >= MIN_WEIGHT]
