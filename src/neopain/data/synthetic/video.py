"""Short synthetic clips with pain episodes, and their per-frame ground-truth timeline."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from neopain.data.manifest import format_box, format_keypoints
from neopain.data.synthetic.canvas import Canvas, Pose
from neopain.data.synthetic.cohort import ACTION_PREVALENCE, PAIN_THRESHOLD, Subject
from neopain.data.synthetic.face import ACTIONS, Expression, draw_face
from neopain.data.synthetic.scene import (
    Source, background, clothing, draw_body, face_box_px, finish,
)
from neopain.errors import NeopainError

VIDEO_SOURCE = Source("synth-video", (320, 240), (320, 240), (0.15, 0.18), 0.0, 0.01, 90, 0.02)
"""Camera of the clips: a bedside camera at 320×240."""

_RAMP_S = 0.6  # seconds an action takes to build up or fade


@dataclass(frozen=True)
class ClipSpec:
    """Clip length and frame rate."""

    seconds: float = 20.0
    fps: float = 10.0

    def __post_init__(self) -> None:
        if not 8.0 <= self.seconds <= 600.0:
            raise NeopainError(f"clip seconds={self.seconds} must lie in [8, 600]")
        if not 1.0 <= self.fps <= 60.0:
            raise NeopainError(f"clip fps={self.fps} must lie in [1, 60]")


@dataclass(frozen=True)
class Episode:
    start_s: float
    end_s: float
    actions: tuple[str, ...]
    peak: tuple[float, ...]


def plan_episodes(rng: np.random.Generator, clip: ClipSpec) -> list[Episode]:
    """One or two pain episodes (3+ actions, 3–8 s) and one or two single-action blips."""
    episodes: list[Episode] = []
    cursor = rng.uniform(1.5, 3.0)
    for _ in range(int(rng.integers(1, 3))):
        length = rng.uniform(3.0, 8.0)
        if cursor + length > clip.seconds - 1.5:
            break
        k = int(rng.integers(3, 6))
        chosen = rng.choice(len(ACTIONS), size=k, replace=False,
                            p=ACTION_PREVALENCE / ACTION_PREVALENCE.sum())
        episodes.append(Episode(cursor, cursor + length, tuple(ACTIONS[i] for i in sorted(chosen)),
                                tuple(rng.uniform(0.7, 1.0, k).round(2))))
        cursor += length + rng.uniform(2.0, 5.0)
    for _ in range(int(rng.integers(1, 3))):  # a yawn or a frown: one action, not pain
        start = rng.uniform(0.5, clip.seconds - 2.0)
        if not any(e.start_s - 2.0 < start < e.end_s + 0.5 for e in episodes):
            action, peak = str(rng.choice(ACTIONS)), round(rng.uniform(0.7, 0.9), 2)
            episodes.append(Episode(start, start + rng.uniform(1.0, 1.6), (action,), (peak,)))
    return sorted(episodes, key=lambda e: e.start_s)


def intensities_at(t: float, episodes: list[Episode]) -> dict[str, float]:
    """Action intensities at time ``t``: each episode ramps up, holds, and fades."""
    level = dict.fromkeys(ACTIONS, 0.0)
    for e in episodes:
        envelope = np.clip(min(t - e.start_s, e.end_s - t) / _RAMP_S + 0.5, 0.0, 1.0)
        for action, peak in zip(e.actions, e.peak):
            level[action] = max(level[action], float(peak * envelope))
    return level


def write_clip(path: Path, subject: Subject | None, clip: ClipSpec, seed: tuple[int, ...]
               ) -> tuple[pd.DataFrame, list[Episode]]:
    """Render one clip (``subject=None``: an empty cot, no face) and return its timeline."""
    rng = np.random.default_rng(list(seed))
    width, height = VIDEO_SOURCE.render_size
    scene = background(rng, height, width, clutter=True)
    onesie = clothing(rng)
    episodes = plan_episodes(rng, clip) if subject else []
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), clip.fps, (width, height))
    if not writer.isOpened():
        raise NeopainError(f"cannot write video {path}: OpenCV has no mp4v encoder here")
    phase = rng.uniform(0, 2 * np.pi, 3)
    rows = []
    try:
        for frame in range(int(round(clip.seconds * clip.fps))):
            t = frame / clip.fps
            frame_rng = np.random.default_rng([*seed, frame])
            canvas = Canvas(scene.copy(), Pose(
                width / 2 + 12 * np.sin(0.4 * t + phase[0]),
                height * 0.45 + 6 * np.sin(0.3 * t + phase[1]),
                0.165 * width, 10 * np.sin(0.25 * t + phase[2]), 0.95))
            row = {"frame": frame, "time_s": round(t, 3), "face": 0, "label": "", "score": ""}
            level = dict.fromkeys(ACTIONS, 0.0)
            if subject is not None:
                level = intensities_at(t, episodes)
                expr = Expression(level, eyes_closed=bool(np.sin(0.5 * t + phase[0]) > 0.3))
                draw_body(canvas, subject.identity, color=onesie)
                layout = draw_face(canvas, subject.identity, expr)
                score = len(expr.present())
                row.update(face=1, label="pain" if score >= PAIN_THRESHOLD else "nopain",
                           score=score,
                           face_box=format_box(face_box_px(canvas.pose, layout, VIDEO_SOURCE)),
                           keypoints=format_keypoints(canvas.pose.to_px(layout.keypoints)))
            row.update({a: round(v, 3) for a, v in level.items()})
            rows.append(row)
            writer.write(finish(canvas.image, frame_rng, VIDEO_SOURCE))
    finally:
        writer.release()
    return pd.DataFrame(rows), episodes


def generate_clips(out: str | os.PathLike[str], subjects: list[Subject], *, clips: int,
                   clip: ClipSpec = ClipSpec(), seed: int = 0,
                   on_progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``clips`` clips of the first subjects plus one no-face clip under ``out/videos``.

    Writes ``videos.csv`` (video, subject, fps, frames, duration), ``timeline.csv`` (per frame:
    face present, label, score, face box, keypoints, action intensities) and ``episodes.csv``.
    Returns the videos folder.
    """
    root = Path(out) / "videos"
    plan: list[tuple[str, Subject | None]] = [(s.id, s) for s in subjects[:clips]]
    plan.append(("noface", None))
    videos, timelines, episode_rows = [], [], []
    for n, (name, subject) in enumerate(plan):
        rel = Path("videos", f"{name}.mp4")
        timeline, episodes = write_clip(Path(out) / rel, subject, clip, (seed, 4, n))
        timeline.insert(0, "video", rel.as_posix())
        timelines.append(timeline)
        videos.append({"video": rel.as_posix(), "subject": subject.id if subject else "",
                       "source": VIDEO_SOURCE.name, "fps": clip.fps, "frames": len(timeline),
                       "duration_s": clip.seconds, "face": int(subject is not None)})
        episode_rows += [{"video": rel.as_posix(), "start_s": round(e.start_s, 3),
                          "end_s": round(e.end_s, 3), "pain": int(len(e.actions) >= PAIN_THRESHOLD),
                          "actions": ";".join(e.actions)} for e in episodes]
        if on_progress:
            on_progress(n + 1, len(plan))
    pd.DataFrame(videos).to_csv(root / "videos.csv", index=False, lineterminator="\n")
    pd.concat(timelines).to_csv(root / "timeline.csv", index=False, lineterminator="\n")
    pd.DataFrame(episode_rows, columns=["video", "start_s", "end_s", "pain", "actions"]).to_csv(
        root / "episodes.csv", index=False, lineterminator="\n")
    return root
