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
- ``observed_share`` is the time with a state over the whole video.

A video in which no frame shows a face gives ``face_frames == 0``; ``write_video_report`` then
refuses to draw a plot or report (``NoFaceError``) — there is nothing to show.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import cv2
import jinja2
import numpy as np
import pandas as pd

import neopain
from neopain.data.video.decode import VideoReadError, decode_frames, open_video
from neopain.errors import NeopainError
from neopain.faces.base import FaceDetector
from neopain.monitor.images import PREDICTION_COLUMNS, prediction_cells
from neopain.monitor.pipeline import Assessor
from neopain.prediction import Predictor

ProgressHook = Callable[[int, int], None]
TIMELINE_COLUMNS = ("frame", "time_s", "duration_s", "face", "x1", "y1", "x2", "y2", "prob_pain",
                    "label", "smoothed", "state", "changed", "latency_ms", *PREDICTION_COLUMNS)
"""The last ones as ``monitor.images.PREDICTION_COLUMNS`` says (empty without a prediction)."""


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
    """

    video: Path
    model: str
    timeline: pd.DataFrame
    episodes: list[Episode]
    duration_s: float
    settings: dict[str, object] = field(default_factory=dict)
    threshold: float = 0.5
    prob_kind: str = ""

    @property
    def frames(self) -> int:
        return len(self.timeline)

    @property
    def face_frames(self) -> int:
        return int(self.timeline["face"].sum())

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
                "prob_kind": self.prob_kind,
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


def assess_video(path: str | os.PathLike[str], predictor: Predictor, *,
                 detector: str | FaceDetector = "mediapipe-short", window: int = 5,
                 hysteresis: float = 0.1, max_gap_s: float = 2.0, step: int = 1,
                 min_episode_s: float = 0.0, on_progress: ProgressHook | None = None
                 ) -> VideoAssessment:
    """Assess every ``step``-th frame of a video.

    Args:
        path: the video file.
        predictor: the model (the caller closes it).
        detector, window, hysteresis, max_gap_s: as ``monitor.pipeline.Assessor``.
        step: assess every step-th frame (1: all).
        min_episode_s: leave out pain episodes shorter than this.
        on_progress: ``(frames decoded, frames in the container)``.

    Raises:
        NeopainError: an unreadable video (``VideoReadError``, naming the file) or bad options.
    """
    path = Path(path)
    if not isinstance(step, int) or step < 1:
        raise NeopainError(f"step={step!r} must be a whole number of frames >= 1")
    rows = []
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
                if prediction is not None:
                    threshold, prob_kind = prediction.threshold, prediction.prob_kind
                rows.append({
                    "frame": decoded.index, "time_s": decoded.time_s,
                    "face": int(result.face is not None),
                    "x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3],
                    "prob_pain": np.nan if prediction is None else prediction.prob_pain,
                    "label": "" if prediction is None else prediction.label,
                    "smoothed": np.nan if result.smoothed is None else result.smoothed,
                    "state": result.state or "", "changed": int(result.changed),
                    "latency_ms": result.latency_ms, **prediction_cells(prediction)})
    except VideoReadError as error:
        raise VideoReadError(f"{path}: {error}") from None
    if not rows:
        raise VideoReadError(f"{path}: has no frames")
    table = pd.DataFrame(rows)
    times = table["time_s"].to_numpy()
    interval = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    end_s = max(last_time + interval / step, float(times[-1]))
    table.insert(2, "duration_s", frame_durations(times, end_s=end_s))
    episodes = pain_episodes(times, table["state"].to_numpy(), table["smoothed"].to_numpy(),
                             end_s=end_s, min_duration_s=min_episode_s)
    settings = {"detector": detector if isinstance(detector, str) else detector.name,
                "window": window, "hysteresis": hysteresis, "max_gap_s": max_gap_s, "step": step,
                "min_episode_s": min_episode_s}
    return VideoAssessment(video=path, model=predictor.name, timeline=table[list(
        TIMELINE_COLUMNS)], episodes=episodes, duration_s=end_s, settings=settings,
                           threshold=threshold, prob_kind=prob_kind)


def timeline_figure(result: VideoAssessment, out: Path) -> Path:
    """P(pain) per frame, the smoothed value, pain episodes shaded, frames without a face
    marked, as PNG."""
    from matplotlib.figure import Figure

    table, threshold = result.timeline, result.threshold
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    ax = fig.subplots()
    for episode in result.episodes:
        ax.axvspan(episode.start_s, episode.end_s, color="#f4b6b6", alpha=0.6, lw=0)
    ax.plot(table["time_s"], table["prob_pain"], ".", ms=3, color="#888", label="P(pain), frame")
    ax.plot(table["time_s"], table["smoothed"], "-", lw=2, color="#b22222", label="smoothed")
    ax.axhline(threshold, ls="--", lw=1, color="#444", label=f"threshold {threshold:g}")
    missing = table.loc[table["face"] == 0, "time_s"]
    if len(missing):
        ax.plot(missing, np.full(len(missing), -0.04), "|", color="#1f4e99", ms=8,
                label="no face")
    ax.set_xlim(0, result.duration_s)
    ax.set_ylim(-0.08, 1.02)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("P(pain)")
    ax.set_title(f"{result.video.name}: pain episodes shaded", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, ncols=4)
    fig.savefig(out, dpi=100)
    return out


def _template() -> jinja2.Template:
    text = files("neopain.monitor").joinpath("templates", "video_report.html.j2").read_text(
        encoding="utf-8")
    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(text)


def write_video_report(result: VideoAssessment, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write timeline.csv, episodes.csv, summary.json, timeline.png and report.html into ``out``.

    Returns:
        name → path of every file written.

    Raises:
        NoFaceError: no frame showed a face (timeline.csv and summary.json are written first, so
            the frames that were looked at are on record; no plot or report is drawn).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {"timeline": out / "timeline.csv", "summary": out / "summary.json"}
    result.timeline.to_csv(written["timeline"], index=False, float_format="%.6g",
                           lineterminator="\n")
    summary = result.summary()
    written["summary"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if result.face_frames == 0:
        raise NoFaceError(f"{result.video}: no face found in any of its {result.frames} frames "
                          f"({result.duration_s:.1f} s); nothing was assessed. Check that the "
                          "camera shows the infant's face, the lighting, or try another "
                          "--detector")
    written["episodes"] = out / "episodes.csv"
    pd.DataFrame([{"start_s": round(e.start_s, 3), "end_s": round(e.end_s, 3),
                   "duration_s": round(e.duration_s, 3), "peak": round(e.peak, 4)}
                  for e in result.episodes],
                 columns=["start_s", "end_s", "duration_s", "peak"]).to_csv(
        written["episodes"], index=False, lineterminator="\n")
    written["plot"] = timeline_figure(result, out / "timeline.png")
    image = base64.b64encode(written["plot"].read_bytes()).decode()
    written["html"] = out / "report.html"
    written["html"].write_text(_template().render(
        video=result.video.name, summary=summary, threshold=f"{result.threshold:g}",
        pain_share="–" if result.pain_share is None else f"{100 * result.pain_share:.1f}%",
        observed_share=f"{100 * result.observed_share:.1f}%",
        plot=f"data:image/png;base64,{image}", version=neopain.__version__,
        latency_ms=f"{result.timeline['latency_ms'].median():.1f}"), encoding="utf-8")
    return written
