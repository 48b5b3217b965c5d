"""Explanation overlays for ``neopain assess``: where in the face the model saw pain.

The heatmap is the predictor's own ``evidence`` for the face crop (the NFCS scorer: its
actions' facial regions; an exported model: occlusion sensitivity), drawn over the place in the
image the crop came from (``CropRule.placement``), with the face box, label and P(pain), and
a caption along the bottom: what the model names (the NFCS actions present) or, for a face it
could not assess, ``cannot_assess`` and why (never a P(pain)).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from neopain.data.images import read_image
from neopain.faces.base import Face
from neopain.faces.crop import Box
from neopain.monitor.images import CANNOT_ASSESS, UNKNOWN_REASON, ImageAssessment, label_of
from neopain.prediction import Prediction, Predictor

ProgressHook = Callable[[int, int], None]
COLOURS = {"pain": (40, 40, 220), "nopain": (60, 170, 60), CANNOT_ASSESS: (0, 160, 230)}
"""Box and label colour (BGR) by label: red, green, amber."""
ASCII = str.maketrans({"°": " deg", "±": "+/-", "—": "-", "–": "-", "×": "x"})
"""OpenCV's Hershey fonts draw ASCII only: the signs reasons and action lines use, spelled."""
FONT = cv2.FONT_HERSHEY_SIMPLEX


def overlay_text(prediction: Prediction, *, lines: Sequence[str] | None = None
                 ) -> tuple[str, list[str]]:
    """The label drawn over the face box and the caption lines: ``("pain 0.83", lines)`` for
    an assessed face (``lines``: what the model names, e.g. ``Predictor.explain``), and
    ``("cannot_assess", [its reason])`` for a face the model could not assess."""
    if not prediction.assessable:
        return CANNOT_ASSESS, [f"{CANNOT_ASSESS}: {prediction.reason or UNKNOWN_REASON}"]
    return f"{prediction.label} {prediction.prob_pain:.2f}", list(lines or [])


def _caption(out: np.ndarray, lines: Sequence[str]) -> None:
    """``lines`` wrapped to the image's width on a dark band along its bottom, in place."""
    width = out.shape[1]
    char = cv2.getTextSize("x", FONT, 0.45, 1)[0][0]
    wrapped = [part for line in lines
               for part in textwrap.wrap(line.translate(ASCII), max(8, (width - 8) // char))]
    if not wrapped:
        return
    top = max(0, out.shape[0] - 18 * len(wrapped) - 6)
    out[top:] = (out[top:] * 0.35).astype(np.uint8)
    for number, line in enumerate(wrapped):
        cv2.putText(out, line, (4, top + 16 + 18 * number), FONT, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)


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
                 alpha: float = 0.45, lines: Sequence[str] | None = None) -> np.ndarray:
    """A copy of ``image`` with the heatmap blended over ``region`` (left, top, right, bottom in
    whole pixels: where the crop came from), the face box, its label (``overlay_text``: the
    label with P(pain), or ``cannot_assess``) and the caption (``lines``, or the reason a face
    could not be assessed)."""
    out = image.copy()
    if heat is not None and region is not None:
        x1, y1, x2, y2 = region
        colours = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)
        patch = out[y1:y2, x1:x2]
        weight = (alpha * np.clip(heat, 0, 1))[..., None]
        out[y1:y2, x1:x2] = np.uint8(patch * (1 - weight) + colours * weight)
    text, caption = ("", []) if prediction is None else overlay_text(prediction, lines=lines)
    if face is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        colour = COLOURS.get(label_of(prediction), COLOURS["nopain"])
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        if text:
            cv2.putText(out, text, (x1, max(14, y1 - 6)), FONT, 0.5, colour, 1, cv2.LINE_AA)
    _caption(out, caption)
    return out


def write_overlays(results: Sequence[ImageAssessment], paths: Sequence[Path], predictor: Predictor,
                   out: str | os.PathLike[str], *, on_progress: ProgressHook | None = None
                   ) -> list[Path]:
    """One PNG per assessed image in ``out`` (``NNNN_<name>.png``, in input order): the face
    box, label and P(pain), the predictor's evidence heatmap where it gives one and what it
    names (``Predictor.explain``); a face it could not assess is drawn ``cannot_assess`` with
    its reason. Images without a prediction get none.

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
            evidence = predictor.evidence([crop])[0] if result.prediction.assessable else None
            if evidence is not None:
                placed = heat_on_image(evidence, placement=predictor.crop.placement(
                    result.face.box, image_shape=image.shape), image_shape=image.shape)
                if placed is not None:
                    heat, region = placed
            target = out / f"{index:04d}_{Path(path).stem}.png"
            cv2.imwrite(str(target), draw_overlay(
                image, result.face, result.prediction, heat=heat, region=region,
                lines=predictor.explain(result.prediction)))
            written.append(target)
        if on_progress is not None:
            on_progress(index + 1, len(results))
    return written
