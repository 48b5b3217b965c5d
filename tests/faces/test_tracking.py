"""Following a face instead of detecting it in every frame (issue 21, point 5): the tracked box
stays on the true face of a moving clip, the detector runs only on the first frame, when the
track is lost and every N frames, a face that leaves is noticed at once (no stale box), reset
forgets the track, a face leaving the frame is followed only while mostly inside it (never a box
the crop refuses), a tracked face's crop carries its landmarks in the crop's pixels, and closed
trackers give their memory back.

The clip is ``benchmarks/agent_tracking.py``'s: real faces (the astronaut, Grace Hopper) moved
and scaled across a 640×480 frame, with a known box per frame.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from neopain.faces.base import DetectorError, Face, FaceDetector, iou
from neopain.faces.crop import CropRule
from neopain.faces.landmarks import FaceMesh, LandmarkError, MeshedCrop, landmarks_of
from neopain.faces.mediapipe import MediaPipeShortRange
from neopain.faces.tracking import MIN_IN_FRAME, FaceTracker, cut_face, in_frame

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from agent_tracking import MovingFaceClip  # noqa: E402

N = 10


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
    """Finds a face around the given landmarks; once they are used up, no face."""

    default_threshold = 0.0

    def __init__(self, script) -> None:
        super().__init__()
        self.script, self.calls = list(script), 0

    def _detect(self, image, *, prior):
        self.calls += 1
        if not self.script:
            return []
        points = self.script.pop(0)
        return [Face(tuple(points[:, :2].min(axis=0)) + tuple(points[:, :2].max(axis=0)), 0.9)]


@pytest.fixture(scope="module")
def here_and_there(clip) -> tuple[np.ndarray, np.ndarray]:
    """The first frame's landmarks, and the same 200 px to the right (another place)."""
    with FaceMesh(refine=True) as mesh:
        here = mesh.landmarks(clip.frame(0)[0])
    return here, here + np.array([200.0, 0.0, 0.0], dtype=np.float32)


def test_a_mesh_that_jumps_to_another_place_is_checked_by_the_detector(clip, here_and_there):
    here, there = here_and_there
    detector = BoxOf([here, there])
    with FaceTracker(detector, redetect_every=1000) as tracker:
        tracker._mesh = ScriptedMesh([here, here, there])
        image = clip.frame(0)[0]
        tracker.find(image), tracker.find(image)
        assert detector.calls == 1
        face = tracker.find(image)
    assert detector.calls == 2 and face.box[0] > here[:, 0].max()


def test_a_mesh_on_another_face_than_the_detectors_gives_no_landmarks_and_no_track(
        clip, here_and_there):
    here, there = here_and_there
    detector = BoxOf([here, here])
    with FaceTracker(detector, redetect_every=1000) as tracker:
        tracker._mesh = ScriptedMesh([there, there])
        image = clip.frame(0)[0]
        face = tracker.find(image)
        assert face.landmarks is None and face.box[2] < there[:, 0].min()
        tracker.find(image)
    assert detector.calls == 2  # not followed: detected again


RULES = (CropRule.padded_square(0.25), CropRule.exact_box(), CropRule.whole_image())


@pytest.mark.parametrize("step", [(-0.25, 0.0), (0.0, -0.25)], ids=["left", "top"])
def test_a_mesh_walking_off_the_frame_loses_the_track_and_never_gives_a_box_outside(clip, step):
    # the reviewer's case: the mesh follows a face sliding out of the frame a quarter of the
    # box a frame (each box overlaps the last by 0.6, so the IoU check alone kept following it
    # until the box lay wholly outside and cut_face raised "lies outside the 640×480 image")
    image = clip.frame(0)[0]
    with FaceMesh(refine=True) as mesh:
        here = mesh.landmarks(image)
    size = here[:, :2].max(axis=0) - here[:, :2].min(axis=0)
    walk = [here + np.array([*(np.array(step) * size * k), 0.0], dtype=np.float32)
            for k in range(20)]  # from the middle to wholly outside, one side of the frame
    assert walk[-1][:, :2].max(axis=0)[step.index(-0.25)] < 0
    detector = BoxOf([here])  # then no face: there is none in the frame any more
    seen = []
    with FaceTracker(detector, redetect_every=1000) as tracker:
        tracker._mesh.close()  # the real one, replaced by the stub
        tracker._mesh = ScriptedMesh(walk)
        for _ in walk:
            calls = detector.calls
            face = tracker.find(image)
            seen.append((face, detector.calls > calls))
            if face is not None:
                for rule in RULES:
                    cut_face(image, face, rule=rule)  # no "lies outside the image"
    followed = [i for i, (face, detected) in enumerate(seen) if not detected]
    assert followed and followed == list(range(1, followed[-1] + 1))  # followed, then lost
    assert all(in_frame(seen[i][0].box, image_shape=image.shape) >= MIN_IN_FRAME
               for i in followed)
    assert all(face is None and detected for face, detected in seen[followed[-1] + 1:])


def test_in_frame_is_the_share_of_the_box_inside_the_image():
    shape = (480, 640, 3)
    assert in_frame((100, 100, 200, 200), image_shape=shape) == 1.0
    assert in_frame((-50, 100, 10, 160), image_shape=shape) == pytest.approx(1 / 6)
    assert in_frame((600, 440, 680, 520), image_shape=shape) == pytest.approx(1 / 4)
    for box in [(-65, 100, -5, 160), (100, -80, 200, 0), (10, 10, 10, 50), (50, 10, 40, 50),
                (float("nan"), 10, 50, 50), (0, 0, float("inf"), 50)]:
        assert in_frame(box, image_shape=shape) == 0.0


def test_a_detected_face_mostly_outside_the_frame_is_not_followed(clip):
    image = clip.frame(0)[0]
    with FaceMesh(refine=True) as mesh:
        here = mesh.landmarks(image)
    edge = here - np.array([here[:, 0].max() - 20.0, 0.0, 0.0], dtype=np.float32)  # 20 px in
    detector = BoxOf([edge, edge])
    with FaceTracker(detector, redetect_every=1000) as tracker:
        tracker._mesh.close()  # the real one, replaced by the stub
        tracker._mesh = ScriptedMesh([edge, edge])
        face = tracker.find(image)
        assert face is not None and face.landmarks is None  # the detector's face, as it is
        tracker.find(image)
    assert detector.calls == 2  # not followed: detected again


def sliding_out(clip, direction: str, frames: int = 60) -> list[np.ndarray]:
    """The astronaut's face (120 px) moving 8 px a frame from the middle out of the frame."""
    photo, box = clip.photos_[0], clip.boxes_[0]
    scale = 120.0 / (box[2] - box[0])
    out = []
    for k in range(frames):
        centre = np.array([320.0, 240.0]) - 8 * k * np.array(
            [direction == "left", direction == "top"], dtype=float)
        shift = centre - scale * (box[:2] + box[2:]) / 2
        matrix = np.array([[scale, 0, shift[0]], [0, scale, shift[1]]])
        out.append(cv2.warpAffine(photo, matrix, (640, 480), flags=cv2.INTER_AREA,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 90, 90)))
    return out


@pytest.mark.parametrize("direction", ["left", "top"])
def test_a_real_face_sliding_out_of_the_frame_is_followed_only_while_mostly_inside(
        clip, detector, direction):
    # the real mesh follows a face half out of the frame (its box two thirds outside) before
    # it lets go; such a box is a lost track, and every box returned can be cropped
    frames = sliding_out(clip, direction)
    with FaceTracker(detector, redetect_every=1000) as tracker:
        seen = follow_frames(tracker, detector, frames)
    for image, (face, detected) in zip(frames, seen):
        if face is not None:
            for rule in RULES:
                cut_face(image, face, rule=rule)
            if not detected:
                assert in_frame(face.box, image_shape=image.shape) >= MIN_IN_FRAME
    assert sum(not detected for _, detected in seen) >= 20  # followed while in the frame
    assert all(face is None for face, _ in seen[-10:])  # and gone at the end


def follow_frames(tracker, detector, frames):
    """(face, whether the detector ran) per frame."""
    out = []
    for image in frames:
        calls = detector.calls
        out.append((tracker.find(image), detector.calls > calls))
    return out


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


MEMORY_LOOP = """
import gc, json, os, sys
import numpy as np
from neopain.faces.mediapipe import MediaPipeShortRange
from neopain.faces.tracking import FaceTracker

def resident_mb():
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)

image = np.load(sys.argv[1])
warm, kept, cycles = (int(v) for v in sys.argv[2:5])
with MediaPipeShortRange() as detector:
    def one():
        with FaceTracker(detector) as tracker:
            tracker.find(image)
    for _ in range(warm):  # the graphs' code, the allocator's first arenas
        one()
    gc.collect()
    before = resident_mb()
    open_ = [FaceTracker(detector) for _ in range(kept)]  # what one tracker holds, unclosed
    for tracker in open_:
        tracker.find(image)
    gc.collect()
    per_tracker = (resident_mb() - before) / kept
    for tracker in open_:
        tracker.close()
    del open_
    gc.collect()
    before = resident_mb()
    for _ in range(cycles):
        one()
    gc.collect()
    print(json.dumps({"per_tracker_mb": per_tracker, "growth_mb": resident_mb() - before}))
"""


@pytest.mark.slow
def test_trackers_closed_in_a_loop_give_their_memory_back(clip, tmp_path):
    # in a fresh process (other tests in the same worker move its RSS by 100 MB and more):
    # after a warm-up, RSS over 24 more trackers built and closed grows by allocator noise only
    # (it plateaus: ±40 MB whatever the count); a tracker whose mesh close() does not free
    # keeps its size (about 27 MB, measured in the same process on 4 trackers left open), so
    # a leak grows by 24 times that (about 650 MB), far above the bound of 6 trackers' worth
    frame = tmp_path / "frame.npy"
    np.save(frame, clip.frame(0)[0])
    cycles = 24
    run = subprocess.run([sys.executable, "-c", MEMORY_LOOP, str(frame), "3", "4", str(cycles)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["per_tracker_mb"] > 5, figures  # the measure itself sees a tracker
    assert figures["growth_mb"] < figures["per_tracker_mb"] * cycles / 4, figures
