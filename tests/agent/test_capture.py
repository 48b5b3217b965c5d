"""A video file is played at its own pace like a camera, ``--fps`` caps what is assessed, and
sources and agents release what they open however often they are opened."""

from __future__ import annotations

import os
import threading
import time

import cv2
import numpy as np
import pytest

from neopain.agent.capture import CaptureError, FrameSource, source_kind


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """1.5 s at 20 fps, a moving bright square."""
    path = tmp_path_factory.mktemp("capture") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 20, (160, 120))
    for i in range(30):
        frame = np.zeros((120, 160, 3), np.uint8)
        frame[30:70, 2 * i:2 * i + 40] = 200
        writer.write(frame)
    writer.release()
    return path


def play(path, **options):
    started = time.monotonic()
    with FrameSource(str(path), **options) as source:
        times = [t for t, _ in source.frames(threading.Event())]
    return times, time.monotonic() - started


def test_a_file_plays_in_real_time_with_increasing_times(clip):
    times, took = play(clip)
    assert len(times) >= 27  # a frame or two may be skipped on a busy machine, as a camera
    assert all(b > a for a, b in zip(times, times[1:]))
    assert 1.3 < took < 3.0  # 1.5 s of video, not decoded as fast as possible


def test_fps_caps_the_frames_given(clip):
    times, _ = play(clip, fps=5)
    assert 6 <= len(times) <= 8
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.19


def test_sources_are_told_apart_and_bad_ones_named(tmp_path):
    assert [source_kind(s) for s in ("0", "12", "rtsp://cam/1", "a.mp4")] == [
        "camera", "camera", "stream", "file"]
    with pytest.raises(CaptureError, match="no camera opens at index 93"):
        FrameSource("93").open()
    with pytest.raises(CaptureError, match=r"--source .*missing\.mp4"):
        FrameSource(str(tmp_path / "missing.mp4")).open()
    (tmp_path / "junk.mp4").write_bytes(b"junk" * 100)
    with pytest.raises(CaptureError, match="cannot be opened as a video"):
        FrameSource(str(tmp_path / "junk.mp4")).open()
    with pytest.raises(CaptureError, match="--fps 0 must be"):
        FrameSource("0", fps=0)


def test_opening_and_closing_a_source_many_times_leaks_no_file(clip):
    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    with FrameSource(str(clip)) as source:
        next(source.frames(threading.Event()))
    before = open_files()
    for _ in range(20):
        with FrameSource(str(clip)) as source:
            next(source.frames(threading.Event()))
    assert open_files() <= before
