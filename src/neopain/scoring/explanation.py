"""NFCS predictions read back from their ``details`` and put into words for the bedside.

``result_of`` turns a ``Prediction`` of the scorer back into the ``NfcsResult`` it came from
(count, flags, intensities; no measurements), so that a live stream can keep a window of them
for the DAN score (``scoring.dan.score_window``); ``action_lines`` names the actions present
out of ``facial_actions.FACIAL_ACTIONS``, the one action list.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from neopain.facial_actions import ACTION_REGIONS, FACIAL_ACTIONS
from neopain.prediction import Prediction
from neopain.scoring.actions import ACTIONS
from neopain.scoring.nfcs import MIN_EVIDENCE, NfcsResult


def result_of(prediction: Prediction) -> NfcsResult | None:
    """The ``NfcsResult`` a prediction of the scorer carries in its ``details``, or None for a
    prediction whose details hold no NFCS count and flags (another model's)."""
    details = prediction.details
    if not {"count", "count_threshold", "assessable"} <= details.keys():
        return None
    if not details["assessable"]:
        return NfcsResult({}, {}, 0, False, prediction.prob_pain, assessable=False,
                          reason=prediction.reason, details=dict(details))
    if not all(name in details and f"{name}_flag" in details for name in ACTIONS):
        return None
    count = int(details["count"])
    return NfcsResult({name: float(details[name]) for name in ACTIONS},
                      {name: bool(details[f"{name}_flag"]) for name in ACTIONS}, count,
                      count >= details["count_threshold"], prediction.prob_pain,
                      calibrated=bool(details.get("calibrated")), details=dict(details))


def action_text(name: str) -> str:
    """An action's name for people: ``brow_bulge`` → ``brow bulge``."""
    return name.replace("_", " ")


def action_lines(prediction: Prediction) -> list[str]:
    """E.g. ["brow bulge, eye squeeze, nasolabial furrow — 3 of 7", "measured against …"]: the
    flagged actions in NFCS order, their number out of all of them, and the reference face;
    [] for a face that could not be assessed (or a prediction that is not the scorer's)."""
    result = result_of(prediction)
    if result is None or not result.assessable:
        return []
    present = [action_text(action.name) for action in FACIAL_ACTIONS
               if result.flags.get(action.name)]
    names = ", ".join(present) if present else "no facial action"
    return [f"{names} — {len(present)} of {len(FACIAL_ACTIONS)}",
            "measured against this baby's rest face" if result.calibrated
            else "measured against an adult reference face (not calibrated at rest)"]


def action_heatmap(crop: np.ndarray, *, landmarks: np.ndarray | None, result: NfcsResult,
                   thresholds: dict[str, float]) -> np.ndarray | None:
    """``NfcsPredictor.evidence`` of one crop: each action's facial regions (``faces.regions``
    on ``landmarks``) lit by its intensity over its threshold (0–1), blurred with σ = 1/30 of
    the crop's shorter side; None without landmarks or for a face that cannot be scored."""
    from neopain.faces.regions import REGIONS, region_map

    if landmarks is None or not result.assessable:
        return None
    labels = region_map(crop.shape[:2], landmarks=landmarks)
    heat = np.zeros(crop.shape[:2], np.float32)
    for name in ACTIONS:
        weight = float(np.clip(result.intensities[name] / thresholds[name], 0.0, 1.0))
        if weight < MIN_EVIDENCE:
            continue
        for region in ACTION_REGIONS[name]:
            inside = labels == REGIONS.index(region)
            heat[inside] = np.maximum(heat[inside], weight)
    return cv2.GaussianBlur(heat, (0, 0), max(1.0, min(crop.shape[:2]) / 30))


def dan_score(predictions: Sequence[Prediction]) -> dict[str, float] | None:
    """``NfcsPredictor.window_score``: the DAN facial score of the scorer's predictions among
    ``predictions``; None when there are none."""
    from neopain.scoring.dan import score_window

    results = [result for p in predictions if (result := result_of(p)) is not None]
    if not results:
        return None
    window = score_window(results)
    return {"score": window.dan, "of": 4, "frames": window.frames,
            "assessable": window.assessable}
