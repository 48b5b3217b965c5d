"""The stream pipeline following the face (``Assessor(redetect_every=N)``, issue 21 point 5):
the states agree with per-frame detection on a moving clip of real faces, the detector runs
on about one frame in N, ``nfcs`` scores the tracked landmarks instead of meshing each crop
again (through the server's shared-model wrapper too), a model that cannot use landmarks gets
the same crop as before, ``reset`` forgets the track and ``close`` frees it.

The clip is ``benchmarks/agent_tracking.py``'s: the astronaut and Grace Hopper moved and scaled
across a 640×480 frame, in stretches warped into a pain face, each leaving the frame a while.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from neopain.errors import NeopainError
from neopain.faces.crop import CropRule
from neopain.faces.landmarks import FaceMesh
from neopain.faces.mediapipe import MediaPipeShortRange
from neopain.monitor.pipeline import Assessor
from neopain.prediction import Prediction, Predictor
from neopain.scoring import NfcsPredictor
from neopain.server.model import SharedPredictor

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from agent_tracking import FPS, MovingFaceClip  # noqa: E402

N = 10


class CountingDetector(MediaPipeShortRange):
    """The bedside detector, counting the frames it ran on; ``closed`` counts ``close`` calls."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.calls = self.closed = 0

    def detect(self, image, *, prior=None):
        self.calls += 1
        return super().detect(image, prior=prior)

    def close(self) -> None:
        self.closed += 1
        super().close()


class CountingMesh(FaceMesh):
    """The NFCS predictor's own crop mesh, counting its calls."""

    calls = 0

    def landmarks(self, image):
        self.calls += 1
        return super().landmarks(image)


def counting_nfcs() -> NfcsPredictor:
    predictor = NfcsPredictor()
    predictor._mesh = CountingMesh(refine=True)
    return predictor


class Crops(Predictor):
    """A model that only needs the box: records its crops, P(pain) 0.2."""

    name = "crops"
    crop = CropRule.exact_box()

    def __init__(self) -> None:
        self.crops = []

    def predict_crops(self, crops):
        self.crops += list(crops)
        return [Prediction(0.2, "nopain", 0.5, self.name) for _ in crops]


@pytest.fixture(scope="module")
def clip() -> MovingFaceClip:
    return MovingFaceClip(200, gap=20)


def test_states_agree_with_per_frame_detection_and_the_detector_runs_one_frame_in_n(clip):
    tracked_model, detected_model = counting_nfcs(), counting_nfcs()
    with CountingDetector() as tracked_detector, CountingDetector() as detected_detector, \
            tracked_model, detected_model, \
            Assessor(tracked_model, detector=tracked_detector, redetect_every=N) as tracking, \
            Assessor(detected_model, detector=detected_detector) as per_frame:
        pairs = []
        for i in range(len(clip)):
            image, _ = clip.frame(i)
            pairs.append((tracking.step(image, time_s=i / FPS).held_state,
                          per_frame.step(image, time_s=i / FPS).held_state))
    states = [held for held, _ in pairs]
    assert states.count("pain") >= 40 and states.count("nopain") >= 40  # the clip moves states
    assert np.mean([held != detected for held, detected in pairs]) <= 0.03
    absent = sum(clip.frame(i)[1] is None for i in range(len(clip)))
    assert detected_detector.calls == len(clip)
    assert tracked_detector.calls <= len(clip) // N + absent + 2 * clip.gap
    # the crops of followed faces were not meshed again: only those the detector found
    assert tracked_model._mesh.calls <= tracked_detector.calls
    assert detected_model._mesh.calls == len(clip) - absent


def test_nfcs_behind_the_servers_shared_model_scores_the_tracked_landmarks(clip):
    model = counting_nfcs()
    with SharedPredictor(model) as shared, Assessor(shared, redetect_every=N) as assessor:
        results = [assessor.step(clip.frame(i)[0], time_s=i / FPS) for i in range(30)]
    assert all(result.prediction.assessable for result in results)
    assert model._mesh.calls <= 30 // N + 1


def test_a_model_that_only_needs_the_box_gets_the_crop_it_always_got(clip):
    model = Crops()
    with Assessor(model, redetect_every=N) as assessor:
        for i in range(12):
            image, _ = clip.frame(i)
            result = assessor.step(image, time_s=i / FPS)
            assert result.face.landmarks is not None or i % N == 0
            np.testing.assert_array_equal(model.crops[-1],
                                          model.crop.cut(image, box=result.face.box))
    assert result.state == "nopain"


class WalkingMesh(FaceMesh):
    """A mesh whose face walks left a quarter of its width a frame, out of the frame."""

    def __init__(self, points) -> None:
        super().__init__(video=True)
        self.points, self.steps = points, 0

    def landmarks(self, image):
        width = np.ptp(self.points[:, 0])
        self.steps += 1
        return self.points - np.array([0.25 * width * self.steps, 0, 0], dtype=np.float32)


class FirstFaceOnly(MediaPipeShortRange):
    """The detector finding the face on the first frame, then none (the face has gone)."""

    calls = 0

    def detect(self, image, *, prior=None):
        self.calls += 1
        return super().detect(image, prior=prior) if self.calls == 1 else []


@pytest.mark.parametrize("rule", [CropRule.exact_box(), CropRule.padded_square(0.25)],
                         ids=["face_box", "square"])
def test_a_face_tracked_off_the_frame_ends_as_no_face_not_an_error(clip, rule):
    # the reviewer's case: the followed box drifted step by step past the left edge
    # ([-50, 100, 10, 160] then [-65, 100, -5, 160], each overlapping the last by 0.6) and
    # cut_face raised "face box ... lies outside the 640×480 image" out of Assessor.step
    model = Crops()
    model.crop = rule
    image = clip.frame(0)[0]
    with FaceMesh(refine=True) as mesh:
        points = mesh.landmarks(image)
    with FirstFaceOnly() as detector, Assessor(model, detector=detector,
                                               redetect_every=1000) as assessor:
        assert assessor.step(image, time_s=0.0).face is not None
        assessor.tracker_._mesh.close()  # the real one, replaced by the stub
        assessor.tracker_._mesh = WalkingMesh(points)
        faces = [assessor.step(image, time_s=i / FPS).face for i in range(1, 20)]
    assert faces[0] is not None and faces[0].landmarks is not None  # followed a while
    gone = faces.index(None)
    assert gone >= 5 and all(face is None for face in faces[gone:])  # then gone for good
    assert detector.calls >= 2


def test_reset_forgets_the_track_and_close_frees_it_but_not_a_given_detector(clip):
    with CountingDetector() as detector:
        assessor = Assessor(Crops(), detector=detector, redetect_every=N)
        for i in range(3):
            assessor.step(clip.frame(i)[0], time_s=i / FPS)
        assert detector.calls == 1
        assessor.reset()
        assessor.step(clip.frame(3)[0], time_s=0.0)
        assert detector.calls == 2  # the new stream's first frame is detected afresh
        tracker = assessor.tracker_
        assessor.close()
        assessor.close()
        assert assessor.tracker_ is None and tracker._mesh._closed
        assert detector.closed == 0


@pytest.mark.parametrize("every", [-1, 1.5, True, None])
def test_bad_redetect_every_is_named(every):
    with pytest.raises(NeopainError, match="redetect_every"):
        Assessor(Crops(), redetect_every=every)
