"""Frames from videos: score-dependent sampling inside observation windows.

A videos table (CSV, one row per observation window) names a video, a subject and the face item
score a rater gave in that window. A ``FramePolicy`` turns the score into a sampling rate; each
sample time takes the decoded frame whose container timestamp is nearest. Frames are written as
images with a manifest row each (``video`` and ``time_s`` say where they come from).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import pandas as pd

from neopain.data.manifest import COLUMNS, save_manifest, validate_table
from neopain.data.video.decode import DecodedFrame, VideoReadError, decode_frames, open_video
from neopain.data.video.policies import FramePolicy
from neopain.data.video.table import Window, read_videos_table
from neopain.errors import NeopainError

logger = logging.getLogger(__name__)

IMAGE_FORMATS = ("jpg", "png")
_JPEG_QUALITY = 95


@dataclass(frozen=True)
class FrameWarning:
    """Something a user should know about one row's frames (clipped window, cap reached)."""

    line: int
    video: str
    message: str


@dataclass(frozen=True)
class VideoFrames:
    """Frames taken from one video: count and first/last timestamps (None without frames)."""

    video: str
    lines: tuple[int, ...]
    subjects: tuple[str, ...]
    frames: int
    first_s: float | None
    last_s: float | None


@dataclass(frozen=True)
class FailedVideo:
    """A video that could not be read; its rows (``lines``) gave no frames."""

    video: str
    lines: tuple[int, ...]
    reason: str


@dataclass(frozen=True)
class FramesResult:
    """What ``extract_frames`` did; ``frames`` counts the manifest's rows."""

    manifest: Path
    frames: int
    videos: list[VideoFrames]
    failed: list[FailedVideo]
    warnings: list[FrameWarning]


class _Sample(NamedTuple):
    time_s: float
    window: Window


def _samples(windows: list[Window], *, max_seconds: float | None) -> Iterator[_Sample]:
    """Sample times start, start + 1/rate, ... before each window's end, in time order.

    ``max_seconds`` caps the window time used per video, earliest windows first.
    """
    left = math.inf if max_seconds is None else max_seconds
    for window in windows:
        end = min(window.end_s, window.start_s + left)
        left = left if math.isinf(left) else left - (end - window.start_s)
        k = 0
        while (time_s := window.start_s + k / window.rate) < end:  # no sum: no drift
            yield _Sample(time_s, window)
            k += 1
        if left <= 0:
            return


def _frame_names(groups: dict[Path, list[Window]]) -> dict[Path, str]:
    """File name stem per video; videos sharing a stem get a hash of their table path."""
    stems = [video.stem for video in groups]
    return {video: video.stem if stems.count(video.stem) == 1 else
            f"{video.stem}-{hashlib.sha1(group[0].video_text.encode()).hexdigest()[:8]}"
            for video, group in groups.items()}


def _write_frame(frame: DecodedFrame, window: Window, *, out: Path, name: str,
                 image_format: str) -> dict[str, str]:
    """Write one frame's image and return its manifest row."""
    image = Path("frames", window.subject, f"{name}_{round(frame.time_s * 1000)}.{image_format}")
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if image_format == "jpg" else []
    ok, data = cv2.imencode(f".{image_format}", frame.image, params)
    if not ok:
        raise NeopainError(f"cannot encode a frame of {window.video_text} as {image_format}")
    (out / image).parent.mkdir(parents=True, exist_ok=True)
    (out / image).write_bytes(data.tobytes())
    return {"image": image.as_posix(), "subject": window.subject, "label": window.label,
            "source": window.source, "score": "" if window.score is None else f"{window.score:g}",
            "scale": window.scale, "video": Path(os.path.relpath(window.video, out)).as_posix(),
            "time_s": f"{frame.time_s:.3f}", **window.extra}


def _inside(frame: DecodedFrame, window: Window) -> bool:
    """Whether a frame lies in the window [start, end), to the microsecond (timestamps are
    floating-point milliseconds: 3 s can read 2.9999999 s)."""
    return window.start_s - 1e-6 <= frame.time_s < window.end_s - 1e-6


def _extract_video(windows: list[Window], *, out: Path, name: str, max_frames: int | None,
                   max_seconds: float | None, image_format: str
                   ) -> tuple[list[dict[str, str]], list[FrameWarning]]:
    """Frames of one video's windows (sorted by start): the nearest frame to each sample time."""
    rows: list[dict[str, str]] = []
    warnings: list[FrameWarning] = []
    skipped: dict[int, int] = {}  # per line: samples whose frame was taken or outside
    video = windows[0].video_text
    try:
        with open_video(windows[0].video) as capture:
            frames = decode_frames(capture)
            fps = capture.get(cv2.CAP_PROP_FPS)
            period = 1 / fps if fps > 0 else 0.0  # until two frames give the true one
            prev, cur, taken = None, next(frames, None), -1
            if cur is None:
                raise VideoReadError("opened, but no frame could be decoded (empty or corrupt)")
            for sample in _samples(windows, max_seconds=max_seconds):
                t = sample.time_s
                if max_frames is not None and len(rows) >= max_frames:
                    warnings.append(FrameWarning(sample.window.line, video, f"max_frames="
                                                 f"{max_frames} reached; none taken from {t:g} s"))
                    break
                while cur is not None and cur.time_s < t:
                    prev, cur = cur, next(frames, None)
                    period = period if cur is None else cur.time_s - prev.time_s
                # past the last frame's span, to the microsecond as ``_inside`` (19.9 + 0.1 can
                # read 20.0000000001 and take the last frame again for a sample at 20)
                if prev is not None and cur is None and t >= prev.time_s + period - 1e-6:
                    warnings += _past_end(windows, sample, end_s=prev.time_s + period)
                    break
                inside = [f for f in (prev, cur) if f is not None and _inside(f, sample.window)]
                frame = min(inside, key=lambda f: abs(f.time_s - t), default=None)
                if frame is None or frame.index == taken:
                    skipped[sample.window.line] = skipped.get(sample.window.line, 0) + 1
                    continue
                taken = frame.index
                rows.append(_write_frame(frame, sample.window, out=out, name=name,
                                         image_format=image_format))
    except VideoReadError:
        for row in rows:
            (out / row["image"]).unlink(missing_ok=True)
        raise
    warnings += [FrameWarning(line, video, f"{n} sample time(s) gave no new frame inside the "
                              "window (sampling faster than the video's frame rate?)")
                 for line, n in skipped.items()]
    return rows, warnings


def _past_end(windows: list[Window], sample: _Sample, *, end_s: float) -> list[FrameWarning]:
    """Warnings for the windows that reach past the end of the video (the stream ran out)."""
    warnings = []
    for window in windows[windows.index(sample.window):]:
        end = f"the video's end ({end_s:.3f} s)"
        if window.start_s >= end_s:
            message = f"window starts at {window.start_s:g} s, after {end}; no frames"
        elif not math.isinf(window.end_s):
            message = f"window ends at {window.end_s:g} s, after {end}; clipped there"
        else:
            continue
        warnings.append(FrameWarning(window.line, window.video_text, message))
    return warnings


def extract_frames(
    table: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    policy: FramePolicy,
    max_frames: int | None = None,
    max_seconds: float | None = None,
    image_format: str = "jpg",
    on_progress: Callable[[int, int], None] | None = None,
) -> FramesResult:
    """Extract frames from the videos of a videos table into ``out``.

    Writes ``out/frames/<subject>/<video stem>_<time ms>.<image_format>`` and
    ``out/manifest.csv``. A video that cannot be read goes to ``failed``; the others continue.

    Args:
        table: the videos table (see ``read_videos_table``).
        out: output folder.
        policy: sampling rate per score and the pain threshold (see ``make_policy``).
        max_frames: at most this many frames per video, earliest first.
        max_seconds: at most this many seconds of window time per video, earliest first.
        image_format: ``jpg`` (quality 95) or ``png`` (lossless).
        on_progress: called as ``on_progress(videos done, videos)``.

    Raises:
        VideoTableError: every bad row of the table.
        NeopainError: a bad argument.
    """
    _check_options(max_frames=max_frames, max_seconds=max_seconds, image_format=image_format)
    windows = read_videos_table(table, policy=policy)
    out = Path(out).absolute()
    groups: dict[Path, list[Window]] = {}
    for window in windows:
        groups.setdefault(window.video, []).append(window)
    names = _frame_names(groups)
    rows: list[dict[str, str]] = []
    reports, failed, warnings = [], [], []
    for done, (video, group) in enumerate(groups.items()):
        if on_progress:
            on_progress(done, len(groups))
        group.sort(key=lambda w: w.start_s)
        try:
            found, notes = _extract_video(group, out=out, name=names[video], max_frames=max_frames,
                                          max_seconds=max_seconds, image_format=image_format)
        except VideoReadError as error:
            logger.info("%s: %s", group[0].video_text, error)
            failed.append(FailedVideo(group[0].video_text, _lines(group), str(error)))
            continue
        reports.append(_report(group, found))
        rows += found
        warnings += notes
    if on_progress:
        on_progress(len(groups), len(groups))
    path = _save_manifest(rows, windows, out=out)
    logger.info("wrote %d frames of %d videos to %s", len(rows), len(reports), path)
    return FramesResult(path, len(rows), reports, failed,
                        sorted(warnings, key=lambda w: w.line))


def _check_options(*, max_frames: int | None, max_seconds: float | None,
                   image_format: str) -> None:
    if max_frames is not None and not (isinstance(max_frames, int) and max_frames >= 1):
        raise NeopainError(f"max_frames={max_frames} is not valid; valid: a whole number >= 1")
    if max_seconds is not None and not (math.isfinite(max_seconds) and max_seconds > 0):
        raise NeopainError(f"max_seconds={max_seconds} is not valid; valid: a number > 0")
    if image_format not in IMAGE_FORMATS:
        raise NeopainError(f"image_format={image_format!r} is not valid; valid: "
                           f"{', '.join(IMAGE_FORMATS)}")


def _lines(group: list[Window]) -> tuple[int, ...]:
    return tuple(sorted(w.line for w in group))


def _report(group: list[Window], rows: list[dict[str, str]]) -> VideoFrames:
    """What was taken from one video's windows."""
    times = [float(row["time_s"]) for row in rows]
    return VideoFrames(group[0].video_text, _lines(group),
                       tuple(dict.fromkeys(w.subject for w in group)), len(rows),
                       min(times, default=None), max(times, default=None))


def _save_manifest(rows: list[dict[str, str]], windows: list[Window], *, out: Path) -> Path:
    """Write the frames' manifest (the table's extra columns after the manifest's)."""
    extra = dict.fromkeys(name for w in windows for name in w.extra if name not in COLUMNS)
    manifest = pd.DataFrame(rows, columns=[*COLUMNS, *extra]).fillna("")
    problems = validate_table(manifest, root=out, check_files=True)
    if problems:  # a bug here, not the user's input: the rows were checked above
        raise NeopainError(f"the frames manifest came out invalid: {problems[0]}")
    return save_manifest(manifest, out / "manifest.csv")
