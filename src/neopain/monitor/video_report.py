"""The files of a video's assessment (``monitor.video.assess_video``): timeline.csv,
summary.json, episodes.csv, timeline.png and report.html."""

from __future__ import annotations

import base64
import json
import os
from importlib.resources import files
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

import neopain
from neopain.monitor.images import CANNOT_ASSESS
from neopain.monitor.video import NoFaceError, VideoAssessment


def timeline_figure(result: VideoAssessment, out: Path) -> Path:
    """P(pain) per frame, the smoothed value, pain episodes shaded, frames without a face and
    faces the model could not assess marked, and the window score (DAN) as steps on its own
    axis when the model has one, as PNG."""
    from matplotlib.figure import Figure

    table, threshold = result.timeline, result.threshold
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax = fig.subplots()
    for episode in result.episodes:
        ax.axvspan(episode.start_s, episode.end_s, color="#f4b6b6", alpha=0.6, lw=0)
    ax.plot(table["time_s"], table["prob_pain"], ".", ms=3, color="#888", label="P(pain), frame")
    ax.plot(table["time_s"], table["smoothed"], "-", lw=2, color="#b22222", label="smoothed")
    ax.axhline(threshold, ls="--", lw=1, color="#444", label=f"threshold {threshold:g}")
    for rows, colour, name in ((table["face"] == 0, "#1f4e99", "no face"),
                               (table["label"] == CANNOT_ASSESS, "#e69f00", "cannot assess")):
        marked = table.loc[rows, "time_s"]
        if len(marked):
            ax.plot(marked, np.full(len(marked), -0.04), "|", color=colour, ms=8, label=name)
    handles, labels = ax.get_legend_handles_labels()
    if result.windows:
        dan = ax.twinx()
        edges = [w.start_s for w in result.windows] + [result.windows[-1].end_s]
        scores = [np.nan if w.score is None else w.score for w in result.windows]
        dan.stairs(scores, edges, baseline=None, color="#6a3d9a", lw=1.5,
                   label=f"DAN facial score ({result.settings['dan_window_s']:g} s windows)")
        dan.set_ylim(-0.32, result.windows[0].of + 0.08)
        dan.set_yticks(range(result.windows[0].of + 1))
        dan.set_ylabel("DAN facial score")
        more = dan.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.set_xlim(0, result.duration_s)
    ax.set_ylim(-0.08, 1.02)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("P(pain)")
    ax.set_title(f"{result.video.name}: pain episodes shaded", fontsize=10)
    fig.legend(handles, labels, loc="outside lower center", fontsize=8, ncols=6)
    fig.savefig(out, dpi=100)
    return out


def reason_counts(timeline: pd.DataFrame) -> str:
    """Why faces could not be assessed, most frequent first, without the figures in brackets:
    "head turned beyond the limits × 12; no face mesh found × 3"."""
    problems = timeline.loc[timeline["label"] == CANNOT_ASSESS, "problem"]
    reasons = problems.str.split(" (", n=1, regex=False).str[0].value_counts()  # no angles
    return "; ".join(f"{reason} × {count}" for reason, count in reasons.items())


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
        reasons=reason_counts(result.timeline),
        latency_ms=f"{result.timeline['latency_ms'].median():.1f}"), encoding="utf-8")
    return written
