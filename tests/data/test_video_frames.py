"""Video frames: each window is sampled at its policy's rate, each sample takes the frame whose
container timestamp is nearest, caps hold, bad rows are all named, a bad video does not stop the
others, and captures are always released."""

from __future__ import annotations

import math
import os
import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from neopain.data.manifest import load_manifest
from neopain.data.synthetic import CohortSpec
from neopain.data.synthetic.cohort import make_subjects
from neopain.data.synthetic.video import ClipSpec, generate_clips
from neopain.data.video import (
    POLICIES,
    DanPolicy,
    FixedPolicy,
    FlaccPolicy,
    VideoTableError,
    extract_frames,
    make_policy,
    open_video,
    read_videos_table,
)
from neopain.errors import NeopainError

FPS = 10
SECONDS = 12


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Two face clips and the no-face clip, 12 s at 10 fps, with timeline.csv."""
    root = tmp_path_factory.mktemp("clips")
    generate_clips(root, make_subjects(CohortSpec(subjects=2, seed=0)), clips=2,
                   clip=ClipSpec(seconds=SECONDS, fps=FPS), seed=0)
    return root


def subject_videos(clips: Path) -> list[tuple[str, str]]:
    videos = pd.read_csv(clips / "videos" / "videos.csv", keep_default_na=False)
    return [(row.video, row.subject) for row in videos.itertuples() if row.subject]


def write_table(folder: Path, rows: list[dict], *, name: str = "videos.csv") -> Path:
    path = folder / name
    pd.DataFrame(rows).to_csv(path, index=False, lineterminator="\n")
    return path


def container_times(path: Path) -> np.ndarray:
    """Every frame's timestamp as OpenCV reads it, decoded independently of the code under test."""
    capture = cv2.VideoCapture(str(path))
    times = []
    while capture.read()[0]:
        times.append(capture.get(cv2.CAP_PROP_POS_MSEC) / 1000)
    capture.release()
    return np.array(times)


def frames_of(manifest: pd.DataFrame, window: str) -> np.ndarray:
    return manifest.loc[manifest["window"] == window, "time_s"].astype(float).to_numpy()


def expected_samples(start: float, end: float, rate: float) -> np.ndarray:
    return start + np.arange(math.ceil((end - start) * rate - 1e-9)) / rate


def assert_nearest(times: np.ndarray, samples: np.ndarray, frame_times: np.ndarray, *,
                   start: float = 0.0, end: float = math.inf) -> None:
    """Each extracted time is a real frame's timestamp: the window's frame nearest its sample."""
    assert len(times) == len(samples), (times, samples)
    inside = frame_times[(frame_times >= start - 1e-6) & (frame_times < end - 1e-6)]
    for time, sample in zip(times, samples):
        assert np.abs(inside - time).min() <= 0.001, f"{time} is not a window frame's timestamp"
        nearest = np.abs(inside - sample).min()
        assert abs(time - sample) <= nearest + 0.001, f"sample {sample}: {time} is not nearest"
        assert abs(time - sample) <= 1 / FPS


# Windows per policy: (score, start, end); fractional starts put samples between frames.
POLICY_WINDOWS = {
    "dan": [(0, 0.37, 6.0), (3, 6.0, 11.5)],
    "flacc": [(1, 0.0, 5.23), (2, 5.23, 11.9)],
    "fixed": [(7, 1.06, 9.0)],
}


@pytest.mark.parametrize("name", POLICIES)
def test_frames_follow_the_policy_rate_at_real_container_timestamps(clips, tmp_path, name):
    policy = make_policy(name, fps=3.0 if name == "fixed" else None,
                         pain_from=5 if name == "fixed" else None)
    rows = []
    for video, subject in subject_videos(clips):
        for k, (score, start, end) in enumerate(POLICY_WINDOWS[name]):
            rows.append({"video": str(clips / video), "subject": subject, "score": score,
                         "start_s": start, "end_s": end, "window": f"{subject}-{k}"})
    result = extract_frames(write_table(tmp_path, rows), out=tmp_path / "out", policy=policy)
    manifest = load_manifest(result.manifest, check_files=True).table
    timeline = pd.read_csv(clips / "videos" / "timeline.csv")
    assert not result.failed and not result.warnings
    for row in rows:
        times = frames_of(manifest, row["window"])
        rate = policy.rate(row["score"])
        video = Path(row["video"]).relative_to(clips).as_posix()
        frame_times = timeline.loc[timeline["video"] == video, "time_s"].to_numpy()
        assert_nearest(times, expected_samples(row["start_s"], row["end_s"], rate), frame_times,
                       start=row["start_s"], end=row["end_s"])
        assert np.all(np.abs(np.diff(times) - 1 / rate) <= 1 / FPS)
        mine = manifest[manifest["window"] == row["window"]]
        assert set(mine["label"]) == {policy.label(row["score"])}
        assert set(mine["scale"]) == {policy.scale or ""}
    assert result.frames == len(manifest) == sum(v.frames for v in result.videos)


def test_policy_rates_and_labels_are_those_of_the_protocols():
    assert [DanPolicy().rate(s) for s in range(5)] == [0.5, 0.5, 1, 1, 1]
    assert [FlaccPolicy().rate(s) for s in range(3)] == [1, 1, 2]
    assert FixedPolicy(4.0).rate(None) == FixedPolicy(4.0).rate(9) == 4.0
    assert [DanPolicy().label(s) for s in range(5)] == ["nopain"] * 2 + ["pain"] * 3
    assert [FlaccPolicy().label(s) for s in range(3)] == ["nopain", "nopain", "pain"]
    assert DanPolicy(pain_from=3).label(2) == "nopain"
    assert FixedPolicy().label(3) is None


def test_policies_refuse_bad_options_naming_them():
    with pytest.raises(NeopainError, match=r"fps does not apply to policy 'dan'"):
        make_policy("dan", fps=2.0)
    with pytest.raises(NeopainError, match=r"policy='nfcs' is unknown; valid: dan, flacc, fixed"):
        make_policy("nfcs")
    with pytest.raises(NeopainError, match=r"fps=0 is not a valid frame rate"):
        FixedPolicy(0)
    with pytest.raises(NeopainError, match=r"pain_from=3 is outside .* 0 to 2"):
        FlaccPolicy(pain_from=3)


def test_extracted_image_is_the_decoded_frame_at_its_timestamp(clips, tmp_path):
    video, subject = subject_videos(clips)[0]
    table = write_table(tmp_path, [{"video": str(clips / video), "subject": subject,
                                    "score": 2, "start_s": 2.33, "end_s": 7}])
    result = extract_frames(table, out=tmp_path / "out", policy=FlaccPolicy(),
                            image_format="png")
    manifest = load_manifest(result.manifest).table
    wanted = {round(float(t), 3): image for t, image in zip(manifest["time_s"], manifest["image"])}
    capture = cv2.VideoCapture(str(clips / video))
    found = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        image = wanted.get(round(capture.get(cv2.CAP_PROP_POS_MSEC) / 1000, 3))
        if image is not None:
            assert np.array_equal(cv2.imread(str(result.manifest.parent / image)), frame)
            found += 1
    capture.release()
    assert found == len(manifest) == 10


def with_timestamps(source: Path, target: Path, deltas: list[tuple[int, int]]) -> Path:
    """Copy an OpenCV-written mp4 with its frame durations (time-to-sample box) replaced.

    ``deltas`` are (frame count, duration in the track's time units) runs. The edit list is
    dropped and the media duration fixed so that every frame plays; moov follows mdat in these
    files, so no sample offset moves.
    """
    containers = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}

    def rebuild(data: bytes) -> bytes:
        out, offset = b"", 0
        while offset < len(data):
            size, kind = struct.unpack(">I4s", data[offset:offset + 8])
            body, offset = data[offset + 8:offset + size], offset + size
            if kind == b"edts":
                continue
            if kind in containers:
                body = rebuild(body)
            elif kind == b"stts":
                body = body[:4] + struct.pack(">I", len(deltas)) + b"".join(
                    struct.pack(">II", *run) for run in deltas)
            elif kind == b"mdhd":
                body = body[:16] + struct.pack(">I", sum(n * d for n, d in deltas)) + body[20:]
            out += struct.pack(">I4s", len(body) + 8, kind) + body
        return out

    target.write_bytes(rebuild(source.read_bytes()))
    return target


def test_times_come_from_the_container_not_the_frame_count(clips, tmp_path):
    # Variable frame rate: 60 frames 0.1 s apart, then 60 frames 0.2 s apart (18 s, 120 frames).
    # Frame index / average fps would put frame 90 at 13.5 s; its timestamp is 12 s.
    video, subject = subject_videos(clips)[0]
    vfr = with_timestamps(clips / video, tmp_path / "vfr.mp4", [(60, 1024), (60, 2048)])
    truth = np.r_[np.arange(60) * 0.1, 6.0 + np.arange(60) * 0.2]
    assert np.allclose(container_times(vfr), truth)
    table = write_table(tmp_path, [{"video": "vfr.mp4", "subject": subject, "score": 2,
                                    "start_s": 0.55, "window": "w"}])
    result = extract_frames(table, out=tmp_path / "out", policy=FlaccPolicy())
    times = frames_of(load_manifest(result.manifest).table, "w")
    assert_nearest(times, expected_samples(0.55, 18.0, 2.0), truth, start=0.55)


def test_caps_hold_per_video_earliest_first(clips, tmp_path):
    rows = [{"video": str(clips / video), "subject": subject, "score": 3, "start_s": start,
             "end_s": end, "window": f"{subject}-{start}"}
            for video, subject in subject_videos(clips) for start, end in [(0.3, 2.3), (3, 9)]]
    table = write_table(tmp_path, rows)
    by_frames = extract_frames(table, out=tmp_path / "f", policy=DanPolicy(), max_frames=3)
    manifest = load_manifest(by_frames.manifest).table
    for video in by_frames.videos:
        assert video.frames == 3
    for row in rows:
        expected = [0.3, 1.3] if row["start_s"] == 0.3 else [3.0]
        assert np.allclose(frames_of(manifest, row["window"]), expected, atol=0.051)
    assert sum("max_frames=3 reached" in w.message for w in by_frames.warnings) == 2

    by_seconds = extract_frames(table, out=tmp_path / "s", policy=DanPolicy(), max_seconds=3.5)
    manifest = load_manifest(by_seconds.manifest).table
    for row in rows:  # 2 s of the first window, then 1.5 s of the second: 3.0 and 4.0
        expected = [0.3, 1.3] if row["start_s"] == 0.3 else [3.0, 4.0]
        assert np.allclose(frames_of(manifest, row["window"]), expected, atol=0.051)


def test_windows_past_the_end_are_clipped_with_a_warning(clips, tmp_path):
    rows = [{"video": "videos/noface.mp4", "subject": "cot", "score": 3, "start_s": s,
             "end_s": e} for s, e in [(9, 15), (20, 25)]]
    table = write_table(clips, rows, name="past_end.csv")
    result = extract_frames(table, out=tmp_path / "out", policy=DanPolicy())
    times = load_manifest(result.manifest).table["time_s"].astype(float).tolist()
    assert times == [9.0, 10.0, 11.0]
    messages = {w.line: w.message for w in result.warnings}
    assert "clipped" in messages[2] and "(12.000 s)" in messages[2]
    assert "after the video's end" in messages[3] and "no frames" in messages[3]


def test_sampling_faster_than_the_video_never_duplicates_a_frame(clips, tmp_path):
    video, subject = subject_videos(clips)[0]
    table = write_table(tmp_path, [{"video": str(clips / video), "subject": subject,
                                    "label": "nopain", "start_s": 1, "end_s": 3}])
    result = extract_frames(table, out=tmp_path / "out", policy=FixedPolicy(25.0))
    times = load_manifest(result.manifest).table["time_s"].astype(float)
    assert times.is_unique and len(times) == 20  # every frame of the 2 s, once
    assert "gave no new frame" in result.warnings[0].message


def test_a_corrupt_video_is_reported_and_the_others_still_give_frames(clips, tmp_path):
    video, subject = subject_videos(clips)[0]
    good = clips / video
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    (tmp_path / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "empty.mp4").write_bytes(b"")
    with_timestamps(good, tmp_path / "stuck.mp4", [(40, 1024), (1, 0), (79, 1024)])
    names = ["random.mp4", str(good), "truncated.mp4", "empty.mp4", "stuck.mp4"]
    rows = [{"video": name, "subject": subject, "score": 2} for name in names]
    progress: list[tuple[int, int]] = []
    result = extract_frames(write_table(tmp_path, rows), out=tmp_path / "out",
                            policy=DanPolicy(), on_progress=lambda *a: progress.append(a))
    failed = {f.video: f for f in result.failed}
    assert set(failed) == {"random.mp4", "truncated.mp4", "empty.mp4", "stuck.mp4"}
    assert failed["random.mp4"].lines == (2,) and "cannot be opened" in failed["random.mp4"].reason
    assert "timestamps do not increase at frame 41" in failed["stuck.mp4"].reason
    assert [v.video for v in result.videos] == [str(good)] and result.frames == SECONDS
    written = sorted(p.name for p in (tmp_path / "out" / "frames").rglob("*.jpg"))
    assert len(written) == SECONDS and all(name.startswith(good.stem) for name in written)
    load_manifest(result.manifest, check_files=True)
    assert progress[0] == (0, 5) and progress[-1] == (5, 5)
    assert progress == sorted(progress)


def test_every_bad_row_is_reported_with_line_and_column(clips, tmp_path):
    video = f"{clips}/{subject_videos(clips)[0][0]}"
    rows = [
        {"video": video, "subject": "a", "score": "2", "scale": "DAN", "start_s": "0",
         "end_s": "4", "label": ""},
        {"video": video, "subject": "a", "score": "5", "scale": "", "start_s": "", "end_s": "",
         "label": ""},  # line 3: score above 4; overlaps line 2 (whole video)
        {"video": "absent.mp4", "subject": "", "score": "1.5", "scale": "FLACC",
         "start_s": "-1", "end_s": "x", "label": "Pain"},  # line 4
        {"video": video, "subject": "../b", "score": "", "scale": "", "start_s": "6",
         "end_s": "5", "label": ""},  # line 5
    ]
    with pytest.raises(VideoTableError) as caught:
        read_videos_table(write_table(tmp_path, rows), policy=DanPolicy())
    found = {(p.line, p.column) for p in caught.value.problems}
    assert found == {
        (3, "score"), (3, "start_s"),
        (4, "video"), (4, "subject"), (4, "score"), (4, "label"), (4, "scale"), (4, "start_s"),
        (4, "end_s"),
        (5, "subject"), (5, "score"), (5, "end_s"),
    }
    messages = {(p.line, p.column): p.message for p in caught.value.problems}
    assert "0 to 4" in messages[3, "score"] and "line 2" in messages[3, "start_s"]
    assert "valid: DAN" in messages[4, "scale"] and "not after start_s=6" in messages[5, "end_s"]
    assert str(tmp_path / "videos.csv") in str(caught.value)


def test_overlapping_windows_of_one_video_are_named_touching_ones_are_not(clips, tmp_path):
    video, other = (str(clips / v) for v, _ in subject_videos(clips))
    windows = [(video, 0, 10), (video, 2, 3), (video, 5, 6), (other, 5, 6), (video, 10, "")]
    rows = [{"video": v, "subject": "a", "score": 1, "start_s": s, "end_s": e}
            for v, s, e in windows]
    with pytest.raises(VideoTableError) as caught:
        read_videos_table(write_table(tmp_path, rows), policy=DanPolicy())
    assert [(p.line, p.column) for p in caught.value.problems] == [(3, "start_s"), (4, "start_s")]
    assert all("line 2" in p.message for p in caught.value.problems)


def test_missing_and_frame_only_columns_are_named(tmp_path):
    path = tmp_path / "v.csv"
    path.write_text("video,image,face_box\nx.mp4,a.jpg,\n", encoding="utf-8")
    with pytest.raises(VideoTableError) as caught:
        read_videos_table(path, policy=DanPolicy())
    assert {p.column for p in caught.value.problems} == {"subject", "score", "image", "face_box"}


def test_labels_from_the_table_win_and_extra_columns_reach_every_frame(clips, tmp_path):
    video, subject = subject_videos(clips)[0]
    table = write_table(tmp_path, [{"video": str(clips / video), "subject": subject, "score": 0,
                                    "label": "pain", "source": "nicu-3", "stimulus": "heel",
                                    "rater": "R1", "start_s": 0, "end_s": 4}])
    manifest = load_manifest(extract_frames(table, out=tmp_path / "o", policy=DanPolicy())
                             .manifest).table
    assert len(manifest) == 2
    assert set(manifest["label"]) == {"pain"} and set(manifest["source"]) == {"nicu-3"}
    assert set(manifest["stimulus"]) == {"heel"} and set(manifest["rater"]) == {"R1"}
    assert set(manifest["video"]) == {os.path.relpath(clips / video, tmp_path / "o")}


def test_videos_sharing_a_file_name_get_distinct_frame_names(clips, tmp_path):
    video, subject = subject_videos(clips)[0]
    for folder in ("cam1", "cam2"):
        (tmp_path / folder).mkdir()
        shutil.copy(clips / video, tmp_path / folder / "clip.mp4")
    table = write_table(tmp_path, [{"video": f"{folder}/clip.mp4", "subject": subject,
                                    "score": 3, "end_s": 3} for folder in ("cam1", "cam2")])
    result = extract_frames(table, out=tmp_path / "o", policy=DanPolicy())
    assert result.frames == 6
    load_manifest(result.manifest, check_files=True)  # duplicate image paths would fail here


def test_captures_are_released_even_when_kept_or_interrupted(clips, tmp_path):
    # STYLE rule 9: a bedside stream runs for hours; a leaked capture keeps a file and a decoder.
    path = clips / subject_videos(clips)[0][0]
    fds = len(os.listdir("/proc/self/fd"))
    kept = []
    for _ in range(20):
        with open_video(path) as capture:
            kept.append(capture)
        with pytest.raises(RuntimeError), open_video(path) as capture:
            kept.append(capture)
            raise RuntimeError("interrupted")
    assert not any(capture.isOpened() for capture in kept)
    assert len(os.listdir("/proc/self/fd")) <= fds
    table = write_table(tmp_path, [{"video": str(path), "subject": "s", "score": 0,
                                    "end_s": 2}])
    for _ in range(15):
        extract_frames(table, out=tmp_path / "o", policy=DanPolicy())
    assert len(os.listdir("/proc/self/fd")) <= fds


def test_bad_arguments_name_the_parameter(clips, tmp_path):
    table = write_table(tmp_path, [{"video": str(clips / "videos" / "noface.mp4"),
                                    "subject": "s", "score": 0}])
    for options, pattern in [({"max_frames": 0}, "max_frames=0"),
                             ({"max_seconds": -1.0}, "max_seconds=-1.0"),
                             ({"image_format": "gif"}, "image_format='gif'.*jpg, png")]:
        with pytest.raises(NeopainError, match=pattern):
            extract_frames(table, out=tmp_path / "o", policy=DanPolicy(), **options)


@pytest.mark.parametrize("seconds, fps, rate", [(20, 10, 0.5), (20, 30, 0.5), (12, 10, 0.5),
                                                (10, 30, 1.0)])
def test_a_window_to_the_end_takes_no_extra_last_frame(tmp_path, seconds, fps, rate):
    # guards: a sample at the video's very end (20 s) taking its last frame (19.9 s) again, as
    # an 11th frame for 20 s at 0.5 frames a second (issue 24, point 6)
    generate_clips(tmp_path, make_subjects(CohortSpec(subjects=2, seed=0)), clips=1,
                   clip=ClipSpec(seconds=seconds, fps=fps), seed=0)
    [(video, subject)] = subject_videos(tmp_path)[:1]
    table = write_table(tmp_path, [{"video": str(tmp_path / video), "subject": subject,
                                    "score": 1, "start_s": 0, "end_s": ""}])
    result = extract_frames(table, out=tmp_path / "out",
                            policy=make_policy("fixed", fps=rate, pain_from=5))
    times = load_manifest(result.manifest).table["time_s"].astype(float).to_numpy()
    assert len(times) == seconds * rate, times
    assert_nearest(times, expected_samples(0.0, seconds, rate), container_times(tmp_path / video))
