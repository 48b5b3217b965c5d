"""The NFCS scorer explains itself on a real face: the lines name exactly the flagged actions
and their number out of the 7 of ``facial_actions.FACIAL_ACTIONS``; a face it cannot assess
(no mesh, head turned, face too small) carries its reason and names no action.

Guards: the live page showed only heatmap blobs, never which actions were present, and a face
that could not be assessed said nothing about why (issue 19)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from neopain.facial_actions import FACIAL_ACTIONS
from neopain.prediction import Prediction
from neopain.scoring import NfcsPredictor, NfcsScorer
from neopain.scoring.explanation import action_text, result_of
from neopain.scoring.nfcs import MIN_CROP_SIDE, to_prediction


@pytest.fixture(scope="module")
def predictor():
    with NfcsPredictor() as model:
        yield model


@pytest.mark.parametrize("warp", ["pain_face", "lower_brows", "narrow_eyes"])
def test_the_lines_name_exactly_the_flagged_actions_and_k_of_7(warp, warped, predictor):
    image, _ = warped(warp)
    prediction = predictor.predict_crops([image])[0]
    flagged = [a.name for a in FACIAL_ACTIONS if prediction.details[f"{a.name}_flag"]]
    lines = predictor.explain(prediction)
    assert lines[0] == f"{', '.join(map(action_text, flagged))} — {len(flagged)} of 7"
    assert len(flagged) == prediction.details["count"]
    if warp == "pain_face":  # the warp's own actions are among them, and it reads as pain
        assert {"brow_bulge", "eye_squeeze", "horizontal_mouth_stretch"} <= set(flagged)
        assert prediction.label == "pain" and len(flagged) >= 3
    assert "adult reference face" in lines[1]


def test_a_calibrated_face_says_it_is_measured_against_the_rest_face(face, warped):
    with NfcsPredictor() as predictor:
        assert predictor.calibrate_crops([face]) == 1
        prediction = predictor.predict_crops([warped("lower_brows")[0]])[0]
        assert predictor.explain(prediction) == ["brow bulge — 1 of 7",
                                                 "measured against this baby's rest face"]


def test_an_unassessable_face_gives_its_reason_and_no_actions(face, face_points, predictor):
    small = cv2.resize(face, (MIN_CROP_SIDE - 8, MIN_CROP_SIDE - 8), interpolation=cv2.INTER_AREA)
    blank = np.full((200, 200, 3), 127, np.uint8)
    too_small, no_mesh = predictor.predict_crops([small, blank])
    turned = to_prediction(NfcsScorer(max_yaw=0.01, max_pitch=0.01).score(face_points))
    assert too_small.reason.startswith("face too small") and "48 px" in too_small.reason
    assert no_mesh.reason == "no face mesh found"
    assert turned.reason.startswith("head turned beyond the limits")
    for prediction in (too_small, no_mesh, turned):
        assert not prediction.assessable and prediction.prob_pain == 0.5
        assert predictor.explain(prediction) == []
    assert predictor.evidence([small]) == [None]
    # a crop just big enough is meshed and scored
    assert predictor.predict_crops([cv2.resize(face, (MIN_CROP_SIDE + 40,) * 2)])[0].assessable


def test_another_models_prediction_reads_back_as_no_nfcs_result():
    assert result_of(Prediction(0.9, "pain", 0.5, "net", details={"logit": 2.0})) is None
    assert result_of(Prediction(0.9, "pain", 0.5, "net", details={
        "count": 3.0, "count_threshold": 3.0, "assessable": 1.0})) is None  # no flags


def test_cross_validation_applies_the_bedsides_face_size_rule(face_points, tmp_path):
    # the bug guarded: `assess` and the monitor read a 40-px face as "face too small" while
    # `train --model nfcs` scored the same face, so a run's metrics counted faces the bedside
    # refuses
    from neopain.data.manifest import Manifest
    from neopain.scoring.folds import NfcsFoldModel
    from neopain.scoring.nfcs import MIN_FACE_SIDE

    import pandas as pd

    scorer = NfcsScorer()
    assert scorer.score(face_points).assessable
    small = scorer.score(face_points, face_side=MIN_FACE_SIDE - 8)
    assert not small.assessable and small.reason.startswith("face too small")
    table = pd.DataFrame({"image": ["a.png", "b.png", "c.png"], "face_box": [
        "[10, 10, 50, 45]", "[10, 10, 90, 100]", ""], "landmarks": ["", "", ""]})
    manifest = Manifest(table=table, root=tmp_path)
    model = NfcsFoldModel()
    assert [model._face_side(manifest, row) for row in range(3)] == [40.0, 90.0, None]
    assert NfcsFoldModel(crop_to_face=False)._face_side(manifest, 1) is None
