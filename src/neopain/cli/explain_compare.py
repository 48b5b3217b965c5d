"""``neopain explain compare``: agreement of human perception heatmaps with a model's heatmaps or
with ground-truth action masks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from neopain.cli.console import console, err_console, fail, number_text, progress_bar
from neopain.cli.dataset import fail_with
from neopain.errors import NeopainError


def compare(
    perception: Annotated[Path, typer.Option(
        help="Perception table: file_name, heatmap_file_name, persona, new_percep_file_name, "
             "new_file_name.")],
    root: Annotated[Optional[Path], typer.Option(
        help="Folder the table's paths start from (the UNIFESP dataset root, with Images/ "
             "and Heatmaps/); default the table's folder.")] = None,
    attributions: Annotated[Optional[Path], typer.Option(
        help="Folder written by `neopain explain run` (its predicted-class heatmaps).")] = None,
    masks: Annotated[Optional[Path], typer.Option(
        help="Compare with the ground-truth action masks of this manifest (mask column) "
             "instead.")] = None,
    method: Annotated[Optional[str], typer.Option(
        help="Which method's heatmaps, when the folder holds several.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Report folder (default: ATTRIBUTIONS/agreement, or agreement/ next to the "
             "manifest).")] = None,
    top_k: Annotated[float, typer.Option(help="Share of pixels in the top masks of iou.")]
    = 0.1,
) -> None:
    """Agreement of human perception heatmaps with a model's heatmaps or ground-truth masks.

    Per image and persona: Pearson, Spearman, SSIM, IoU of the top-k% pixels, Schiller's
    overlap score and Spearman of region rankings; per persona and per persona and class.
    Human heatmaps, drawn on the original images, are cut where the model's input lies on
    them (through a `faces detect` crop manifest's original_image and original_face_box).
    Writes agreement.csv, summary.json, report.html and figures/.
    """
    from neopain.explain.compare import attribution_references, mask_references
    from neopain.explain.perception import compare_perception, load_perception
    from neopain.explain.report import write_perception_report

    if (attributions is None) == (masks is None):
        fail("give exactly one of --attributions DIR and --masks MANIFEST")
    try:
        table = load_perception(perception, root=root)
        if table.empty:
            raise NeopainError(f"perception table {perception} has no rows; valid: one row "
                               "per image and persona")
        notes = []
        if attributions is not None:
            references, method = attribution_references(attributions, method=method)
            reference = f"the model's {method} heatmaps of the predicted class"
            out = out or attributions / "agreement"
        else:
            references, left_out = mask_references(masks)
            reference = "the ground-truth action masks"
            out = out or masks.parent / "agreement"
            if not references:
                raise NeopainError(f"no row of {masks} has an action in its mask; valid: a "
                                   "manifest whose mask column names masks with an action")
            if left_out:
                notes.append(f"{left_out} images without any action left out")
        with progress_bar("comparing heatmaps") as update:
            agreement = compare_perception(table, references, top_k=top_k, on_progress=update)
        unmatched = table["image"].nunique() - agreement["image"].nunique()
        if agreement.empty:
            raise NeopainError(
                f"no image of {perception} has a heatmap to compare with: images are matched "
                "on their original image's path, or its ending; e.g. the table's "
                f"{table['image_path'].iat[0]} and the reference's {_example(references)}; "
                "give --root when the table's paths start elsewhere than its folder")
        if unmatched:
            notes.append(f"{unmatched} images of the perception table have nothing to "
                         "compare with")
        written = write_perception_report(agreement, out, reference=reference, notes=notes)
    except NeopainError as error:
        fail_with(error)
    _print_compare(agreement, reference, notes, written)


def _example(references) -> str:
    key, reference = next(iter(references.items()))
    return key if reference.placement is None else os.path.normpath(reference.placement.image)


def _print_compare(agreement, reference: str, notes: list[str], written: dict) -> None:
    from neopain.explain.perception import AGREEMENT_METRICS, summarize_agreement

    summary = summarize_agreement(agreement)
    personas = Table(title=Text(f"agreement with {reference}: mean ± std over images, "
                                "personas best first"))
    personas.add_column("metric")
    for rank, (persona, row) in zip(summary["rank"], summary.iterrows()):
        personas.add_column(Text(f"{rank}. {persona}\n({int(row['images'])} images)"),
                            justify="right")
    for metric in AGREEMENT_METRICS:
        personas.add_row(metric.replace("_", " "), *(
            f"{number_text(row[f'{metric}_mean'], 2)} ± {number_text(row[f'{metric}_std'], 2)}"
            for _, row in summary.iterrows()))
    console.print(personas)
    classes = Table(title="per persona and class (means)")
    for name in ("persona", "class", "images", *AGREEMENT_METRICS):
        classes.add_column(name.replace("_", " "), no_wrap=name == "persona",
                           justify="left" if name in ("persona", "class") else "right")
    per_class = summarize_agreement(agreement, by=("persona", "group"))
    order = {persona: rank for rank, persona in enumerate(summary.index)}
    for (persona, group), row in sorted(per_class.iterrows(),
                                        key=lambda item: (order[item[0][0]], item[0][1])):
        classes.add_row(Text(persona), Text(group), str(int(row["images"])),
                        *(number_text(row[f"{m}_mean"], 2) for m in AGREEMENT_METRICS))
    console.print(classes)
    for note in notes:
        err_console.print(Text(f"note: {note}", style="yellow"))
    console.print(f"wrote {escape(str(written['html']))}, agreement.csv, summary.json, "
                  "figures/", highlight=False)
