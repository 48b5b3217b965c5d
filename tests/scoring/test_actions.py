"""NFCS measurements on landmark arrays: head pose and face size do not change them, each
action moves its own intensity by the amount the landmarks moved, a smile is not a horizontal
stretch, the confidence agrees with the count, and bad input fails naming what is valid."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neopain.scoring import (
    ACTIONS,
    POPULATION_REFERENCE,
    NfcsScorer,
    ScoringError,
    intensities,
    measure,
    pain_probability,
)
from neopain.scoring.actions import CANONICAL_IOD
from neopain.scoring.canonical import CANONICAL_POINTS, canonical_landmarks
from neopain.scoring.nfcs import UNASSESSABLE_PROB, to_prediction


def canonical() -> np.ndarray:
    """The canonical face as a full (468, 3) mesh (points scoring does not use at 0)."""
    return np.nan_to_num(canonical_landmarks())


def rotation(*, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Head rotation (column convention) whose pose reads (yaw, pitch, roll) degrees."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    turn = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    nod = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    tilt = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return tilt @ nod @ turn


def posed(points: np.ndarray, head: np.ndarray, *, scale: float = 30.0) -> np.ndarray:
    """The face turned by ``head``, scaled to pixels and moved into an image."""
    return scale * points @ head.T + np.array([320.0, 240.0, 0.0])


def test_canonical_points_are_mirror_symmetric():
    # the coordinates were copied by hand from canonical_face_model.obj: a typo breaks symmetry
    points = CANONICAL_POINTS
    for index, (x, y, z) in points.items():
        mirrors = [i for i, (mx, my, mz) in points.items()
                   if abs(mx + x) < 1e-6 and abs(my - y) < 1e-6 and abs(mz - z) < 1e-6]
        assert mirrors, f"canonical point {index} has no mirror image"


def test_the_canonical_face_is_the_population_reference():
    values = intensities(measure(canonical()))
    for name in ACTIONS:
        if name == "open_lips":  # the canonical mouth is slightly open; the reference closed
            assert values[name] == pytest.approx(0.09, abs=0.01)
        else:
            assert values[name] == pytest.approx(0.0, abs=1e-9), name


@pytest.mark.parametrize(("yaw", "pitch", "roll"), [(25, 0, 0), (-25, 0, 0), (0, 20, 0),
                                                   (0, -20, 0), (0, 0, 35), (0, 0, -60),
                                                   (15, -10, 30)])
def test_head_pose_and_face_size_do_not_change_the_measurements(yaw, pitch, roll):
    still = measure(canonical())
    turned = measure(posed(canonical(), rotation(yaw=yaw, pitch=pitch, roll=roll)))
    for name in ("brow_height", "eye_opening", "lip_gap", "mouth_width", "corner_lift",
                 "jaw_length", "nose_wing", "cheek"):
        assert getattr(turned, name) == pytest.approx(getattr(still, name), abs=1e-9), name
    if (yaw, pitch) == (0, 0) or (pitch, roll) == (0, 0) or (yaw, roll) == (0, 0):
        assert (turned.yaw, turned.pitch, turned.roll) == pytest.approx((yaw, pitch, roll),
                                                                        abs=1e-6)


def test_pose_signs_follow_the_image():
    # yaw > 0: the face turns towards the image right, so its nose tip moves right
    turned = posed(canonical(), rotation(yaw=20))
    assert turned[1, 0] > posed(canonical(), rotation())[1, 0]
    assert measure(turned).yaw > 0
    # roll > 0: clockwise in the image (y down): the image-right eye sits lower
    tilted = posed(canonical(), rotation(roll=20))
    assert tilted[263, 1] > tilted[33, 1]
    assert measure(tilted).roll == pytest.approx(20)


def moved(points: np.ndarray, indices, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    out = points.copy()
    out[list(indices), 0] += dx
    out[list(indices), 1] += dy
    return out


BROWS = (55, 65, 52, 107, 66, 105, 285, 295, 282, 336, 296, 334)


def score(points: np.ndarray) -> dict[str, float]:
    return intensities(measure(points))


def test_each_action_moves_by_what_its_landmarks_moved():
    face = canonical()
    lowered = score(moved(face, BROWS, dy=0.3))
    assert lowered["brow_bulge"] == pytest.approx(0.3 / CANONICAL_IOD)
    raised = score(moved(face, BROWS, dy=-0.3))
    assert raised["brow_bulge"] == pytest.approx(-0.3 / CANONICAL_IOD)

    upper, lower = (160, 159, 158, 387, 386, 385), (144, 145, 153, 373, 374, 380)
    gaps = face[list(lower), 1] - face[list(upper), 1]
    squeezed = face.copy()
    squeezed[list(upper), 1] += 0.6 * gaps  # upper lids 60% of the way down
    assert score(squeezed)["eye_squeeze"] == pytest.approx(0.6, abs=0.08)

    jaw = face[152, 1] - face[2, 1]
    assert score(moved(face, (152,), dy=0.2 * jaw))["vertical_mouth_stretch"] == pytest.approx(0.2)

    width = face[291, 0] - face[61, 0]
    wide = moved(moved(face, (291,), dx=0.1 * width), (61,), dx=-0.1 * width)
    assert score(wide)["horizontal_mouth_stretch"] == pytest.approx(0.2)
    assert score(wide)["lip_purse"] == pytest.approx(-0.2)
    narrow = moved(moved(face, (291,), dx=-0.1 * width), (61,), dx=0.1 * width)
    assert score(narrow)["lip_purse"] == pytest.approx(0.2)

    apart = score(moved(face, (14, 87, 317), dy=0.5))
    assert apart["open_lips"] - score(face)["open_lips"] == pytest.approx(0.5 / CANONICAL_IOD,
                                                                          rel=0.15)
    wings = face[[98, 327], 1].mean() - face[[133, 362], 1].mean()
    lifted = score(moved(face, (98, 327), dy=-0.3 * wings))
    assert lifted["nasolabial_furrow"] == pytest.approx(0.15)


def test_a_smile_is_not_a_horizontal_stretch():
    # a smile widens the mouth by lifting the corners; crying pulls them out and down
    face = canonical()
    width = face[291, 0] - face[61, 0]
    wide = moved(moved(face, (291,), dx=0.15 * width), (61,), dx=-0.15 * width)
    crying = score(moved(wide, (61, 291), dy=0.2))
    smiling = score(moved(wide, (61, 291), dy=-0.2 * CANONICAL_IOD))
    assert crying["horizontal_mouth_stretch"] == pytest.approx(0.3)
    assert smiling["horizontal_mouth_stretch"] == 0.0
    assert smiling["lip_purse"] == pytest.approx(-0.3)  # still wider, just not counted


@pytest.mark.parametrize("count_threshold", range(1, 8))
def test_the_confidence_reads_pain_exactly_when_the_count_is_reached(count_threshold):
    rng = np.random.default_rng(count_threshold)
    thresholds = NfcsScorer().thresholds
    for _ in range(300):
        values = {name: float(rng.uniform(-1.5, 2.5) * t) for name, t in thresholds.items()}
        count = sum(values[name] >= thresholds[name] for name in thresholds)
        prob = pain_probability(values, thresholds, count_threshold=count_threshold)
        assert (prob >= 0.5) == (count >= count_threshold)
        name = str(rng.choice(list(thresholds)))
        stronger = {**values, name: values[name] + 0.5 * thresholds[name]}
        assert pain_probability(stronger, thresholds, count_threshold=count_threshold) >= prob


def test_the_confidence_is_the_distance_to_the_other_decision():
    thresholds = NfcsScorer().thresholds
    names = list(thresholds)
    calm = {name: 0.0 for name in names}  # every missing action one threshold-width away
    # three flagged, the weakest one threshold-width above its threshold: one must drop
    pained = {**calm, names[0]: 2 * thresholds[names[0]], names[1]: 3 * thresholds[names[1]],
              names[2]: 4 * thresholds[names[2]]}
    assert pain_probability(pained, thresholds, count_threshold=3) == pytest.approx(
        1 / (1 + math.exp(-2.0)))  # 0.88
    # four flagged: two must drop (the two weakest, 1 + 2 widths)
    more = {**pained, names[3]: 10 * thresholds[names[3]]}
    assert pain_probability(more, thresholds, count_threshold=3) == pytest.approx(
        1 / (1 + math.exp(-2.0 * 3)))
    # one flagged: two more must rise, one width each
    assert pain_probability({**calm, names[0]: thresholds[names[0]]}, thresholds,
                            count_threshold=3) == pytest.approx(1 / (1 + math.exp(4.0)))
    assert pain_probability(pained, thresholds, count_threshold=3, gain=4.0) == pytest.approx(
        1 / (1 + math.exp(-4.0)))


def test_scored_result_carries_flags_count_and_details():
    scorer = NfcsScorer()
    face = canonical()
    width = face[291, 0] - face[61, 0]
    pained = moved(moved(moved(face, BROWS, dy=0.4), (291,), dx=0.1 * width), (61,),
                   dx=-0.1 * width)  # brow bulge, horizontal stretch, and the open lips
    result = scorer.score(posed(pained, rotation(roll=10)))
    assert result.actions == ("brow_bulge", "open_lips", "horizontal_mouth_stretch")
    assert result.count == 3 and result.pain and result.prob_pain >= 0.5
    prediction = to_prediction(result)
    assert prediction.label == "pain" and prediction.model == "nfcs"
    assert prediction.details["count"] == 3 and prediction.details["brow_bulge_flag"] == 1
    assert prediction.details["roll"] == pytest.approx(10, abs=0.1)
    assert NfcsScorer(count_threshold=4).score(pained).pain is False


def test_a_face_turned_too_far_is_not_scored():
    result = NfcsScorer().score(posed(canonical(), rotation(yaw=45)))
    assert not result.assessable and result.count == 0
    assert result.prob_pain == UNASSESSABLE_PROB
    assert "yaw 45°" in result.reason and "±30°" in result.reason
    assert result.details["assessable"] == 0 and result.details["landmarks"] == 1
    missing = NfcsScorer().score(None)
    assert not missing.assessable and missing.details["landmarks"] == 0
    assert NfcsScorer(max_yaw=50).score(posed(canonical(), rotation(yaw=45))).assessable


def test_calibration_makes_the_rest_face_the_reference():
    face = canonical()
    rest = moved(face, (14, 87, 317), dy=0.8)  # lips resting apart
    scorer = NfcsScorer().calibrate([rest, posed(rest, rotation(roll=5))])
    assert scorer.rest_frames_ == 2
    assert not scorer.score(rest).flags["open_lips"]
    assert NfcsScorer().score(rest).flags["open_lips"]
    assert scorer.reference.lip_gap == pytest.approx(measure(rest).lip_gap)
    assert POPULATION_REFERENCE.lip_gap == 0.0


@pytest.mark.parametrize(("points", "message"), [
    (np.zeros((10, 3)), r"shape \(10, 3\); valid: face mesh landmarks, \(468, 3\) or \(478, 3\)"),
    (np.zeros((468, 2)), r"shape \(468, 2\)"),
    (np.full((468, 3), np.nan), "NaN or infinite"),
])
def test_bad_landmarks_fail_naming_what_is_valid(points, message):
    with pytest.raises(ScoringError, match=message):
        NfcsScorer().score(points)


@pytest.mark.parametrize(("options", "message"), [
    ({"count_threshold": 0}, r"count_threshold=0 is not valid; valid: a whole number from 1 to 7"),
    ({"count_threshold": 2.5}, "count_threshold=2.5"),
    ({"thresholds": {"brow": 0.1}}, r"unknown action 'brow'; valid: brow_bulge, eye_squeeze"),
    ({"thresholds": {"eye_squeeze": -1}}, r"thresholds\['eye_squeeze'\]=-1 is not valid"),
    ({"max_yaw": 0}, r"max_yaw=0 is not valid; valid: a number in \(0, 90\]"),
])
def test_bad_settings_fail_naming_them(options, message):
    with pytest.raises(ScoringError, match=message):
        NfcsScorer(**options)


def test_calibration_without_a_usable_rest_face_fails_clearly():
    with pytest.raises(ScoringError, match="at least one rest face"):
        NfcsScorer().calibrate([])
    with pytest.raises(ScoringError, match="none of the 1 rest face"):
        NfcsScorer().calibrate([posed(canonical(), rotation(yaw=60))])
    with pytest.raises(ScoringError, match=r"rest face 1: .*shape \(5, 3\)"):
        NfcsScorer().calibrate([canonical(), np.zeros((5, 3))])
