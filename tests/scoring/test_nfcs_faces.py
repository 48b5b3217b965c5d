"""The NFCS scorer on a real face: the astronaut's neutral (smiling) face shows at most one
action and no pain; each landmark-driven warp, with the face mesh re-run on the warped image,
flags its own action; three or more together read as pain; a rest face with parted lips,
used for calibration, stops open lips from counting; and ``NfcsPredictor`` never raises on a
crop without a face."""

from __future__ import annotations


import cv2
import numpy as np
import pytest

import face_warps
from neopain.faces.base import create_detector
from neopain.faces.landmarks import LandmarkError
from neopain.prediction import load_predictor
from neopain.scoring import NfcsPredictor, NfcsScorer

# warp → the actions it must flag, scored against the population reference
UNCALIBRATED = {
    "lower_brows": {"brow_bulge"},
    "narrow_eyes": {"eye_squeeze"},
    "stretch_mouth": {"horizontal_mouth_stretch"},
}
# warp → the actions it must flag (and no others) against the neutral face as rest face
CALIBRATED = {
    "lower_brows": {"brow_bulge"},
    "narrow_eyes": {"eye_squeeze"},
    "part_lips": {"open_lips"},
    "stretch_mouth": {"horizontal_mouth_stretch"},
    "drop_jaw": {"vertical_mouth_stretch", "open_lips"},  # a jaw drop parts the lips too
    "purse_lips": {"lip_purse"},
}


@pytest.fixture(scope="module")
def calibrated(face_points) -> NfcsScorer:
    return NfcsScorer().calibrate([face_points])


def test_the_neutral_face_shows_at_most_one_action_and_no_pain(face_points):
    result = NfcsScorer().score(face_points)
    assert result.assessable
    assert result.count <= 1, result.actions  # her smile parts the lips (teeth show)
    assert not result.pain and result.prob_pain < 0.5
    assert abs(result.measurements.yaw) < 10 and abs(result.measurements.pitch) < 15


@pytest.mark.parametrize("warp", sorted(UNCALIBRATED))
def test_each_warp_flags_its_action_against_the_population_reference(warp, warped,
                                                                     face_points):
    _, points = warped(warp)
    before, after = NfcsScorer().score(face_points), NfcsScorer().score(points)
    for action in UNCALIBRATED[warp]:
        assert after.flags[action], (warp, action, after.intensities[action])
        assert not before.flags[action], (action, before.intensities[action])
    assert not after.pain, after.actions  # one action (plus the open lips) is not pain


@pytest.mark.parametrize("warp", sorted(CALIBRATED))
def test_each_warp_flags_exactly_its_action_against_the_rest_face(warp, warped, calibrated):
    _, points = warped(warp)
    result = calibrated.score(points)
    assert set(result.actions) == CALIBRATED[warp], result.intensities
    assert result.calibrated and not result.pain


def test_three_or_more_actions_together_read_as_pain(warped, face_points, calibrated):
    _, points = warped("pain_face")
    for scorer in (NfcsScorer(), calibrated):
        result = scorer.score(points)
        assert result.count >= 3 and result.pain and result.prob_pain >= 0.5, result.actions
        assert {"brow_bulge", "eye_squeeze", "horizontal_mouth_stretch"} <= set(result.actions)
    assert NfcsScorer(count_threshold=7).score(points).pain is False


def test_a_rest_face_with_parted_lips_stops_open_lips_from_counting(warped, mesh):
    rest_image, rest_points = warped("part_lips")
    frowning = face_warps.lower_brows(rest_image, rest_points)  # same parted lips, brows down
    points = mesh.landmarks(frowning)
    assert NfcsScorer().score(points).flags["open_lips"]  # uncalibrated: the lips are apart
    result = NfcsScorer().calibrate([rest_points]).score(points)
    assert not result.flags["open_lips"], result.intensities["open_lips"]
    assert result.flags["brow_bulge"]  # calibration hides the rest pose, not new actions


def test_a_rolled_face_scores_like_the_upright_one(face, mesh, face_points):
    height, width = face.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 20, 1.0)  # 20° anticlockwise
    points = mesh.landmarks(cv2.warpAffine(face, matrix, (width, height),
                                           borderMode=cv2.BORDER_REPLICATE))
    upright, rolled = NfcsScorer().score(face_points), NfcsScorer().score(points)
    assert rolled.measurements.roll == pytest.approx(upright.measurements.roll - 20, abs=3)
    assert rolled.actions == upright.actions
    for action, value in upright.intensities.items():
        assert rolled.intensities[action] == pytest.approx(value, abs=0.06), action


def test_warps_are_deterministic(face, face_points):
    first = face_warps.pain_face(face, face_points)
    assert np.array_equal(first, face_warps.pain_face(face, face_points))
    assert not np.array_equal(first, face)
    assert np.array_equal(face_warps.lower_brows(face, face_points, amount=0.0), face)


@pytest.fixture(scope="module")
def crops(face, warped):
    with create_detector("mediapipe-short") as detector:
        out = []
        for image in (face, warped("pain_face")[0]):
            box = detector.detect(image)[0].box
            out.append(NfcsPredictor.crop.cut(image, box=box))
    return out


def test_predictor_scores_crops_and_never_raises_on_a_crop_without_a_face(crops):
    blank = np.full((160, 160, 3), 127, np.uint8)
    with load_predictor("nfcs") as predictor:
        assert isinstance(predictor, NfcsPredictor)
        neutral, pain, nothing = predictor.predict_crops([*crops, blank])
    assert (neutral.label, pain.label) == ("nopain", "pain")
    assert neutral.model == pain.model == "nfcs" and pain.threshold == 0.5
    assert pain.details["count"] >= 3 and pain.details["eye_squeeze_flag"] == 1
    assert pain.details["assessable"] == 1 and "brow_bulge" in pain.details
    assert nothing.prob_pain == 0.5 and nothing.details["landmarks"] == 0
    assert nothing.details["assessable"] == 0


def test_evidence_lights_the_regions_of_the_actions_present(crops, mesh):
    # guards: heat drawn on the wrong part of the face, for absent actions, or for a crop
    # without a face (the bedside and assess --overlays draw exactly this)
    from neopain.faces.regions import region_map, region_shares

    neutral, pain = crops
    blank = np.full((160, 160, 3), 127, np.uint8)
    with NfcsPredictor() as predictor:
        predicted = predictor.predict_crops([neutral, pain])
        heats = predictor.evidence([neutral, pain, blank])
    assert heats[2] is None
    flags = [{name for name, value in p.details.items() if name.endswith("_flag") and value}
             for p in predicted]
    assert flags[0] == {"open_lips_flag"}  # her smile parts the lips: the mouth alone
    assert {"brow_bulge_flag", "eye_squeeze_flag"} <= flags[1]
    shares = [region_shares(heat, region_map(crop.shape[:2], landmarks=mesh.landmarks(crop)))
              for crop, heat in zip((neutral, pain), heats)]
    assert shares[0]["mouth"] > 0.6 and shares[0]["brows"] + shares[0]["eyes"] < 0.02
    assert shares[1]["brows"] + shares[1]["eyes"] + shares[1]["mouth"] > 0.65
    assert shares[1]["brows"] > 0.1 and shares[1]["eyes"] > 0.1
    assert heats[1].max() <= 1.0 and heats[1].min() >= 0.0


def test_predictor_calibrates_on_rest_crops_and_releases_its_mesh(crops):
    predictor = NfcsPredictor(count_threshold=2)
    assert predictor.calibrate_crops([crops[0]]) == 1
    (result,) = predictor.score_crops([crops[0]])
    assert result.calibrated and result.count == 0
    predictor.close()
    predictor.close()  # twice is fine
    with pytest.raises(LandmarkError, match="closed"):
        predictor.predict_crops([crops[0]])
    with NfcsPredictor() as fresh, pytest.raises(Exception, match="no face in the 1 rest crop"):
        fresh.calibrate_crops([np.full((96, 96, 3), 127, np.uint8)])


def test_assess_overlays_draw_the_nfcs_action_regions_on_the_face(warped, tmp_path):
    # the bug guarded: `assess --model nfcs --overlays` drew no heatmap (only exported models
    # had one), while the bedside showed the actions' regions
    from cli_invoke import invoke
    from neopain.faces.landmarks import LEFT_EYE_CONTOUR, RIGHT_EYE_CONTOUR

    image, points = warped("pain_face")
    cv2.imwrite(str(tmp_path / "pain.png"), image)
    code, output = invoke("assess", str(tmp_path / "pain.png"), "--model", "nfcs",
                          "--overlays", str(tmp_path / "drawn"))
    assert code == 0, output
    drawn = cv2.imread(str(tmp_path / "drawn" / "0000_pain.png")).astype(int)
    before = cv2.imread(str(tmp_path / "pain.png")).astype(int)

    def change(x: float, y: float, r: int = 4) -> float:
        x, y = int(round(x)), int(round(y))
        return float(np.abs(drawn[y - r:y + r, x - r:x + r] - before[y - r:y + r, x - r:x + r])
                     .mean())

    for contour in (LEFT_EYE_CONTOUR, RIGHT_EYE_CONTOUR):  # eye squeeze: both eyes lit
        assert change(*points[list(contour), :2].mean(axis=0)) > 20
    assert change(*points[[13, 14], :2].mean(axis=0)) > 20  # the parted lips
    assert change(*points[10, :2] - [0, 60]) < 2  # above the forehead: no action there
