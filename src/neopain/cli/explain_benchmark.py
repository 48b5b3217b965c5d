"""``neopain explain benchmark FOLD``: every explanation method scored on the fold's test images
(faithfulness, stability, localization against the manifest's action masks, time)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from neopain.cli.console import console, err_console, fail, number_text, progress_bar
from neopain.cli.dataset import fail_with
from neopain.errors import NeopainError

COLUMNS = (("seconds_per_image", "s/img"), ("infidelity", "infid. ↓"),
           ("sensitivity_max", "sens. ↓"), ("deletion", "del. ↓"), ("insertion", "ins. ↑"),
           ("mass_ratio", "mass ↑"), ("pointing", "point ↑"))
"""(benchmark.csv column, table header); the caption spells the headers out."""


def _figure(key: str, value: float) -> str:
    # infidelity is a mean squared error of P(target): often 1e-5, so it gets an exponent
    if key == "infidelity" and value == value:  # not NaN
        return f"{value:.1e}"
    return number_text(value, 2 if key in ("seconds_per_image", "mass_ratio", "pointing") else 3)


def _test_images(fold, *, manifest: Path | None, limit: int):
    """(images, true classes, action masks on the input or None) of the fold's first ``limit``
    test rows; a pain image's mask is its actions, a no-pain image's is empty."""
    import numpy as np

    from neopain.data.manifest import load_manifest
    from neopain.explain.localization import (
        CROP_MASKS, mask_in_input, masks_off_images, read_action_mask,
    )
    from neopain.explain.run import manifest_items
    from neopain.runs import select_rows

    if manifest is None and fold.manifest is None:
        raise NeopainError(f"{fold.fold_dir}: the run's config.yaml names no manifest; give "
                           "--manifest")
    data = load_manifest(manifest or fold.manifest)
    cfg = fold.model.cfg
    rows = select_rows(data, subjects=fold.test_subjects, limit=limit)
    has_masks = "mask" in data.table.columns
    if not has_masks:
        err_console.print(Text("note: the manifest has no mask column, so no localization",
                               style="yellow"))
    elif masks_off_images(data.table):
        err_console.print(Text(f"note: no localization: {manifest or fold.manifest}: "
                               f"{CROP_MASKS} (--manifest)", style="yellow"))
        has_masks = False
    images, labels, masks = [], [], []
    for item in manifest_items(data, cfg, rows=rows, crop_to_face=fold.crop_to_face):
        images.append(item.image)
        labels.append(item.label)
        cell = str(data.table["mask"].iat[item.row]).strip() if has_masks else ""
        if item.label == "pain" and cell:
            masks.append(mask_in_input(read_action_mask(data.root / cell),
                                       size=cfg.input_size, crop_box=item.crop_box))
        else:
            masks.append(np.zeros(cfg.input_size, dtype=bool))
    if not images:
        raise NeopainError(f"{fold.fold_dir}: the fold has no test images to explain")
    return np.stack(images), labels, np.stack(masks) if has_masks else None


def benchmark(
    fold: Annotated[Path, typer.Argument(help="A training fold (runs/NAME/fold_K).")],
    out: Annotated[Optional[Path], typer.Option(
        help="Folder for benchmark.csv, curves.csv and benchmark.png (default: "
             "FOLD/benchmark).")] = None,
    method: Annotated[Optional[list[str]], typer.Option(
        help="A method to score (repeat); default all of them.")] = None,
    limit: Annotated[int, typer.Option(help="Score on at most this many test images.")] = 16,
    manifest: Annotated[Optional[Path], typer.Option(
        help="The manifest (default: the run's config.yaml).")] = None,
    perturbations: Annotated[int, typer.Option(
        help="Perturbed copies per image for infidelity and sensitivity-max (>= 2).")] = 4,
    steps: Annotated[int, typer.Option(help="Points of the deletion and insertion curves.")]
    = 20,
    rise_masks: Annotated[int, typer.Option(help="RISE: random masks per image.")] = 1000,
    baseline: Annotated[str, typer.Option(
        help="What removed information becomes: blur, black or mean.")] = "blur",
    layer: Annotated[Optional[str], typer.Option(
        help="Grad-CAM layer; default the model cfg's cam_layer.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the random methods and perturbations.")]
    = 0,
) -> None:
    """Score explanation methods on a fold's test images, each explained for its true class.

    Faithfulness (captum's infidelity, deletion and insertion curves), stability (captum's
    sensitivity-max), localization against the manifest's action masks (pain images, where
    the manifest has a mask column) and time per image. Writes OUT/benchmark.csv,
    OUT/curves.csv and OUT/benchmark.png.
    """
    from neopain.explain.benchmark import benchmark_explainers, benchmark_figure
    from neopain.explain.methods import METHOD_NAMES, build_explainers
    from neopain.runs import load_fold

    if limit < 1:
        fail(f"--limit {limit} is not valid; valid: a whole number >= 1")
    out = out or fold / "benchmark"
    explainers = {}
    try:
        loaded = load_fold(fold)
        images, labels, masks = _test_images(loaded, manifest=manifest, limit=limit)
        explainers = build_explainers(method or METHOD_NAMES, loaded.model, loaded.model.cfg,
                                      layer=layer, baseline=baseline, rise_masks=rise_masks,
                                      seed=seed)
        with progress_bar("benchmarking") as update:
            result = benchmark_explainers(
                loaded.model, explainers, images, target=labels, masks=masks,
                cfg=loaded.model.cfg, baseline=baseline, steps=steps,
                perturbations=perturbations, seed=seed, on_progress=update)
        out.mkdir(parents=True, exist_ok=True)
        result.table.to_csv(out / "benchmark.csv", index=False, lineterminator="\n")
        result.curves.to_csv(out / "curves.csv", index=False, lineterminator="\n")
        benchmark_figure(result, out / "benchmark.png")
    except NeopainError as error:
        fail_with(error)
    finally:
        for explainer in reversed(explainers.values()):  # each restores the mode it found
            explainer.close()
    _print_benchmark(result.table, out)


def _print_benchmark(table, out: Path) -> None:
    order = "mass_ratio" if table["mass_ratio"].notna().any() else "insertion"
    shown = Table(title=Text(f"explanation methods on {int(table['images'].iat[0])} test "
                             f"images, best {order.replace('_', ' ')} first"))
    shown.caption = ("s/img: seconds per heatmap; infid.: captum infidelity; sens.: captum "
                     "sensitivity-max; del., ins.: area under the deletion and insertion "
                     "curves of P(target); mass: share of the heatmap in the action masks ÷ "
                     "their area share (1 = chance); point: pointing game hits")
    shown.add_column("method", no_wrap=True)
    for _, header in COLUMNS:
        shown.add_column(header, justify="right", no_wrap=True, min_width=7)
    for row in table.sort_values(order, ascending=False).itertuples(index=False):
        shown.add_row(row.method, *(_figure(key, getattr(row, key)) for key, _ in COLUMNS))
    console.print(shown)
    console.print(f"wrote {escape(str(out))}/ (benchmark.csv, curves.csv, benchmark.png)",
                  highlight=False)
