"""Synthetic clips: the timeline must describe exactly what the video shows."""

from __future__ import annotations

import cv2
import pandas as pd
import pytest

from neopain.data.synthetic import PAIN_THRESHOLD, PRESENT, ACTIONS, CohortSpec
from neopain.data.synthetic.cohort import make_subjects
from neopain.data.synthetic.video import ClipSpec, generate_clips
from neopain.errors import NeopainError


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    generate_clips(root, make_subjects(CohortSpec(subjects=3, seed=4)), clips=2,
                   clip=ClipSpec(seconds=16, fps=8), seed=4)
    return root


def test_timeline_has_one_row_per_decoded_frame(clips):
    videos = pd.read_csv(clips / "videos" / "videos.csv")
    timeline = pd.read_csv(clips / "videos" / "timeline.csv")
    assert len(videos) == 3 and videos["face"].tolist() == [1, 1, 0]
    for _, video in videos.iterrows():
        capture = cv2.VideoCapture(str(clips / video["video"]))
        decoded = 0
        while capture.read()[0]:
            decoded += 1
        capture.release()
        rows = timeline[timeline["video"] == video["video"]]
        assert decoded == len(rows) == video["frames"] == 16 * 8
        assert rows["time_s"].diff().dropna().round(3).eq(round(1 / 8, 3)).all()


def test_pain_frames_are_those_with_three_present_actions_inside_episodes(clips):
    timeline = pd.read_csv(clips / "videos" / "timeline.csv")
    episodes = pd.read_csv(clips / "videos" / "episodes.csv")
    faces = timeline[timeline["face"] == 1]
    present = (faces[list(ACTIONS)] >= PRESENT).sum(axis=1)
    assert (faces["score"] == present).all()
    assert ((faces["label"] == "pain") == (present >= PAIN_THRESHOLD)).all()
    assert (faces["label"] == "pain").any() and (faces["label"] == "nopain").any()
    for _, frame in faces[faces["label"] == "pain"].iterrows():
        mine = episodes[(episodes["video"] == frame["video"]) & (episodes["pain"] == 1)]
        assert ((mine["start_s"] <= frame["time_s"]) & (frame["time_s"] <= mine["end_s"])).any()


def test_the_no_face_clip_has_no_face_rows(clips):
    timeline = pd.read_csv(clips / "videos" / "timeline.csv", keep_default_na=False)
    noface = timeline[timeline["video"] == "videos/noface.mp4"]
    assert len(noface) > 0 and (noface["face"] == 0).all() and (noface["face_box"] == "").all()


def test_bad_clip_spec_is_refused_with_the_valid_range():
    with pytest.raises(NeopainError, match=r"fps=0.5 must lie in \[1, 60\]"):
        ClipSpec(fps=0.5)
