"""Explanation overlays for ``neopain assess``: where in the face an exported model saw pain.

An exported model has no gradients, so the heatmap is occlusion sensitivity (captum's
``Occlusion``, Zeiler & Fergus 2014): each square of the model's input is set to the
normalized zero (the cfg's mean colour) in turn, and the drop in P(pain) is that square's
evidence for pain. Only drops count (squares whose removal raises P(pain) stay cold). The
overlay draws the heatmap over the face crop's place in the image, with the face box, label and
P(pain).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from neopain.data.images import read_image
from neopain.export.runtime import OnnxPredictor
from neopain.faces.base import Face
from neopain.monitor.images import ImageAssessment
from neopain.monitor.pipeline import crop_for_predictor, exact_crop_region
from neopain.prediction import Prediction, Predictor

ProgressHook = Callable[[int, int], None]


def occlusion_heatmap(predictor: OnnxPredictor, crop: np.ndarray, *, squares: int = 8,
                      batch: int = 16) -> np.ndarray:
    """Evidence for pain over a face crop, H×W of the crop, 0–1 (1: the strongest square).

    ``neopain.explain.Occlusion`` over the model's input cut into squares × squares windows
    (not overlapping), each replaced by the mean colour (``baseline="mean"``).

    Args:
        predictor: an exported model.
        crop: the BGR uint8 face crop the model assesses.
        squares: the input is cut into squares × squares occlusion windows.
        batch: occluded copies per model call.

    Raises:
        NeopainError: a crop that is not BGR uint8 H×W×3 (from ``preprocess``).
    """
    from neopain.explain.occlusion import Occlusion

    pain = predictor.exported_.pain_index
    inputs = predictor.preprocess(crop)[None]
    side = max(1, min(inputs.shape[2:]) // squares)

    def prob_pain(images: np.ndarray) -> np.ndarray:
        return predictor.predict_inputs(images)[:, pain]

    with Occlusion(prob_pain, window=side, stride=side, baseline="mean",
                   perturbations_per_eval=batch, batch_size=1) as explainer:
        heat = explainer.explain(inputs, target="pain")[0]
    if heat.max() > 0:
        heat = heat / heat.max()
    return cv2.resize(heat.astype(np.float32), (crop.shape[1], crop.shape[0]),
                      interpolation=cv2.INTER_LINEAR)


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
    box, label and P(pain), and for an exported model cropping to the face box or the whole
    image, the occlusion heatmap. Images without a prediction get none.

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
            if isinstance(predictor, OnnxPredictor):  # an exported model crops 0 or None
                region = exact_crop_region(result.face.box, image_shape=image.shape,
                                           margin=predictor.margin)
                crop = crop_for_predictor(image, result.face.box, margin=predictor.margin)
                heat = occlusion_heatmap(predictor, crop)
            target = out / f"{index:04d}_{Path(path).stem}.png"
            cv2.imwrite(str(target), draw_overlay(image, result.face, result.prediction,
                                                  heat=heat, region=region))
            written.append(target)
        if on_progress is not None:
            on_progress(index + 1, len(results))
    return written
