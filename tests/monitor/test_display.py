"""The live panel's state and the number shown with it never contradict each other.

Guards issue 19: the page showed the held (hysteresis) state beside the smoothed P(pain) and
read "no pain 47 %" and "PAIN 47 %". Here a fake model drives ``Assessor``'s smoothing into
and through held states (the median past the threshold, not yet past the band), and every
reply's ``shown`` must agree with its ``state``: a number only when it is 50–100 % and is the
confidence in the state beside it, else "borderline" (issue 20 gave "uncertain" to the
referral band, tests/server/test_live_uncertain.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from neopain.faces.base import Face, FaceDetector
from neopain.faces.crop import CropRule
from neopain.monitor.pipeline import Assessor
from neopain.prediction import Prediction, Predictor
from neopain.monitor.display import shown_of, shown_state
from neopain.server.live import reply_of

UNASSESSABLE = 1.0  # a face this bright is one the fake model cannot judge


class WholeFrame(FaceDetector):
    """A face covering the frame; none in an all-black frame."""

    default_threshold = 0.0

    def _detect(self, image, *, prior):
        if not image.any():
            return []
        return [Face((0.0, 0.0, float(image.shape[1]), float(image.shape[0])), 0.9)]


class Brightness(Predictor):
    """P(pain) = mean brightness / 255 with the model threshold ``threshold``."""

    name = "brightness"

    def __init__(self, threshold: float) -> None:
        self.crop = CropRule.exact_box()
        self.threshold = threshold

    def predict_crops(self, crops):
        out = []
        for crop in crops:
            prob = float(crop.mean()) / 255
            label = "pain" if prob >= self.threshold else "nopain"
            out.append(Prediction(prob, label, self.threshold, self.name,
                                  assessable=prob != UNASSESSABLE))
        return out


def frame(prob: float | None) -> np.ndarray:
    image = np.zeros((40, 40, 3), np.uint8)
    if prob is not None:
        image[:] = round(prob * 255)
    return image


def around(threshold: float) -> list[float | None]:
    """Calm, then into the band above the threshold (held no pain), past it (pain), into the
    band below (held pain), past it (no pain again), with a lost face and an unassessable one."""
    low, high = max(0.01, threshold - 0.3), min(0.98, threshold + 0.3)
    inside_up, inside_down = threshold + 0.05, threshold - 0.05
    return ([low] * 5 + [inside_up] * 6 + [None, UNASSESSABLE] + [high] * 5
            + [inside_down] * 6 + [low] * 5)


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.7])
def test_shown_number_agrees_with_the_held_state_in_every_frame(threshold):
    replies = []
    with Assessor(Brightness(threshold), detector=WholeFrame(), window=3,
                  hysteresis=0.1) as assessor:
        for i, prob in enumerate(around(threshold)):
            result = assessor.step(frame(prob), time_s=i * 0.5)
            replies.append(reply_of(result, frame_shape=(40, 40, 3),
                                    shown=shown_of(result, threshold=threshold)))
    held = 0
    held_by_state = {"pain": 0, "nopain": 0}
    for reply in replies:
        shown = reply["shown"]
        if not reply["found"]:
            assert (shown["kind"], shown["text"], shown["number"]) == ("noface", "no face", "–")
            continue
        if not reply["assessable"]:
            assert (shown["kind"], shown["text"], shown["number"]) == \
                ("unassessable", "cannot assess", "–")
            continue
        state, smoothed = reply["state"], reply["smoothed"]
        assert shown["kind"] == state
        assert shown["text"] == {"pain": "PAIN", "nopain": "no pain"}[state]
        on_its_side = smoothed >= threshold if state == "pain" else smoothed < threshold
        sure = smoothed if state == "pain" else 1 - smoothed
        if shown["confidence"] is None:
            assert shown["number"] == "borderline"
            assert not (on_its_side and sure >= 0.5), reply
            held += on_its_side is False
            held_by_state[state] += on_its_side is False
        else:
            assert on_its_side, reply
            assert 0.5 <= shown["confidence"] <= 1
            assert shown["confidence"] == pytest.approx(sure, abs=1e-3)
            assert shown["number"] == f"{round(shown['confidence'] * 100)}%"
            assert 50 <= int(shown["number"].rstrip("%")) <= 100
    assert held >= 4  # the smoothing really went through held states on both sides
    assert held_by_state["pain"] >= 1 and held_by_state["nopain"] >= 1, held_by_state
    states = [r["state"] for r in replies if r["found"] and r["assessable"]]
    assert {"pain", "nopain"} <= set(states)


@pytest.mark.parametrize("smoothed", [None, math.nan, math.inf, -math.inf, 2.0, -1.0])
def test_a_smoothed_value_that_means_nothing_shows_no_number(smoothed):
    for state in ("pain", "nopain"):
        shown = shown_state(state=state, smoothed=smoothed, threshold=0.5)
        assert shown.confidence is None or 0.5 <= shown.confidence <= 1
        assert shown.number == "borderline" or shown.confidence is not None
        # no number at all: a clamped "100%" would pass the two lines above
        assert shown.confidence is None and shown.number == "borderline", (state, smoothed)
        assert shown.kind == state
