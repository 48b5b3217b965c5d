"""Assess a video file: per-frame timeline, smoothed state, pain episodes, share of time in pain,
a timeline plot and an HTML report.

Frames are decoded in order with their container timestamps (``data.video.decode``) and go
through the same ``Assessor`` as the bedside monitor, so a video and a live camera are judged
alike. A frame lasts until the next one starts (the last one a typical frame interval), and:

- an **episode** is a run of frames whose smoothed state is ``pain`` (the state holds over short
  gaps without a face, see ``monitor.pipeline``); it starts at its first frame and ends where
  the next non-pain frame starts;
- the **share of time in pain** is the time in ``pain`` over the time with a state (frames
  before the first face, or after a gap longer than ``max_gap_s``, have none);
- ``observed_share`` is the time with a state over the whole video;
- a face the model could not assess (head turned too far …) is labelled ``cannot_assess``
  with no P(pain) and its reason in ``problem``; it never moves the smoothed state;
- a model with a window score (``Predictor.window_score``: the NFCS scorer's DAN facial score,
  0-4) is scored over consecutive windows of ``dan_window_s`` seconds (``ScoreWindow``), each
  frame's row carrying its window's score in ``dan``.

A video in which no frame shows a face gives ``face_frames == 0``;
``monitor.video_report.write_video_report`` then refuses to draw a plot or report
(``NoFaceError``) — there is nothing to show.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from neopain.data.video.decode import VideoReadError, decode_frames, open_video
from neopain.errors import NeopainError
from neopain.faces.base import FaceDetector
from neopain.monitor.images import (
    ACTION_COLUMNS,
    CANNOT_ASSESS,
    PREDICTION_COLUMNS,
    action_cells,
    label_of,
    prediction_cells,
    reason_of,
    shown_prob,
)
from neopain.monitor.pipeline import Assessor
from neopain.prediction import Prediction, Predictor

ProgressHook = Callable[[int, int], None]
TIMELINE_COLUMNS = ("frame", "time_s", "duration_s", "face", "x1", "y1", "x2", "y2", "prob_pain",
                    "label", "smoothed", "state", "changed", "latency_ms", "assessable",
                    "problem", "dan", *PREDICTION_COLUMNS, *ACTION_COLUMNS)
"""``problem``: "no face found" or why the model could not assess the face; ``dan``: the DAN
facial score of the frame's window (empty for a model without one); the last ones as
``monitor.images.PREDICTION_COLUMNS`` and ``ACTION_COLUMNS`` say."""
DAN_WINDOW_S = 10.0
"""Seconds per window of the DAN facial score, by default."""
MIN_DAN_WINDOW_S = 1.0
"""The shortest window: a DAN score tells how long the pain face persists, which a fraction of
a second cannot (and a tiny window over a long video would be millions of windows)."""


class NoFaceError(NeopainError):
    """No frame of the video showed a face: nothing was assessed."""


@dataclass(frozen=True)
class Episode:
    """A stretch of smoothed ``pain``: start and end (seconds), and its peak smoothed P(pain)."""

    start_s: float
    end_s: float
    peak: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class ScoreWindow:
    """The window score (DAN facial score) of ``[start_s, end_s)``.

    Attributes:
        score: 0 to ``of``; None when no face in the window could be assessed.
        of: the score's top (4 for DAN).
        frames: frames with a face in the window; assessable: those the model could judge.
    """

    start_s: float
    end_s: float
    score: int | None
    of: int
    frames: int
    assessable: int


@dataclass(frozen=True)
class VideoAssessment:
    """What a video showed.

    Attributes:
        video: the file.
        model: the predictor's name.
        timeline: one row per assessed frame, columns ``TIMELINE_COLUMNS``.
        episodes: the pain episodes in time order.
        duration_s: the video's length (the last frame's end).
        settings: the smoothing settings used (window, hysteresis, max_gap_s, detector, step).
        threshold: the model's pain threshold (0.5 when no face was assessed).
        prob_kind: what its P(pain) is (``prediction.PROB_KINDS``), "" when no face was
            assessed.
        windows: the window score per ``settings["dan_window_s"]`` seconds, in time order;
            empty for a model without one.
    """

    video: Path
    model: str
    timeline: pd.DataFrame
    episodes: list[Episode]
    duration_s: float
    settings: dict[str, object] = field(default_factory=dict)
    threshold: float = 0.5
    prob_kind: str = ""
    windows: list[ScoreWindow] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.timeline)

    @property
    def face_frames(self) -> int:
        return int(self.timeline["face"].sum())

    @property
    def unassessable_frames(self) -> int:
        """Frames with a face the model could not assess."""
        return int((self.timeline["label"] == CANNOT_ASSESS).sum())

    @property
    def observed_s(self) -> float:
        """Seconds with a smoothed state."""
        known = self.timeline["state"].isin(["pain", "nopain"])
        return float(self.timeline.loc[known, "duration_s"].sum())

    @property
    def pain_s(self) -> float:
        return float(self.timeline.loc[self.timeline["state"] == "pain", "duration_s"].sum())

    @property
    def pain_share(self) -> float | None:
        """Time in pain / time with a state; None when no frame had a state."""
        return self.pain_s / self.observed_s if self.observed_s > 0 else None

    @property
    def observed_share(self) -> float:
        return self.observed_s / self.duration_s if self.duration_s > 0 else 0.0

    def summary(self) -> dict[str, object]:
        """Plain values for summary.json and the CLI."""
        return {"video": str(self.video), "model": self.model, "frames": self.frames,
                "face_frames": self.face_frames, "duration_s": round(self.duration_s, 3),
                "observed_s": round(self.observed_s, 3), "pain_s": round(self.pain_s, 3),
                "pain_share": None if self.pain_share is None else round(self.pain_share, 4),
                "observed_share": round(self.observed_share, 4), "threshold": self.threshold,
                "prob_kind": self.prob_kind, "cannot_assess_frames": self.unassessable_frames,
                "dan": None if not self.windows else {
                    "window_s": self.settings["dan_window_s"], "of": self.windows[0].of,
                    "windows": [{"start_s": round(w.start_s, 3), "end_s": round(w.end_s, 3),
                                 "score": w.score, "frames": w.frames,
                                 "assessable": w.assessable} for w in self.windows]},
                "episodes": [{"start_s": round(e.start_s, 3), "end_s": round(e.end_s, 3),
                              "duration_s": round(e.duration_s, 3), "peak": round(e.peak, 4)}
                             for e in self.episodes],
                "settings": self.settings}


def frame_durations(times: np.ndarray, *, end_s: float | None = None) -> np.ndarray:
    """How long each frame lasts: until the next starts; the last one until ``end_s`` or, when
    that is None, the median interval (0 for a single frame without ``end_s``)."""
    times = np.asarray(times, dtype=float)
    if len(times) == 0:
        return np.empty(0)
    gaps = np.diff(times)
    last = (end_s - times[-1]) if end_s is not None else (float(np.median(gaps)) if len(gaps)
                                                            else 0.0)
    return np.append(gaps, max(last, 0.0))


def pain_episodes(times: np.ndarray, states: np.ndarray, smoothed: np.ndarray, *,
                  end_s: float, min_duration_s: float = 0.0) -> list[Episode]:
    """Runs of ``pain`` states: from their first frame to the start of the next frame (or
    ``end_s``); runs shorter than ``min_duration_s`` are left out."""
    episodes, start, peak = [], None, 0.0
    for i, (time_s, state) in enumerate(zip(times, states)):
        if state == "pain":
            if start is None:
                start, peak = float(time_s), 0.0
            if smoothed[i] == smoothed[i]:  # not NaN
                peak = max(peak, float(smoothed[i]))
        elif start is not None:
            episodes.append(Episode(start, float(time_s), peak))
            start = None
    if start is not None:
        episodes.append(Episode(start, float(end_s), peak))
    return [e for e in episodes if e.duration_s >= min_duration_s]


def score_windows(times: np.ndarray, predictions: list[Prediction | None], predictor: Predictor,
                  *, window_s: float, end_s: float) -> list[ScoreWindow]:
    """``predictor.window_score`` of the predictions in each ``window_s`` seconds from 0 to
    ``end_s`` (the last window may be shorter); [] for a predictor without a window score."""
    count = max(1, math.ceil(round(end_s / window_s, 6)))  # an end read as 6.000000001 s: 3
    members: list[list[Prediction]] = [[] for _ in range(count)]
    for time_s, prediction in zip(times, predictions):
        if prediction is not None:  # each frame in exactly one window: [n w, (n + 1) w)
            number = math.floor(round(float(time_s) / window_s, 6))
            members[min(max(number, 0), count - 1)].append(prediction)
    windows = []
    for number, inside in enumerate(members):
        stop = end_s if number == count - 1 else (number + 1) * window_s
        windows.append((number * window_s, stop, predictor.window_score(inside), inside))
    scored = [score for *_, score, _ in windows if score is not None]
    if not scored:
        return []
    return [ScoreWindow(start, stop, None if score is None else score["score"],
                        int(scored[0]["of"]), len(inside),
                        sum(p.assessable for p in inside))
            for start, stop, score, inside in windows]


def assess_video(path: str | os.PathLike[str], predictor: Predictor, *,
                 detector: str | FaceDetector = "mediapipe-short", window: int = 5,
                 hysteresis: float = 0.1, max_gap_s: float = 2.0, step: int = 1,
                 min_episode_s: float = 0.0, dan_window_s: float = DAN_WINDOW_S,
                 on_progress: ProgressHook | None = None) -> VideoAssessment:
    """Assess every ``step``-th frame of a video.

    Args:
        path: the video file.
        predictor: the model (the caller closes it).
        detector, window, hysteresis, max_gap_s: as ``monitor.pipeline.Assessor``.
        step: assess every step-th frame (1: all).
        min_episode_s: leave out pain episodes shorter than this.
        dan_window_s: seconds per window of the model's window score (``ScoreWindow``).
        on_progress: ``(frames decoded, frames in the container)``.

    Raises:
        NeopainError: an unreadable video (``VideoReadError``, naming the file) or bad options.
    """
    path = Path(path)
    if not isinstance(step, int) or step < 1:
        raise NeopainError(f"step={step!r} must be a whole number of frames >= 1")
    if not (isinstance(dan_window_s, (int, float))
            and MIN_DAN_WINDOW_S <= dan_window_s < float("inf")):
        raise NeopainError(f"dan_window_s={dan_window_s!r} must be a number of seconds >= "
                           f"{MIN_DAN_WINDOW_S:g}, e.g. 10")
    rows, predictions = [], []
    try:
        with open_video(path) as capture, Assessor(predictor, detector=detector, window=window,
                                                   hysteresis=hysteresis,
                                                   max_gap_s=max_gap_s) as assessor:
            last_time, threshold, prob_kind = 0.0, 0.5, ""
            # one open and one stat (open_video's): the container's count, 0 when unknown
            total = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
            for decoded in decode_frames(capture):
                last_time = decoded.time_s
                if on_progress is not None:
                    on_progress(decoded.index + 1, max(total, decoded.index + 1))
                if decoded.index % step:
                    continue
                result = assessor.step(decoded.image, time_s=decoded.time_s)
                box = result.face.box if result.face is not None else (np.nan,) * 4
                prediction = result.prediction
                if prediction is not None and prediction.assessable:
                    threshold, prob_kind = prediction.threshold, prediction.prob_kind
                predictions.append(prediction)
                rows.append({
                    "frame": decoded.index, "time_s": decoded.time_s,
                    "face": int(result.face is not None),
                    "x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3],
                    "prob_pain": shown_prob(prediction), "label": label_of(prediction),
                    "smoothed": np.nan if result.smoothed is None else result.smoothed,
                    "state": result.state or "", "changed": int(result.changed),
                    "latency_ms": result.latency_ms,
                    "assessable": None if prediction is None else int(prediction.assessable),
                    "problem": _problem(prediction), **prediction_cells(prediction),
                    **action_cells(prediction)})
    except VideoReadError as error:
        raise VideoReadError(f"{path}: {error}") from None
    if not rows:
        raise VideoReadError(f"{path}: has no frames")
    table = pd.DataFrame(rows).astype({"prob_pain": float, "assessable": "Int64",
                                       "action_count": "Int64"})
    times = table["time_s"].to_numpy()
    interval = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    end_s = max(last_time + interval / step, float(times[-1]))
    table.insert(2, "duration_s", frame_durations(times, end_s=end_s))
    windows = score_windows(times, predictions, predictor, window_s=dan_window_s, end_s=end_s)
    starts = np.array([w.start_s for w in windows])
    table["dan"] = pd.array([windows[np.searchsorted(starts, t, side="right") - 1].score
                             for t in times] if windows else [None] * len(table), "Int64")
    episodes = pain_episodes(times, table["state"].to_numpy(), table["smoothed"].to_numpy(),
                             end_s=end_s, min_duration_s=min_episode_s)
    settings = {"detector": detector if isinstance(detector, str) else detector.name,
                "window": window, "hysteresis": hysteresis, "max_gap_s": max_gap_s, "step": step,
                "min_episode_s": min_episode_s, "dan_window_s": dan_window_s}
    return VideoAssessment(video=path, model=predictor.name, timeline=table[list(
        TIMELINE_COLUMNS)], episodes=episodes, duration_s=end_s, settings=settings,
                           threshold=threshold, prob_kind=prob_kind, windows=windows)


def _problem(prediction: Prediction | None) -> str:
    """A frame's ``problem``: no face, why the model could not assess it, or ""."""
    return "no face found" if prediction is None else reason_of(prediction)
