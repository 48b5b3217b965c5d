"""Evaluation pictures (matplotlib Figure, no pyplot): confusion matrices, ROC curves, box plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from neopain.runs.metrics import roc_points

CLASS_NAMES = ("nopain", "pain")
DPI = 100


def _draw_confusion(ax, matrix: np.ndarray, *, title: str) -> None:
    total = max(int(matrix.sum()), 1)
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
    for (i, j), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        ax.text(j, i, f"{count}\n{100 * count / total:.0f}%", ha="center", va="center",
                color=colour, fontsize=9)
    ax.set_xticks([0, 1], CLASS_NAMES)
    ax.set_yticks([0, 1], CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)


def confusion_figure(matrix: np.ndarray, out: Path, *, title: str) -> Path:
    """One 2×2 confusion matrix with counts and shares of all images, as PNG."""
    fig = Figure(figsize=(4, 3.6), layout="constrained")
    _draw_confusion(fig.subplots(), matrix, title=title)
    fig.savefig(out, dpi=DPI)
    return out


def fold_confusions_figure(matrices: dict[int, np.ndarray], out: Path) -> Path:
    """Every fold's confusion matrix in a grid (5 per row), as PNG."""
    columns = min(len(matrices), 5)
    rows = -(-len(matrices) // columns)
    fig = Figure(figsize=(3 * columns, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (fold, matrix) in zip(axes, matrices.items()):
        _draw_confusion(ax, matrix, title=f"fold {fold}")
    for ax in axes[len(matrices):]:
        ax.set_axis_off()
    fig.savefig(out, dpi=DPI)
    return out


def roc_figure(folds: dict[int, tuple[np.ndarray, np.ndarray]],
               pooled: tuple[np.ndarray, np.ndarray], out: Path, *, title: str,
               auc_text: str) -> Path:
    """Each fold's ROC curve (thin) and the pooled out-of-fold curve (bold), as PNG.

    ``folds`` and ``pooled`` hold (labels, probabilities); folds with one class are left out.
    """
    fig = Figure(figsize=(4.6, 4.4), layout="constrained")
    ax = fig.subplots()
    for i, (y, prob) in enumerate(folds.values()):
        points = roc_points(y, prob)
        if points is not None:
            ax.plot(*points, color="grey", lw=0.8, alpha=0.6,
                    label="folds" if i == 0 else None)
    points = roc_points(*pooled)
    if points is not None:
        ax.plot(*points, color="tab:red", lw=2, label="pooled")
    ax.plot([0, 1], [0, 1], ls="--", color="black", lw=0.7, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (1 − specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(f"{title}\n{auc_text}", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(out, dpi=DPI)
    return out


def box_figure(values: dict[str, Sequence[float]], out: Path, *, metric: str,
               caption: str) -> Path:
    """One box per run of a metric's fold values, the folds drawn as points, as PNG."""
    names = list(values)
    fig = Figure(figsize=(1.6 + 1.3 * len(names), 4), layout="constrained")
    ax = fig.subplots()
    data = [np.asarray(values[name], dtype=float) for name in names]
    data = [d[~np.isnan(d)] for d in data]
    ax.boxplot(data, tick_labels=names)
    rng = np.random.default_rng(0)  # fixed jitter: the same runs give the same picture
    for position, d in enumerate(data, start=1):
        ax.scatter(position + rng.uniform(-0.08, 0.08, len(d)), d, s=12, color="tab:blue",
                   alpha=0.7, zorder=3)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per fold\n{caption}", fontsize=10)
    fig.savefig(out, dpi=DPI)
    return out
