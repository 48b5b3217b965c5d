"""The referral band through the smoothing (issue 20, point 5): an assessment turns uncertain
when at least half of the window's frames had a band holding both labels, and back when at most
a quarter do, so neither one odd frame nor a face referred every other frame can flicker it,
and a model without a band never gives uncertain.

The predictor is a test double driven by the frame: the red channel of the face patch is
P(pain) × 255 and a bright green channel marks a frame whose band holds both labels.
"""

from __future__ import annotations

import numpy as np
import pytest

from neopain.faces.crop import CropRule
from neopain.monitor.pipeline import Assessor, Smoother
from neopain.prediction import Prediction, Predictor
from detector_doubles import BrightBox

BOTH = "both"  # a frame whose referral band holds pain and no pain
UNJUDGED = "unjudged"  # a face the model cannot assess


class Banded(Predictor):
    """P(pain) from the red channel; with ``band``, the set is both labels where the green
    channel is bright, else the label alone; without it, no set at all. Blue 255: unassessable."""

    name = "banded"
    crop = CropRule.exact_box()

    def __init__(self, *, band: bool = True) -> None:
        self.band = band

    def predict_crops(self, crops):
        out = []
        for crop in crops:
            prob = float(crop[..., 2].mean()) / 255  # BGR: red is the last channel
            label = "pain" if prob >= 0.5 else "nopain"
            both = crop[..., 1].mean() > 127
            out.append(Prediction(prob, label, 0.5, self.name,
                                  assessable=crop[..., 0].mean() < 250,
                                  prediction_set=("pain|nopain" if both else label)
                                  if self.band else None))
        return out


def frame(prob: float | None, mark: str = "") -> np.ndarray:
    """A black frame with a face patch of P(pain) ``prob`` (None: no face)."""
    image = np.zeros((60, 80, 3), np.uint8)
    if prob is not None:
        image[20:40, 30:60] = (255 if mark == UNJUDGED else 10, 255 if mark == BOTH else 0,
                               round(prob * 255))
    return image


def run(frames, *, band=True, window=5, fps=10):
    with Assessor(Banded(band=band), detector=BrightBox(), window=window,
                  hysteresis=0.1) as assessor:
        return [assessor.step(frame(*f), time_s=i / fps) for i, f in enumerate(frames)]


def test_a_band_that_holds_both_for_most_of_the_window_makes_the_assessment_uncertain():
    pain, both = (0.9, ""), (0.9, BOTH)
    results = run([pain] * 5 + [both] * 5 + [pain] * 5)
    flags = [r.uncertain for r in results]
    # uncertain from the third of five (half the window), until at most one of five is again
    assert flags == [False] * 7 + [True] * 6 + [False] * 2, flags
    assert all(r.state == "pain" for r in results)  # the held state underneath is kept


@pytest.mark.parametrize("at", range(5, 25))
def test_one_uncertain_frame_in_a_window_of_pain_never_makes_it_uncertain(at):
    frames = [(0.9, "")] * 30
    frames[at] = (0.9, BOTH)
    results = run(frames)
    assert not any(r.uncertain for r in results)
    assert all(r.state == "pain" for r in results)


@pytest.mark.parametrize("seed", range(20))
def test_a_model_without_a_band_never_gives_uncertain(seed):
    """Whatever it sees, including every frame marked: the mark means nothing without a band."""
    rng = np.random.default_rng(seed)
    frames = [(float(rng.uniform(0.02, 0.98)), str(rng.choice(["", BOTH, BOTH, UNJUDGED])))
              for _ in range(40)]
    frames = [(None, "") if rng.uniform() < 0.1 else f for f in frames]
    assert not any(r.uncertain for r in run(frames, band=False))


@pytest.mark.parametrize("seed", range(20))
def test_uncertain_turns_on_at_half_and_off_at_a_quarter_of_the_windows_judged_frames(seed):
    """Against a plain count: frames without a face or with one the model cannot judge keep
    the window as it was (and its flag), like the smoothed value."""
    rng = np.random.default_rng(seed)
    window = int(rng.integers(1, 8))
    marks = rng.choice(["", BOTH, UNJUDGED, "none"], size=60, p=[0.45, 0.35, 0.1, 0.1])
    results = run([(None, "") if m == "none" else (0.7, str(m)) for m in marks], window=window)
    kept: list[bool] = []
    held = False
    for mark, result in zip(marks, results, strict=True):
        if mark in ("", BOTH):
            kept = (kept + [mark == BOTH])[-window:]
            held = 4 * sum(kept) > len(kept) if held else 2 * sum(kept) >= len(kept)
        assert result.uncertain == held, (window, kept)


def test_a_face_referred_every_other_frame_does_not_flicker():
    # guards: the panel (and the record's snapshots) switching on every frame between
    # uncertain and pain while 2 or 3 of 5 frames are referred
    results = run([(0.9, BOTH if i % 2 else "") for i in range(40)])
    flags = [r.uncertain for r in results]
    assert sum(a != b for a, b in zip(flags, flags[1:])) == 1 and flags[-1], flags


def test_a_long_gap_forgets_the_band_with_the_window():
    both, gone = (0.9, BOTH), (None, "")
    results = run([both] * 5 + [gone] * 30 + [(0.9, "")], fps=10)
    assert results[4].uncertain and results[20].uncertain  # a short gap keeps it
    assert not results[-1].uncertain  # after max_gap_s the next face starts afresh


def test_the_smoother_alone_counts_the_band():
    smoother = Smoother(window=4, hysteresis=0.1)
    assert not smoother.uncertain_  # empty: nothing to say
    smoother.update(0.8, threshold=0.5, uncertain=True)
    assert smoother.uncertain_  # 1 of 1
    smoother.update(0.8, threshold=0.5)
    smoother.update(0.8, threshold=0.5)
    assert smoother.uncertain_  # 1 of 3: more than a quarter, held
    smoother.update(0.8, threshold=0.5, uncertain=True)
    assert smoother.uncertain_  # 2 of 4
    smoother.update(0.8, threshold=0.5)
    assert not smoother.uncertain_  # 1 of 4: a quarter
    smoother.update(0.8, threshold=0.5)
    assert not smoother.uncertain_  # 1 of 4
    smoother.update(0.8, threshold=0.5, uncertain=True)
    assert smoother.uncertain_  # 2 of 4: half
    smoother.reset()
    assert not smoother.uncertain_
