"""Pictures of a synthetic cohort for a person to look at: a contact sheet and clip timelines."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from neopain.data.images import read_gray, read_image
from neopain.data.synthetic.face import ACTIONS


def _rgb(path: Path) -> np.ndarray:
    return np.ascontiguousarray(read_image(path)[:, :, ::-1])


def contact_sheet(root: Path, out: Path, *, per_stimulus: int = 3,
                  persona: str = "physician") -> Path:
    """One row per example: the image with keypoints and box, its action mask, a perception map.

    Examples are the first ``per_stimulus`` images of each stimulus in the manifest.
    """
    manifest = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    perception = pd.read_csv(root / "perception.csv", dtype=str, keep_default_na=False)
    heat_of = perception[perception["persona"] == persona].set_index("new_file_name")
    rows = manifest.groupby("stimulus", sort=False).head(per_stimulus)
    fig = Figure(figsize=(9, 2.6 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for ax_row, (_, row) in zip(axes, rows.iterrows()):
        image = _rgb(root / row["image"])
        mask = read_gray(root / row["mask"], exact=True)
        ax_row[0].imshow(image)
        kps = np.array(json.loads(row["keypoints"]))
        ax_row[0].scatter(kps[:, 0], kps[:, 1], s=8, c="lime")
        x1, y1, x2, y2 = json.loads(row["face_box"])
        ax_row[0].plot([x1, x2, x2, x1, x1], [y1, y1, y2, y2, y1], c="deepskyblue", lw=1)
        ax_row[0].set_title(f"{row['subject']}  {row['label']} "
                            f"({row['stimulus']}, NFCS {row['score']})"
                            + (f", {row['occluder']}" if row["occluder"] else ""), fontsize=8)
        overlay = image.copy()
        active = (mask & 0x3F) > 0
        overlay[active] = (0.45 * overlay[active] + [140, 0, 0]).astype(np.uint8)
        ax_row[1].imshow(overlay)
        actions = (row["actions"].replace(";", ", ") or "no action").replace("_", " ")
        ax_row[1].set_title(textwrap.fill(actions, 40), fontsize=7)
        heat = read_gray(root / heat_of.loc[row["image"], "new_percep_file_name"])
        ax_row[2].imshow(image)
        ax_row[2].imshow(heat, cmap="jet", alpha=0.45)
        ax_row[2].set_title(f"perception: {persona}", fontsize=8)
        for ax in ax_row:
            ax.set_axis_off()
    fig.savefig(out, dpi=90)
    return out


def timeline_plot(videos_dir: Path, out: Path) -> Path:
    """Per clip: each action's intensity over time and the ground-truth pain frames."""
    timeline = pd.read_csv(videos_dir / "timeline.csv")
    clips = [v for v, t in timeline.groupby("video", sort=False) if t["face"].any()]
    fig = Figure(figsize=(10, 2.2 * max(len(clips), 1)), layout="constrained")
    axes = fig.subplots(max(len(clips), 1), 1, squeeze=False)[:, 0]
    for ax, clip in zip(axes, clips):
        t = timeline[timeline["video"] == clip]
        ax.fill_between(t["time_s"], 0, 1.05, where=t["label"] == "pain", color="red", alpha=0.15,
                        step="mid", label="pain (3+ actions)")
        for action in ACTIONS:
            ax.plot(t["time_s"], t[action], lw=1, label=action.replace("_", " "))
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("intensity")
        ax.set_title(clip, fontsize=9)
    axes[-1].set_xlabel("time (s)")
    axes[0].legend(fontsize=7, ncol=4, loc="upper right")
    fig.savefig(out, dpi=90)
    return out
