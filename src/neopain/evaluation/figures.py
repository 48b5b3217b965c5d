"""Evaluation pictures (matplotlib Figure, no pyplot): confusion matrices, ROC and
precision-recall curves, reliability diagrams, probability histograms, box plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.metrics import average_precision_score, precision_recall_curve

from neopain.evaluation.calibration_report import ReliabilityCurve
from neopain.evaluation.stats import mean_std
from neopain.runs.metrics import roc_points

CLASS_NAMES = ("nopain", "pain")
DPI = 100
CURVE_STYLES = {"raw": {"color": "tab:blue", "marker": "o", "ls": "-"},
                "calibrated": {"color": "tab:orange", "marker": "s", "ls": "--"}}
"""Raw and calibrated P(pain) told apart by colour, marker and line together."""
CLASS_STYLES = {"nopain": {"color": "tab:blue", "edge": "#174a73", "hatch": None},
                "pain": {"color": "tab:orange", "edge": "#8a4500", "hatch": "///"}}
"""nopain and pain told apart by colour and hatching together."""


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


def draw_reliability(ax_points, ax_counts, curves: dict[str, ReliabilityCurve]) -> None:
    """A reliability diagram on ``ax_points`` (each non-empty bin's mean P(pain) against its
    share of pain images, the marker's area growing with the bin's images, ECE in the legend)
    and the bins' image counts as bars on ``ax_counts`` (log scale: a bin of 2 images stays
    visible beside one of 200); ``curves`` maps a name of ``CURVE_STYLES`` (raw, calibrated)
    to its bins."""
    handles = ax_points.plot([0, 1], [0, 1], ls=":", color="black", lw=0.8,
                             label="perfectly calibrated")
    width = 1 / next(iter(curves.values())).bins / len(curves)
    largest = max(int(curve.counts.max()) for curve in curves.values())
    for k, (name, curve) in enumerate(curves.items()):
        style = CURVE_STYLES[name]
        label = f"{name} (ECE {curve.ece:.3f})"
        ax_points.plot(curve.mean_prob, curve.pain_share, color=style["color"], ls=style["ls"],
                       lw=0.9, alpha=0.5, label=label)
        ax_points.scatter(curve.mean_prob, curve.pain_share, s=6 + 150 * curve.counts / largest,
                          color=style["color"], marker=style["marker"], alpha=0.75,
                          edgecolors="white", linewidths=0.5, zorder=3)
        handles.append(Line2D([], [], color=style["color"], marker=style["marker"],
                              ls=style["ls"], lw=1.0, ms=5, label=label))
        left = curve.index / curve.bins + k * width
        ax_counts.bar(left, curve.counts, width=width, align="edge", color=style["color"],
                      alpha=0.75, label=name)
    for ax in (ax_points, ax_counts):
        ax.set_xlim(0, 1)
        ax.set_xticks(np.linspace(0, 1, 6))
        ax.grid(alpha=0.3, lw=0.5)
    ax_points.set_ylim(-0.02, 1.02)
    ax_points.set_ylabel("share of pain images in the bin")
    ax_points.legend(handles=handles, loc="upper left", fontsize=8)
    ax_points.tick_params(labelbottom=False)
    ax_counts.set_yscale("log")
    ax_counts.set_ylim(0.7, largest * 2)
    ax_counts.set_xlabel("P(pain) given by the model (equal-width bins)")
    ax_counts.set_ylabel("images (log)")


def reliability_figure(curves: dict[str, ReliabilityCurve], out: Path, *, title: str) -> Path:
    """The pooled reliability diagram with the bins' counts below it (:func:`draw_reliability`),
    as PNG."""
    fig = Figure(figsize=(4.8, 5.4), layout="constrained")
    ax_points, ax_counts = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    draw_reliability(ax_points, ax_counts, curves)
    ax_points.set_title(title, fontsize=10)
    fig.savefig(out, dpi=DPI)
    return out


def probability_histograms_figure(panels: dict[str, tuple[np.ndarray, np.ndarray]], out: Path,
                                  *, threshold: float, bins: int = 20) -> Path:
    """Histograms of P(pain) for the nopain and the pain images side by side in each bin, one
    panel per entry of ``panels`` (name → labels, probabilities) stacked, the threshold marked,
    as PNG."""
    fig = Figure(figsize=(4.6, 0.6 + 2.9 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True, sharey=True).ravel()
    edges = np.linspace(0, 1, bins + 1)
    for ax, (name, (y, prob)) in zip(axes, panels.items()):
        groups = [prob[y == value] for value in (0, 1)]
        _, _, patches = ax.hist(groups, bins=edges, rwidth=0.9,
                                color=[CLASS_STYLES[c]["color"] for c in CLASS_NAMES],
                                label=[f"{c} images ({len(g)})"
                                       for c, g in zip(CLASS_NAMES, groups)])
        for label, bars in zip(CLASS_NAMES, patches):
            for bar in bars:
                bar.set(hatch=CLASS_STYLES[label]["hatch"], edgecolor=CLASS_STYLES[label]["edge"],
                        linewidth=0.5)
        ax.axvline(threshold, color="black", ls="--", lw=0.8, label=f"threshold {threshold:g}")
        ax.set_xlim(0, 1)
        ax.set_ylabel("images")
        ax.set_title(f"{name} P(pain), all folds pooled", fontsize=10)
        ax.legend(loc="upper center", fontsize=8)
        ax.grid(axis="y", alpha=0.3, lw=0.5)
    axes[-1].set_xlabel("P(pain)")
    fig.savefig(out, dpi=DPI)
    return out


def precision_recall_figure(folds: dict[int, tuple[np.ndarray, np.ndarray]],
                            pooled: tuple[np.ndarray, np.ndarray], out: Path, *,
                            title: str) -> Path:
    """Each fold's precision-recall curve (thin) and the pooled one (bold), average precision
    in the legend and the share of pain as the no-skill line, as PNG. ``folds`` and ``pooled``
    hold (labels, probabilities); folds without pain images are left out."""
    fig = Figure(figsize=(4.6, 4.4), layout="constrained")
    ax = fig.subplots()
    fold_ap = []
    for y, prob in folds.values():
        if y.any():
            precision, recall, _ = precision_recall_curve(y, prob)
            fold_ap.append(average_precision_score(y, prob))
            ax.plot(recall, precision, color="grey", lw=0.8, alpha=0.6, drawstyle="steps-post",
                    label=None if len(fold_ap) > 1 else "folds")
    if fold_ap:
        mean, std = mean_std(fold_ap)
        spread = "" if np.isnan(std) else f" ± {std:.3f}"
        ax.lines[0].set_label(f"folds (AP {mean:.3f}{spread})")
    y, prob = pooled
    if y.any():
        precision, recall, _ = precision_recall_curve(y, prob)
        ax.plot(recall, precision, color="tab:red", lw=2, drawstyle="steps-post",
                label=f"pooled (AP {average_precision_score(y, prob):.3f})")
    ax.axhline(y.mean(), ls="--", color="black", lw=0.7,
               label=f"no skill (pain share {y.mean():.2f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (positive predictive value)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    fig.savefig(out, dpi=DPI)
    return out
