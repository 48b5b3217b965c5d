"""The stream pipeline: crops as training cut them, smoothing that single frames cannot flip,
``changed`` exactly at state changes, gaps that forget, and detectors released by ``close``.

The predictor and detector here are test doubles driven by the frame: the face box is wherever
the frame is not black, and P(pain) is the crop's mean brightness / 255, so a test writes the
probability it wants into the pixels.
"""

from __future__ import annotations

import numpy as np
import pytest

from neopain.training.dataset import _crop as training_crop
from neopain.errors import NeopainError
from neopain.faces.base import Face, FaceDetector
from neopain.monitor import pipeline
from neopain.faces.crop import CropRule
from neopain.monitor.pipeline import Assessor, Smoother
from neopain.prediction import Prediction, Predictor

BOX = (20.5, 10.2, 60.7, 58.9)


class BrightBox(FaceDetector):
    """The box around the non-black pixels; no face in an all-black frame."""

    default_threshold = 0.0
    instances: list[BrightBox] = []

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.closed = 0
        BrightBox.instances.append(self)

    def _detect(self, image, *, prior):
        ys, xs = np.nonzero(image.max(axis=2))
        if xs.size == 0:
            return []
        return [Face((float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
                     0.9)]

    def close(self) -> None:
        self.closed += 1


class Brightness(Predictor):
    """P(pain) = mean crop brightness / 255; records the crops it was given."""

    name = "brightness"

    def __init__(self, *, crop: CropRule | None = None) -> None:
        self.crop = crop or CropRule.exact_box()
        self.crops: list[np.ndarray] = []
        self.closed = 0

    def predict_crops(self, crops):
        self.crops += list(crops)
        out = []
        for crop in crops:
            prob = float(crop.mean()) / 255
            out.append(Prediction(prob, "pain" if prob >= 0.5 else "nopain", 0.5, self.name))
        return out

    def close(self) -> None:
        self.closed += 1


def frame(prob: float | None) -> np.ndarray:
    """A 120×160 black frame with a 40×30 face patch whose brightness is ``prob`` × 255."""
    image = np.zeros((120, 160, 3), np.uint8)
    if prob is not None:
        image[30:60, 50:90] = round(prob * 255)
    return image


def run(probs, *, window=5, hysteresis=0.1, fps=10, **kwargs):
    with Assessor(Brightness(), detector=BrightBox(), window=window, hysteresis=hysteresis,
                  **kwargs) as assessor:
        return [assessor.step(frame(p), time_s=i / fps) for i, p in enumerate(probs)]


def test_the_exact_box_rule_cuts_the_box_exactly_as_training_crop_to_face_did():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)
    for box in (BOX, (0.0, 0.0, 100.0, 80.0), (-5.3, 70.2, 30.1, 95.0), (99.2, 3.0, 120.0, 9.5)):
        expected, _, _ = training_crop(image, None, np.array(box))
        assert np.array_equal(CropRule.exact_box().cut(image, box=box), expected)
        left, top, right, bottom = CropRule.exact_box().placement(box, image_shape=image.shape)
        assert expected.shape[:2] == (bottom - top, right - left)
    assert CropRule.whole_image().cut(image, box=None) is image
    square = CropRule.padded_square(0.25).cut(image, box=BOX)
    assert square.shape[0] == square.shape[1] == round((58.9 - 10.2) * 1.5)


@pytest.mark.parametrize("box, rule, says", [
    (None, lambda: CropRule.exact_box(), "needs a face box"),
    ((200, 200, 210, 210), lambda: CropRule.exact_box(), "outside"),
    ((10, 10, 5, 20), lambda: CropRule.exact_box(), "x2 > x1"),
    ((10, 10, 20, 20), lambda: CropRule.padded_square(-0.1), "margin"),
    ((10, 10, 20, 20), lambda: CropRule("face_box", 0.2), "margin"),
    ((10, 10, 20, 20), lambda: CropRule("circle"), "valid: image, face_box, square"),
])
def test_bad_crops_are_named(box, rule, says):
    with pytest.raises(NeopainError, match=says):
        rule().cut(np.zeros((50, 50, 3), np.uint8), box=box)


def test_single_frame_flicker_never_changes_the_state():
    # the bug guarded: a mean over the window (or no smoothing) lets one bright frame among
    # steady frames near the band flip the state and save a snapshot
    rng = np.random.default_rng(1)
    for base, spike in ((0.45, 1.0), (0.55, 0.0)):
        probs = list(base + rng.uniform(-0.03, 0.03, 200))
        for i in range(10, 200, 7):  # isolated spikes, one frame each
            probs[i] = spike
        results = run(probs, hysteresis=0.05)
        assert [r.changed for r in results].count(True) == 1 and results[0].changed
        assert {r.state for r in results} == {"pain" if base > 0.5 else "nopain"}


def test_values_hovering_at_the_threshold_do_not_flicker():
    results = run([0.45, 0.55] * 50)
    assert sum(r.changed for r in results) == 1


def test_a_sustained_change_changes_the_state_once_on_its_first_frame():
    probs = [0.1] * 20 + [0.9] * 20 + [0.1] * 20
    results = run(probs)
    changed = [i for i, r in enumerate(results) if r.changed]
    assert changed == [0, 22, 42]  # the median of 5 turns on the 3rd frame of a new level
    assert [results[i].state for i in changed] == ["nopain", "pain", "nopain"]
    assert results[21].state == "nopain" and results[22].state == "pain"
    assert results[30].smoothed == pytest.approx(round(0.9 * 255) / 255)


def test_no_face_frames_keep_the_state_and_a_long_gap_starts_afresh():
    probs = [0.9] * 5 + [None] * 5 + [0.9] + [None] * 30 + [0.9]
    results = run(probs, max_gap_s=2.0)
    assert results[5].face is None and results[5].prediction is None
    assert results[5].state == "pain" and not results[5].changed
    assert results[10].changed is False  # back after 0.6 s: the same episode
    assert results[30].state == "pain"  # exactly 2.0 s without a face: still kept
    assert results[31].state is None and results[31].smoothed is None  # 2.1 s: forgotten
    assert results[-1].changed and results[-1].state == "pain"


def test_before_any_face_there_is_no_state_and_latency_is_measured():
    results = run([None, None, 0.2])
    assert [r.state for r in results] == [None, None, "nopain"]
    assert [r.changed for r in results] == [False, False, True]
    assert all(r.latency_ms >= 0 for r in results)
    assert results[2].face.box == (50.0, 30.0, 90.0, 60.0)


def test_the_crop_follows_the_predictor_crop_rule():
    predictor = Brightness(crop=CropRule.exact_box())
    with Assessor(predictor, detector=BrightBox()) as assessor:
        assessor.step(frame(0.5), time_s=0.0)
    assert predictor.crops[0].shape == (30, 40, 3)
    predictor = Brightness(crop=CropRule.padded_square(0.5))
    with Assessor(predictor, detector=BrightBox()) as assessor:
        result = assessor.step(frame(0.5), time_s=0.0)
    assert predictor.crops[0].shape == (80, 80, 3)  # 40 px × (1 + 2 × 0.5), black around it
    assert result.prediction.prob_pain < 0.5 * 0.5


def test_time_must_go_forward_until_reset():
    with Assessor(Brightness(), detector=BrightBox()) as assessor:
        assessor.step(frame(0.2), time_s=5.0)
        with pytest.raises(NeopainError, match="goes back"):
            assessor.step(frame(0.2), time_s=4.0)
        assessor.reset()
        assert assessor.step(frame(0.2), time_s=0.0).changed


@pytest.mark.parametrize("options, says", [
    ({"window": 0}, "window=0"),
    ({"hysteresis": 0.6}, "hysteresis=0.6"),
    ({"max_gap_s": 0}, "max_gap_s=0"),
    ({"threshold": 1.0}, "threshold=1.0"),
    ({"detector": 3}, "detector=3"),
])
def test_bad_options_are_named(options, says):
    with pytest.raises(NeopainError, match=says):
        Assessor(Brightness(), **options)


def test_close_releases_the_detector_it_created_but_never_the_predictor_or_a_given_detector(
        monkeypatch):
    monkeypatch.setattr(pipeline, "create_detector", lambda name: BrightBox())
    BrightBox.instances.clear()
    predictor = Brightness()
    for _ in range(200):  # a bedside restarts streams for hours: nothing may stay open
        with Assessor(predictor, detector="bright") as assessor:
            assessor.step(frame(0.3), time_s=0.0)
        assessor.close()  # twice is safe
    assert len(BrightBox.instances) == 200
    assert all(detector.closed == 1 for detector in BrightBox.instances)
    assert predictor.closed == 0
    given = BrightBox()
    with Assessor(predictor, detector=given) as assessor:
        assessor.step(frame(0.3), time_s=0.0)
    assert given.closed == 0


def test_the_smoother_alone():
    smoother = Smoother(window=3, hysteresis=0.1)
    assert smoother.smoothed_ is None
    assert smoother.update(0.8, threshold=0.5) == (0.8, "pain", True)
    assert smoother.update(0.1, threshold=0.5)[1:] == ("pain", False)  # median(0.8, 0.1)=0.45
    assert smoother.update(0.1, threshold=0.5) == (0.1, "nopain", True)


class Blind(Brightness):
    """Brightness, except that very bright faces cannot be assessed (as NFCS without a mesh)."""

    def predict_crops(self, crops):
        return [p if p.prob_pain < 0.95 else Prediction(0.5, "pain", 0.5, self.name,
                                                        assessable=False)
                for p in super().predict_crops(crops)]


def test_faces_the_model_cannot_assess_never_move_the_state():
    """An unassessable face reads P(pain) 0.5 = "pain" by the threshold; fed to the smoother,
    a baby who turns away would drift the monitor into pain and save snapshots."""
    probs = [0.2] * 5 + [0.99] * 10 + [0.2]
    with Assessor(Blind(), detector=BrightBox(), window=3, hysteresis=0.0) as assessor:
        results = [assessor.step(frame(p), time_s=i / 10) for i, p in enumerate(probs)]
    blind = results[5:15]
    assert all(r.face is not None and not r.prediction.assessable for r in blind)
    assert all(r.state == "nopain" and not r.changed for r in blind)
    assert [r.changed for r in results].count(True) == 1  # only the first face


def test_a_face_that_cannot_be_assessed_for_longer_than_max_gap_ends_the_state():
    """A baby turned away for minutes is as unseen as one out of frame: holding the last state
    over unassessable faces counted them as time in pain (and kept a stale state on screen)."""
    probs = [0.2] * 5 + [0.99] * 30 + [0.2]
    with Assessor(Blind(), detector=BrightBox(), window=3, hysteresis=0.0,
                  max_gap_s=2.0) as assessor:
        results = [assessor.step(frame(p), time_s=i / 10) for i, p in enumerate(probs)]
    assert results[24].state == "nopain"  # 2.0 s after the last assessed face: still kept
    assert results[25].state is None and results[25].smoothed is None  # 2.1 s: forgotten
    assert results[-1].changed and results[-1].state == "nopain"  # a fresh start
