"""Pictures and reports of explanations (matplotlib Figure, no pyplot; Jinja2 HTML).

- ``regions_figure``: what drives the decisions: mean share of attribution per facial region,
  one bar per predicted class, one panel per method;
- ``write_perception_report``: agreement with human perception per persona and class:
  agreement.csv, summary.json, box plots and a self-contained report.html.
"""

from __future__ import annotations

import base64
import json
import math
import os
from importlib.resources import files
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from neopain import __version__
from neopain.explain.perception import AGREEMENT_METRICS, summarize_agreement
from neopain.faces.regions import OUTSIDE, REGIONS

DPI = 100
CLASS_COLOURS = {"pain": "tab:red", "nopain": "tab:blue"}


def regions_figure(table: pd.DataFrame, out: str | os.PathLike[str]) -> Path:
    """Bar chart of ``regions_by_class`` output (index: method, pred) as PNG."""
    out = Path(out)
    methods = list(dict.fromkeys(table.index.get_level_values(0)))
    fig = Figure(figsize=(8, 2.8 * len(methods) + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(methods), 1, squeeze=False).ravel())
    names = [*REGIONS, OUTSIDE]
    positions = np.arange(len(names))
    for ax, method in zip(axes, methods):
        rows = table.loc[method]
        width = 0.8 / max(len(rows), 1)
        for k, (pred, row) in enumerate(rows.iterrows()):
            ax.bar(positions + (k - (len(rows) - 1) / 2) * width, row[names].to_numpy(float),
                   width=width, color=CLASS_COLOURS.get(pred, "grey"),
                   label=f"predicted {pred} ({int(row['images'])})")
        ax.set_xticks(positions, names, rotation=30, ha="right")
        ax.set_ylabel("share of attribution")
        ax.set_title(f"{method}: where the evidence lies", fontsize=10)
        ax.legend(fontsize=8)
    fig.savefig(out, dpi=DPI)
    return out


def agreement_figure(agreement: pd.DataFrame, out: str | os.PathLike[str]) -> Path:
    """One box plot per metric: the per-image values of each persona, as PNG."""
    out = Path(out)
    personas = list(summarize_agreement(agreement).index)
    fig = Figure(figsize=(3.2 * 3, 3.0 * 2), layout="constrained")
    for ax, metric in zip(fig.subplots(2, 3).ravel(), AGREEMENT_METRICS):
        values = [agreement.loc[agreement["persona"] == p, metric].dropna().to_numpy()
                  for p in personas]
        ax.boxplot([v if len(v) else [np.nan] for v in values], tick_labels=personas)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.set_title(metric, fontsize=10)
    fig.savefig(out, dpi=DPI)
    return out


def class_figure(agreement: pd.DataFrame, out: str | os.PathLike[str], *,
                 metric: str = "pearson") -> Path:
    """Mean ``metric`` per persona, one bar per class, as PNG."""
    out = Path(out)
    table = agreement.groupby(["persona", "group"])[metric].mean().unstack("group")
    table = table.loc[list(summarize_agreement(agreement).index)]
    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(table.columns), 1)
    for k, group in enumerate(table.columns):
        ax.bar(np.arange(len(table)) + (k - (len(table.columns) - 1) / 2) * width,
               table[group].to_numpy(float), width=width,
               color=CLASS_COLOURS.get(group, "grey"), label=group)
    ax.set_xticks(np.arange(len(table)), table.index, rotation=20)
    ax.set_ylabel(f"mean {metric}")
    ax.legend(fontsize=8)
    fig.savefig(out, dpi=DPI)
    return out


def _none_for_nan(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value


def write_perception_report(agreement: pd.DataFrame, out: str | os.PathLike[str], *,
                            reference: str, notes: list[str] | None = None) -> dict[str, Path]:
    """Write agreement.csv, summary.json, two figures and report.html into ``out``.

    Args:
        agreement: ``compare_perception`` output.
        out: the folder (created).
        reference: what the personas were compared with, for the report's text.
        notes: lines for the report's notes section.

    Returns:
        name → path of every file written.
    """
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    per_persona = summarize_agreement(agreement)
    per_class = summarize_agreement(agreement, by=("persona", "group"))
    written = {"agreement": out / "agreement.csv", "summary": out / "summary.json"}
    agreement.to_csv(written["agreement"], index=False, lineterminator="\n")
    summary = {
        "reference": reference, "neopain_version": __version__,
        "ranking": list(per_persona.index),
        "personas": {p: {k: _none_for_nan(v) for k, v in row.items()}
                     for p, row in per_persona.astype(object).iterrows()},
        "per_class": [{"persona": p, "group": g, **{k: _none_for_nan(v) for k, v in r.items()}}
                      for (p, g), r in per_class.astype(object).iterrows()],
    }
    written["summary"].write_text(json.dumps(summary, indent=2, default=float) + "\n",
                                  encoding="utf-8")
    written["boxes"] = agreement_figure(agreement, out / "figures" / "agreement.png")
    written["classes"] = class_figure(agreement, out / "figures" / "agreement_by_class.png")
    embedded = {key: "data:image/png;base64," + base64.b64encode(written[key].read_bytes())
                .decode() for key in ("boxes", "classes")}

    def cells(row: pd.Series) -> list[str]:
        return [f"{row[f'{m}_mean']:.3f} ± {row[f'{m}_std']:.3f}"
                if not math.isnan(row[f"{m}_mean"]) else "n/a" for m in AGREEMENT_METRICS]

    template = files("neopain.explain").joinpath("templates", "perception.html.j2")
    html = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
        template.read_text(encoding="utf-8")).render(
        reference=reference, metrics=AGREEMENT_METRICS, figures=embedded, notes=notes or [],
        version=__version__,
        personas=[(p, int(r["rank"]), int(r["images"]), cells(r))
                  for p, r in per_persona.iterrows()],
        classes=[(p, g, int(r["images"]), cells(r)) for (p, g), r in per_class.iterrows()])
    written["html"] = out / "report.html"
    written["html"].write_text(html, encoding="utf-8")
    return written
