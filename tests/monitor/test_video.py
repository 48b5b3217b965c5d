"""Video assessment: container timestamps, pain episodes where the ground truth has them, the
share of time in pain, the written files, and a clear refusal when no frame shows a face.

Two kinds of video:
- a clip written here whose face patch's brightness IS P(pain) (a test predictor reads it), with
  planned episodes, single-frame flickers and a short gap without a face: exact expectations;
- the synthetic clips of ``generate_clips`` (their own face renderer, their own episodes.csv),
  with the real MediaPipe detector and a test predictor that answers each frame's ground-truth
  label: this checks decoding, detection, timing and episode extraction against the clip's
  plan. (No NFCS or trained model is used: the point is the timeline, not a model's accuracy;
  the NFCS scorer is being written in parallel.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from neopain.data.synthetic.cohort import CohortSpec, make_subjects
from neopain.data.synthetic.video import ClipSpec, generate_clips
from neopain.errors import NeopainError
from neopain.faces.base import Face, FaceDetector, create_detector
from neopain.monitor.video import (
    NoFaceError,
    assess_video,
    frame_durations,
    pain_episodes,
    score_windows,
)
from neopain.monitor.video_report import write_video_report
from neopain.prediction import Prediction, Predictor
from neopain.faces.crop import CropRule

FPS = 10
PATCH = (slice(40, 100), slice(60, 120))  # rows, columns of the face patch


class MarkedFace(FaceDetector):
    """The face patch, when the white marker in the top-left corner is lit."""

    default_threshold = 0.0

    def _detect(self, image, *, prior):
        if image[2:8, 2:8].mean() < 200:
            return []
        return [Face((60.0, 40.0, 120.0, 100.0), 0.99)]


class Brightness(Predictor):
    name = "brightness"
    crop = CropRule.exact_box()

    def predict_crops(self, crops):
        return [Prediction(float(c.mean()) / 255, "pain" if c.mean() >= 127.5 else "nopain", 0.5,
                           self.name) for c in crops]


def planned_prob(t: float) -> float | None:
    """P(pain) at time t: episodes 3–8 s and 12–15 s (a one-frame dip at 13.0 s), flickers at
    16.0 and 17.5 s, no face 10.0–10.5 s."""
    if 10.0 <= t < 10.5:
        return None
    if round(t, 3) in (16.0, 17.5):
        return 0.9
    if round(t, 3) == 13.0:
        return 0.1
    return 0.9 if 3.0 <= t < 8.0 or 12.0 <= t < 15.0 else 0.1


@pytest.fixture(scope="module")
def planned_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "planned.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (160, 120))
    for frame in range(20 * FPS):
        image = np.zeros((120, 160, 3), np.uint8)
        prob = planned_prob(frame / FPS)
        if prob is not None:
            image[0:10, 0:10] = 255
            image[PATCH] = round(prob * 255)
        writer.write(image)
    writer.release()
    return path


def test_episodes_share_and_timestamps_follow_the_plan(planned_clip):
    result = assess_video(planned_clip, Brightness(), detector=MarkedFace(), window=5)
    table = result.timeline
    assert len(table) == 200
    assert np.allclose(table["time_s"], np.arange(200) / FPS, atol=1e-3)  # container times
    assert table.loc[(table.time_s >= 10.0) & (table.time_s < 10.45), "face"].eq(0).all()
    # the median of 5 frames turns on the 3rd frame of a new level: +0.2 s at 10 fps
    starts_ends = [(round(e.start_s, 2), round(e.end_s, 2)) for e in result.episodes]
    assert starts_ends == [(3.2, 8.2), (12.2, 15.2)]  # no episode from flickers or the dip
    assert result.duration_s == pytest.approx(20.0, abs=1e-3)
    assert result.observed_s == pytest.approx(20.0, abs=1e-3)  # a 0.5 s gap keeps the state
    assert result.pain_s == pytest.approx(8.0, abs=1e-3)
    assert result.pain_share == pytest.approx(0.4, abs=1e-3)
    assert table["changed"].sum() == 5  # first face, and 4 state changes


def test_the_files_are_written_and_say_the_same(planned_clip, tmp_path):
    result = assess_video(planned_clip, Brightness(), detector=MarkedFace())
    written = write_video_report(result, tmp_path / "out")
    assert {p.name for p in written.values()} == {"timeline.csv", "summary.json", "episodes.csv",
                                                   "timeline.png", "report.html"}
    timeline = pd.read_csv(written["timeline"])
    assert list(timeline.columns)[:4] == ["frame", "time_s", "duration_s", "face"]
    episodes = pd.read_csv(written["episodes"])
    assert episodes[["start_s", "end_s"]].round(2).values.tolist() == [[3.2, 8.2], [12.2, 15.2]]
    assert cv2.imread(str(written["plot"])).shape[1] == 1000
    html = written["html"].read_text()
    assert "40.0%" in html and "12.20" in html and "data:image/png;base64," in html


class GroundTruth(Predictor):
    """P(pain) 0.9 or 0.1 from the clip's timeline label of the frame the detector just saw."""

    name = "ground-truth"
    crop = CropRule.padded_square(0.25)

    def __init__(self, seen: dict, labels: dict[str, str]) -> None:
        self.seen, self.labels = seen, labels

    def predict_crops(self, crops):
        label = self.labels[self.seen["frame"]]
        return [Prediction(0.9 if label == "pain" else 0.1, label, 0.5, self.name)
                for _ in crops]


class Remembering(FaceDetector):
    """MediaPipe, remembering which frame (by content hash) it was given."""

    def __init__(self, seen: dict) -> None:
        super().__init__()
        self.seen, self.inner = seen, create_detector("mediapipe-short")

    def _detect(self, image, *, prior):
        self.seen["frame"] = hashlib.sha1(image.tobytes()).hexdigest()
        return self.inner.detect(image)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    subjects = make_subjects(CohortSpec(subjects=2, seed=1))
    return generate_clips(tmp_path_factory.mktemp("clips"), subjects, clips=1,
                          clip=ClipSpec(seconds=16, fps=10), seed=0)


def test_synthetic_clip_episodes_match_its_episodes_csv(clips):
    from neopain.data.video.decode import decode_frames, open_video

    video = clips.parent / "videos" / "S001.mp4"
    truth = pd.read_csv(clips / "timeline.csv").query("video == 'videos/S001.mp4'")
    labels = {}
    with open_video(video) as capture:
        for decoded in decode_frames(capture):
            labels[hashlib.sha1(decoded.image.tobytes()).hexdigest()] = \
                truth["label"].iat[decoded.index]
    seen: dict = {}
    with Remembering(seen) as detector:
        result = assess_video(video, GroundTruth(seen, labels), detector=detector)
    assert result.face_frames == result.frames == len(truth)  # MediaPipe finds every face
    planned = pd.read_csv(clips / "episodes.csv").query("video == 'videos/S001.mp4'")
    pain = planned[planned["pain"] == 1]
    assert len(result.episodes) == len(pain) >= 1  # one-action blips are not pain episodes
    for episode, (_, row) in zip(result.episodes, pain.iterrows()):
        assert abs(episode.start_s - row.start_s) <= 0.6
        assert abs(episode.end_s - row.end_s) <= 0.6


def test_a_clip_without_a_face_is_refused_with_no_plot(clips, tmp_path):
    video = clips.parent / "videos" / "noface.mp4"
    result = assess_video(video, Brightness(), detector="mediapipe-short")
    assert result.face_frames == 0 and result.frames == 160
    assert result.pain_share is None and result.episodes == []
    with pytest.raises(NoFaceError, match=r"no face found in any of its 160 frames"):
        write_video_report(result, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["summary.json",
                                                                      "timeline.csv"]


def test_unreadable_videos_and_bad_options_are_named(tmp_path, planned_clip):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(NeopainError, match="broken.mp4"):
        assess_video(broken, Brightness(), detector=MarkedFace())
    with pytest.raises(NeopainError, match="missing.mp4: file not found"):
        assess_video(tmp_path / "missing.mp4", Brightness(), detector=MarkedFace())
    with pytest.raises(NeopainError, match="step=0"):
        assess_video(planned_clip, Brightness(), detector=MarkedFace(), step=0)


def test_episode_and_duration_arithmetic():
    times = np.array([0.0, 0.1, 0.2, 0.3, 0.5])
    assert frame_durations(times, end_s=0.6).round(3).tolist() == [0.1, 0.1, 0.1, 0.2, 0.1]
    assert frame_durations(times).round(3).tolist() == [0.1, 0.1, 0.1, 0.2, 0.1]
    states = np.array(["nopain", "pain", "pain", "", "pain"])
    smoothed = np.array([0.2, 0.7, 0.8, np.nan, 0.9])
    episodes = pain_episodes(times, states, smoothed, end_s=0.6)
    assert [(e.start_s, e.end_s, e.peak) for e in episodes] == [(0.1, 0.3, 0.8), (0.5, 0.6, 0.9)]
    assert pain_episodes(times, states, smoothed, end_s=0.6, min_duration_s=0.15)[0].peak == 0.8


class Windowed(Brightness):
    """Scores a window by how many of its predictions it was given."""

    def window_score(self, predictions):
        return {"score": len(predictions), "of": 4} if predictions else None


def test_window_scores_cover_the_video_in_whole_windows_and_only_for_models_with_one():
    # guards: a 6 s video whose end reads 6.000000001 s (float timestamps) got a fourth, empty
    # window at 6.0 s
    times = np.round(np.arange(30) * 0.2, 6)
    predictions = [Prediction(0.9, "pain", 0.5, "m") for _ in times]
    predictions[3] = None  # no face in this frame
    windows = score_windows(times, predictions, Windowed(), window_s=2.0, end_s=6.000000001)
    assert [(w.start_s, w.end_s, w.score, w.frames) for w in windows] == [
        (0.0, 2.0, 9, 9), (2.0, 4.0, 10, 10), (4.0, 6.000000001, 10, 10)]
    short = score_windows(times, predictions, Windowed(), window_s=4.0, end_s=6.0)
    assert [(w.start_s, w.end_s) for w in short] == [(0.0, 4.0), (4.0, 6.0)]
    assert score_windows(times, predictions, Brightness(), window_s=2.0, end_s=6.0) == []


def test_every_frame_counts_in_exactly_one_window():
    # guards: window n ended at n w + w while window n + 1 began at (n + 1) w, which differ in
    # floating point, so a frame on the boundary counted in both (10 frames/s over 30 s in
    # 1.1 s windows: more frames in the windows than in the video)
    times = np.round(np.arange(300) * 0.1, 6)
    predictions = [Prediction(0.9, "pain", 0.5, "m") for _ in times]
    for window_s in (1.1, 1.3, 2.9, 3.0):
        windows = score_windows(times, predictions, Windowed(), window_s=window_s, end_s=30.0)
        assert sum(w.frames for w in windows) == len(times), window_s
