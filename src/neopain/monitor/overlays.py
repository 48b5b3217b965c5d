"""Explanation overlays for ``neopain assess``: where in the face the model saw pain.

The heatmap is the predictor's own ``evidence`` for the face crop (the NFCS scorer: its
actions' facial regions; an exported model: occlusion sensitivity), drawn over the place in the
image the crop came from (``CropRule.placement``), with the face box, label and P(pain).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from neopain.data.images import read_image
from neopain.faces.base import Face
from neopain.faces.crop import Box
from neopain.monitor.images import ImageAssessment
from neopain.prediction import Prediction, Predictor

ProgressHook = Callable[[int, int], None]


def heat_on_image(heat: np.ndarray, *, placement: Box, image_shape: tuple[int, ...]
                  ) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """A crop's heatmap moved onto the image: the part inside the image and its whole-pixel
    region (left, top, right, bottom); None when no pixel of it falls inside.

    ``placement`` is where the crop lies in the image (``CropRule.placement``); a padded square
    may reach past the image, and only the part inside is kept.
    """
    left, top, right, bottom = (int(round(v)) for v in placement)
    if right <= left or bottom <= top:
        return None
    resized = cv2.resize(np.asarray(heat, np.float32), (right - left, bottom - top),
                         interpolation=cv2.INTER_LINEAR)
    height, width = image_shape[:2]
    x1, y1, x2, y2 = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
    if x2 <= x1 or y2 <= y1:
        return None
    return resized[y1 - top:y2 - top, x1 - left:x2 - left], (x1, y1, x2, y2)


def draw_overlay(image: np.ndarray, face: Face | None, prediction: Prediction | None, *,
                 heat: np.ndarray | None = None, region: tuple[int, int, int, int] | None = None,
                 alpha: float = 0.45) -> np.ndarray:
    """A copy of ``image`` with the heatmap blended over ``region`` (left, top, right, bottom in
    whole pixels: where the crop came from), the face box, and the label with P(pain)."""
    out = image.copy()
    if heat is not None and region is not None:
        x1, y1, x2, y2 = region
        colours = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)
        patch = out[y1:y2, x1:x2]
        weight = (alpha * np.clip(heat, 0, 1))[..., None]
        out[y1:y2, x1:x2] = np.uint8(patch * (1 - weight) + colours * weight)
    if face is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        colour = (40, 40, 220) if prediction is not None and prediction.label == "pain" \
            else (60, 170, 60)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        if prediction is not None:
            text = f"{prediction.label} {prediction.prob_pain:.2f}"
            cv2.putText(out, text, (x1, max(14, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        colour, 1, cv2.LINE_AA)
    return out



def write_overlays(results: Sequence[ImageAssessment], paths: Sequence[Path], predictor: Predictor,
                   out: str | os.PathLike[str], *, on_progress: ProgressHook | None = None
                   ) -> list[Path]:
    """One PNG per assessed image in ``out`` (``NNNN_<name>.png``, in input order): the face
    box, label and P(pain), and the predictor's evidence heatmap where it gives one. Images
    without a prediction get none.

    Args:
        results: from ``assess_images`` / ``assess_manifest``.
        paths: the image file of each result.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index, (result, path) in enumerate(zip(results, paths)):
        if result.prediction is not None and result.face is not None:
            image = read_image(path)
            heat = region = None
            crop = predictor.crop.cut(image, box=result.face.box)
            evidence = predictor.evidence([crop])[0]
            if evidence is not None:
                placed = heat_on_image(evidence, placement=predictor.crop.placement(
                    result.face.box, image_shape=image.shape), image_shape=image.shape)
                if placed is not None:
                    heat, region = placed
            target = out / f"{index:04d}_{Path(path).stem}.png"
            cv2.imwrite(str(target), draw_overlay(image, result.face, result.prediction,
                                                  heat=heat, region=region))
            written.append(target)
        if on_progress is not None:
            on_progress(index + 1, len(results))
    return written
