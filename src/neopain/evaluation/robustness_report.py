"""The files a robustness test leaves behind: its tables and one plot of every corruption.

``write_robustness`` writes into a folder:

- ``robustness.csv``: ``robustness.robustness_table`` (metrics per corruption and severity);
- ``scores.csv``: every image's P(pain) and label under every condition
  (``robustness.SCORE_COLUMNS``);
- ``robustness.png``: one panel per corruption, accuracy and AUC against severity, the clean
  figures dashed, and the share of faces the model could assess where it could not assess
  them all.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from neopain.evaluation.corruptions import SEVERITIES
from neopain.evaluation.robustness import CLEAN

DPI = 110
COLUMNS = 4


def robustness_figure(table: pd.DataFrame, out: Path, *, title: str) -> Path:
    """Accuracy and AUC per severity, one panel per corruption (pooled rows of ``table``)."""
    pooled = table[table["fold"] == "all"]
    clean = pooled[pooled["corruption"] == CLEAN].iloc[0]
    names = [name for name in dict.fromkeys(pooled["corruption"]) if name != CLEAN]
    rows = math.ceil(len(names) / COLUMNS)
    columns = min(COLUMNS, len(names))
    fig = Figure(figsize=(2.6 * columns, 0.5 + 2.3 * rows), layout="constrained")
    fig.suptitle(title, fontsize=10)
    axes = np.atleast_1d(fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
                         ).ravel()
    for ax, name in zip(axes, names):
        part = pooled[pooled["corruption"] == name]
        severity = [0, *part["severity"]]
        for metric, colour in (("accuracy", "tab:blue"), ("auc", "tab:orange")):
            ax.plot(severity, [clean[metric], *part[metric]], marker="o", ms=3, c=colour,
                    label=metric if metric == "accuracy" else "AUC")
            ax.axhline(clean[metric], c=colour, ls="--", lw=0.8)
        if (part["assessable"] < 1).any() or clean["assessable"] < 1:
            ax.plot(severity, [clean["assessable"], *part["assessable"]], marker="s", ms=3,
                    c="tab:grey", ls=":", label="assessable")
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 1.02)
        ax.set_xticks([0, *SEVERITIES])
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_axis_off()
    for ax in axes[::columns]:
        ax.set_ylabel("pooled over folds", fontsize=8)
    for ax in axes[-columns:]:
        ax.set_xlabel("severity (0: clean)", fontsize=8)
    lines = {label: line for ax in axes for line, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(lines.values(), lines.keys(), loc="outside lower center", ncols=len(lines),
               fontsize=8, title="dashed: clean", title_fontsize=8)
    fig.savefig(out, dpi=DPI)
    return out


def write_robustness(scores: pd.DataFrame, table: pd.DataFrame,
                     out: str | os.PathLike[str], *, title: str) -> dict[str, Path]:
    """Write robustness.csv, scores.csv and robustness.png into ``out`` (created); returns
    them by kind (``table``, ``scores``, ``figure``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {"table": out / "robustness.csv", "scores": out / "scores.csv",
               "figure": out / "robustness.png"}
    table.to_csv(written["table"], index=False, lineterminator="\n", float_format="%.6g")
    scores.to_csv(written["scores"], index=False, lineterminator="\n", float_format="%.6g")
    robustness_figure(table, written["figure"], title=title)
    return written
