"""Following a face instead of detecting it in every frame (issue 21, point 5): the tracked box
stays on the true face of a moving clip, the detector runs only on the first frame, when the
track is lost and every N frames, a face that leaves is noticed at once (no stale box), reset
forgets the track, and a tracked face's crop carries its landmarks in the crop's pixels.

The clip is ``benchmarks/agent_tracking.py``'s: real faces (the astronaut, Grace Hopper) moved
and scaled across a 640×480 frame, with a known box per frame.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from neopain.faces.base import DetectorError, Face, FaceDetector, iou
from neopain.faces.crop import CropRule
from neopain.faces.landmarks import FaceMesh, LandmarkError, MeshedCrop, landmarks_of
from neopain.faces.mediapipe import MediaPipeShortRange
from neopain.faces.tracking import FaceTracker, cut_face

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from agent_tracking import MovingFaceClip  # noqa: E402

N = 10


def resident_bytes() -> int:
    """This process's resident set size, from /proc/self/statm (pages)."""
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class CountingDetector(MediaPipeShortRange):
    """The bedside detector, recording how many frames it ran on."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.calls = 0

    def detect(self, image, *, prior=None):
        self.calls += 1
        return super().detect(image, prior=prior)


@pytest.fixture(scope="module")
def clip() -> MovingFaceClip:
    return MovingFaceClip(160, gap=20)


@pytest.fixture
def detector():
    with CountingDetector() as detector:
        yield detector


def follow(clip, tracker, detector, frames):
    """(face, true box, whether the detector ran) per frame."""
    out = []
    for i in frames:
        image, truth = clip.frame(i)
        calls = detector.calls
        out.append((tracker.find(image), truth, detector.calls > calls))
    return out


def test_the_tracked_box_stays_on_the_true_face_of_a_moving_clip(clip, detector):
    with FaceTracker(detector, redetect_every=N) as tracker:
        seen = follow(clip, tracker, detector, range(len(clip)))
    tracked = [(face, truth) for face, truth, detected in seen if not detected]
    assert sum(face is not None for face, _ in tracked) >= 100  # most frames were followed
    for face, truth in tracked:
        if truth is not None:
            assert face is not None and face.landmarks is not None
            assert iou(face.box, truth) >= 0.7
    assert np.mean([iou(face.box, truth) for face, truth, _ in seen
                    if truth is not None]) >= 0.8


def test_tracked_boxes_keep_the_detectors_convention(clip, detector):
    # the box drawn from the landmarks is placed where the detector's own box would be (the
    # landmarks' bare bounding box overlaps it by about 0.83 on this clip)
    overlaps = []
    with FaceTracker(detector, redetect_every=N) as tracker, MediaPipeShortRange() as own:
        for i in range(len(clip) // 2 - clip.gap):
            image, _ = clip.frame(i)
            face = tracker.find(image)
            overlaps.append(iou(face.box, own.detect(image)[0].box))
    assert np.mean(overlaps) >= 0.87


def test_the_detector_runs_on_the_first_frame_every_n_frames_and_when_the_face_is_lost(
        clip, detector):
    with FaceTracker(detector, redetect_every=N) as tracker:
        seen = follow(clip, tracker, detector, range(len(clip) // 2))
    ran = [i for i, (_, _, detected) in enumerate(seen) if detected]
    leaving = len(clip) // 2 - clip.gap  # from here the face slides out of the frame, fast
    # with the face in view and moving smoothly: frame 0, then every N frames exactly
    assert [i for i in ran if i < leaving] == list(range(0, leaving, N))
    # the face gone: the detector looks in every frame until it comes back
    gone = [i for i, (_, truth, _) in enumerate(seen) if truth is None]
    assert gone and set(gone) <= set(ran)
    assert tracker.detections_ == detector.calls


def test_a_face_that_leaves_the_frame_leaves_no_stale_box(clip, detector):
    with FaceTracker(detector, redetect_every=N) as tracker:
        seen = follow(clip, tracker, detector, range(len(clip) // 2))
    gone = [face for face, truth, _ in seen if truth is None]
    assert len(gone) >= 10
    assert all(face is None for face in gone)


def test_reset_forgets_the_track(clip, detector):
    with FaceTracker(detector, redetect_every=N) as tracker:
        follow(clip, tracker, detector, range(3))
        calls = detector.calls
        tracker.find(clip.frame(3)[0])
        assert detector.calls == calls  # followed
        tracker.reset()
        tracker.find(clip.frame(4)[0])
        assert detector.calls == calls + 1  # searched afresh


def test_a_face_jumping_away_is_detected_again(clip, detector):
    # the astronaut near the middle, then Grace Hopper 150 px to the right
    with FaceTracker(detector, redetect_every=1000) as tracker:
        follow(clip, tracker, detector, range(3))
        calls = detector.calls
        elsewhere = len(clip) // 2 + 33
        face = tracker.find(clip.frame(elsewhere)[0])
    assert detector.calls == calls + 1
    assert face is not None and iou(face.box, clip.frame(elsewhere)[1]) >= 0.7


class ScriptedMesh(FaceMesh):
    """A mesh whose landmarks are given in turn (a mesh that jumps to another face)."""

    def __init__(self, script) -> None:
        super().__init__(video=True)
        self.script = list(script)

    def landmarks(self, image):
        return self.script.pop(0)


class BoxOf(FaceDetector):
    """Finds a face around the given landmarks."""

    default_threshold = 0.0

    def __init__(self, script) -> None:
        super().__init__()
        self.script, self.calls = list(script), 0

    def _detect(self, image, *, prior):
        self.calls += 1
        points = self.script.pop(0)
        return [Face(tuple(points[:, :2].min(axis=0)) + tuple(points[:, :2].max(axis=0)), 0.9)]


def test_a_mesh_that_jumps_to_another_place_is_checked_by_the_detector(clip):
    with FaceMesh(refine=True) as mesh:
        here = mesh.landmarks(clip.frame(0)[0])
    there = here + np.array([200.0, 0.0, 0.0], dtype=np.float32)
    detector = BoxOf([here, there])
    with FaceTracker(detector, redetect_every=1000) as tracker:
        tracker._mesh = ScriptedMesh([here, here, there])
        image = clip.frame(0)[0]
        tracker.find(image), tracker.find(image)
        assert detector.calls == 1
        face = tracker.find(image)
    assert detector.calls == 2 and face.box[0] > here[:, 0].max()


def test_a_mesh_on_another_face_than_the_detectors_gives_no_landmarks_and_no_track(clip):
    with FaceMesh(refine=True) as mesh:
        here = mesh.landmarks(clip.frame(0)[0])
    there = here + np.array([200.0, 0.0, 0.0], dtype=np.float32)
    detector = BoxOf([here, here])
    with FaceTracker(detector, redetect_every=1000) as tracker:
        tracker._mesh = ScriptedMesh([there, there])
        image = clip.frame(0)[0]
        face = tracker.find(image)
        assert face.landmarks is None and face.box[2] < there[:, 0].min()
        tracker.find(image)
    assert detector.calls == 2  # not followed: detected again


def test_a_tracked_crop_carries_the_landmarks_in_its_own_pixels(clip, detector):
    image, _ = clip.frame(30)
    with FaceTracker(detector) as tracker, FaceMesh(refine=True) as mesh:
        tracker.find(clip.frame(29)[0])
        face = tracker.find(image)
        assert face.landmarks is not None
        for rule in (CropRule.padded_square(0.25), CropRule.exact_box(), CropRule.whole_image()):
            crop = cut_face(image, face, rule=rule)
            assert isinstance(crop, MeshedCrop)
            np.testing.assert_array_equal(crop, rule.cut(image, box=face.box))
            own = mesh.landmarks(np.ascontiguousarray(crop))
            iod = np.linalg.norm(own[33, :2] - own[263, :2])
            assert np.abs(landmarks_of(crop)[:, :2] - own[:, :2]).mean() < 0.05 * iod


def test_only_the_crop_itself_carries_landmarks(clip):
    crop = MeshedCrop(np.zeros((8, 8, 3), np.uint8), landmarks=np.ones((478, 3)))
    assert landmarks_of(crop).shape == (478, 3)
    for derived in (crop[1:], crop.copy(), crop + 1, np.zeros((8, 8, 3), np.uint8)):
        assert landmarks_of(derived) is None
    with pytest.raises(LandmarkError, match="landmarks has shape"):
        MeshedCrop(crop, landmarks=np.ones((5, 2)))


@pytest.mark.parametrize("every", [0, -1, 2.5, True, "10"])
def test_bad_redetect_every_is_named(every):
    with pytest.raises(DetectorError, match="redetect_every"):
        FaceTracker(MediaPipeShortRange(), redetect_every=every)


def test_close_frees_the_mesh_never_the_detector_and_is_safe_twice(clip, detector):
    tracker = FaceTracker(detector)
    tracker.find(clip.frame(0)[0])
    tracker.close()
    tracker.close()
    with pytest.raises(LandmarkError, match="closed"):
        tracker.find(clip.frame(1)[0])
    assert detector.detect(clip.frame(1)[0])  # the caller's detector still works


@pytest.mark.slow
def test_trackers_closed_in_a_loop_give_their_memory_back(clip, detector):
    image = clip.frame(0)[0]

    def one() -> None:
        with FaceTracker(detector) as tracker:
            tracker.find(image)

    one()
    gc.collect()
    before = resident_bytes()
    for _ in range(15):
        one()
    gc.collect()
    assert (resident_bytes() - before) / (1 << 20) < 60  # an unclosed mesh keeps about 18 MB each
