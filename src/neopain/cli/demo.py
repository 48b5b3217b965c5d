"""``neopain demo``: a synthetic cohort through every stage that has landed, told step by step."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.markup import escape
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table

from neopain.cli.console import console
from neopain.cli.synth import default_workers, synthesize
from neopain.config import get_settings
from neopain.data.synthetic import ACTIONS, PERSONAS, CohortSpec
from neopain.data.synthetic.preview import contact_sheet, timeline_plot
from neopain.data.synthetic.video import ClipSpec


def _step(number: int, title: str, what: str) -> None:
    console.print(Rule(f"[bold]step {number}: {title}"))
    console.print(what, highlight=False)


def _ground_truth_table(manifest: pd.DataFrame) -> Table:
    table = Table(title="ground truth: how often each NFCS action is present")
    table.add_column("action")
    for label in ("pain", "nopain"):
        table.add_column(f"in {label} images", justify="right")
    for action in ACTIONS:
        cells = []
        for label in ("pain", "nopain"):
            actions = manifest.loc[manifest["label"] == label, "actions"].str.split(";")
            share = sum(action in a for a in actions) / max(len(actions), 1)
            cells.append(f"{share:.0%}")
        table.add_row(action.replace("_", " "), *cells)
    return table


def demo(
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Folder for the demo's files (default: NEOPAIN_DATA_DIR/demo).")] = None,
    subjects: Annotated[int, typer.Option(help="Synthetic subjects in the demo cohort.")] = 20,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workers: Annotated[int, typer.Option(help="Processes for batch work.")] = default_workers(),
) -> None:
    """Run a synthetic cohort through every stage of neopain that has landed, explaining each."""
    out = out or get_settings().data_dir / "demo"
    console.print(Panel.fit(
        "neopain assesses pain in newborns from facial expressions.\n"
        "This demo uses a [bold]synthetic[/] cohort: drawn faces with known NFCS actions, not real "
        "infants.\nReal studies bring their own consented dataset (see README: data formats).",
        title="neopain demo"))

    _step(1, "synthesize a cohort",
          f"{subjects} subjects from two camera sources (sharp high-resolution, noisy "
          "low-resolution), each image showing NFCS facial actions; pain = 3 or more actions. "
          "Hard cases: crying-like no-pain faces, partial actions, occluders.")
    spec = CohortSpec(subjects=subjects, seed=seed)
    result = synthesize(out, spec, video=True, clips=2, clip=ClipSpec(), workers=workers)

    _step(2, "look at the ground truth",
          "Every image comes with its action masks (where each present action shows) and with "
          f"perception heatmaps of {len(PERSONAS)} observer personas "
          f"({', '.join(p.title for p in PERSONAS)}).")
    manifest = pd.read_csv(result.manifest, dtype=str, keep_default_na=False)
    console.print(_ground_truth_table(manifest))
    hard = Counter(manifest["stimulus"])
    occluded = Counter(o for o in manifest["occluder"] if o)
    console.print(f"stimuli: {dict(hard)}; occluders: {dict(occluded)}", highlight=False)
    sheet = contact_sheet(result.root, result.root / "overview.png")
    timeline = timeline_plot(result.root / "videos", result.root / "timeline.png")
    console.print(f"contact sheet (image, action mask, perception heatmap): {escape(str(sheet))}",
                  highlight=False)
    console.print(f"clip timelines with pain episodes: {escape(str(timeline))}", highlight=False)

    console.print(Rule("[bold green]demo complete"))
    console.print(f"Everything is in [bold]{escape(str(out))}[/]. Next: "
                  f"`neopain dataset validate {escape(str(result.manifest))}`.", highlight=False)
