"""``neopain explain``: heatmaps, facial regions, agreement with human perception, sanity checks.

``neopain explain run MODEL`` (a Typer group cannot take a path argument next to its
subcommands, so the DESIGN's ``neopain explain runs/NAME/fold_K`` is spelled with ``run``),
``neopain explain compare``, ``neopain explain sanity`` and ``neopain explain benchmark FOLD``.
The library is imported inside the commands: ``neopain --help`` must not pay for torch.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from neopain.cli.backend import AddressOption, BackendOption, backend_of
from neopain.cli.console import (
    console, err_console, fail, number_text, print_skipped, progress_bar,
)
from neopain.cli.dataset import fail_with
from neopain.cli.explain_benchmark import benchmark
from neopain.cli.explain_compare import compare
from neopain.errors import NeopainError

app = typer.Typer(help="Explain a model's decisions: heatmaps, facial regions, agreement with "
                       "human perception, sanity checks, a benchmark of the methods.",
                  no_args_is_help=True)


def _open_model(model: Path):
    """(torch model or PainFunction, cfg, fold or None, crop to face?, closer) of a fold folder
    or an .onnx file."""
    if model.suffix.lower() == ".onnx":
        from neopain.export.runtime import OnnxPredictor

        predictor = OnnxPredictor(model)
        return (predictor.prob_pain, predictor.exported_.cfg, None, predictor.crop.needs_box,
                predictor.close)
    from neopain.runs import load_fold

    fold = load_fold(model)
    return fold.model, fold.model.cfg, fold, fold.crop_to_face, lambda: None


def open_explainers(model: Path, methods: list[str], **options: Any) -> dict[str, Any]:
    """The explainers of ``methods`` on ``model``, as ``run`` builds them (a Ray actor's,
    which lives as long as the actor)."""
    from neopain.explain.methods import build_explainers

    network, cfg, _, _, _ = _open_model(model)
    return build_explainers(methods, network, cfg, **options)


def _items(cfg, fold, crop: bool, *, images: Path | None, manifest: Path | None,
           limit: int | None):
    """(items iterator, count) of a folder, the fold's test rows, or a manifest's rows; an
    image that cannot be read is named on stderr and left out."""
    from neopain.data.manifest import load_manifest
    from neopain.explain.run import IMAGE_SUFFIXES, folder_items, manifest_items
    from neopain.runs import select_rows

    if images is not None:
        count = sum(1 for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
            if os.path.isdir(images) else 0
        items = folder_items(images, cfg, on_unreadable=print_skipped)
    else:
        path = manifest or (fold.manifest if fold is not None else None)
        if path is None:
            raise NeopainError("no images to explain: give --images DIR, or --manifest "
                               "(an .onnx model has no test subjects)")
        data = load_manifest(path)
        rows = select_rows(data, subjects=None if fold is None else fold.test_subjects,
                           limit=limit)
        count, items = len(rows), manifest_items(data, cfg, rows=rows, crop_to_face=crop,
                                                 on_unreadable=print_skipped)
    if limit is not None and count > limit:
        count, items = limit, (item for item, _ in zip(items, range(limit)))
    return items, count


@app.command("run")
def run(
    model: Annotated[Path, typer.Argument(
        help="A training fold (runs/NAME/fold_K, holds model.pt), or an exported .onnx file "
             "(occlusion, rise or lime only).")],
    out: Annotated[Path, typer.Option(help="Folder for heatmaps, overlays and tables.")],
    method: Annotated[list[str], typer.Option(
        help="gradcam, ig, occlusion, rise, lime, guidedgradcam, saliency, inputxgradient, "
             "deeplift, gradientshap, smoothgrad or rollout (transformers); repeat for "
             "several.")]
    = ["gradcam"],  # noqa: B006
    target: Annotated[str, typer.Option(
        help="Explain the predicted class, the true class, or both.")] = "predicted",
    images: Annotated[Optional[Path], typer.Option(
        help="Explain every image in this folder (each a face image) instead of the fold's "
             "test images.")] = None,
    manifest: Annotated[Optional[Path], typer.Option(
        help="The manifest (default: the run's config.yaml); with an .onnx model, all its "
             "rows.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Explain at most this many images.")]
    = None,
    layer: Annotated[Optional[str], typer.Option(
        help="Grad-CAM layer (dotted module path); default the model cfg's cam_layer.")] = None,
    gate: Annotated[bool, typer.Option(
        "--gate/--no-gate", help="Grad-CAM: zero positions no gradient reaches.")] = True,
    baseline: Annotated[str, typer.Option(
        help="What removed information becomes (ig, occlusion, rise, lime, deeplift, "
             "gradientshap): blur, black or mean.")] = "blur",
    steps: Annotated[int, typer.Option(help="IG integration steps (first pass).")] = 64,
    rise_masks: Annotated[int, typer.Option(help="RISE: random masks per image.")] = 2000,
    seed: Annotated[int, typer.Option(
        help="Seeds the random methods (rise, lime, gradientshap, smoothgrad).")] = 0,
    overlays: Annotated[bool, typer.Option(
        "--overlays/--no-overlays", help="Also write overlay PNGs.")] = True,
    backend: BackendOption = "local",
    address: AddressOption = None,
) -> None:
    """Heatmaps (.npy), overlays (.png) and facial-region shares for a model's decisions.

    Writes OUT/heatmaps/, OUT/overlays/, OUT/regions/, OUT/explanations.csv, and with
    keypoints known OUT/regions.csv and OUT/regions.png (what drives each predicted class).
    """
    from neopain.explain.methods import build_explainers
    from neopain.explain.report import regions_figure
    from neopain.explain.run import explain_images
    from neopain.faces.regions import regions_by_class

    if limit is not None and limit < 1:
        fail(f"--limit {limit} is not valid; valid: a whole number >= 1")
    runs_on = backend_of(backend, address=address)
    closers = []
    try:
        network, cfg, fold, crop, close = _open_model(model)
        closers.append(close)
        items, count = _items(cfg, fold, crop, images=images, manifest=manifest, limit=limit)
        options = {"layer": layer, "baseline": baseline, "steps": steps, "gate": gate,
                   "rise_masks": rise_masks, "seed": seed}
        explainers = build_explainers(method, network, cfg, **options)
        closers += [e.close for e in explainers.values()]
        with progress_bar("explaining") as update:
            table = explain_images(items, explainers, cfg=cfg, out=out, target=target,
                                   total=count, overlays=overlays, on_progress=update,
                                   backend=runs_on,
                                   open_explainers=partial(open_explainers, model.absolute(),
                                                           method, **options))
        regions = None
        if table["forehead"].notna().any():
            regions = regions_by_class(table.dropna(subset=["forehead"]))
            regions.to_csv(out / "regions.csv", lineterminator="\n")
            regions_figure(regions, out / "regions.png")
    except NeopainError as error:
        fail_with(error)
    finally:
        for close in reversed(closers):  # explainers restore the model mode they found
            close()
    _print_run(table, regions, out)


def _print_run(table, regions, out: Path) -> None:
    counts = Table(title=Text(f"{table['image'].nunique()} images explained"))
    for column in ("method", "target class", "heatmaps", "predicted pain"):
        counts.add_column(column, justify="left" if column == "method" else "right")
    for (method, target), group in table.groupby(["method", "target"]):
        counts.add_row(method, target, str(len(group)), str(int((group["pred"] == "pain").sum())))
    console.print(counts)
    if regions is not None:
        from neopain.faces.regions import OUTSIDE, REGIONS

        shares = Table(title="what drives the decisions: mean share of attribution per "
                             "facial region, by predicted class")
        shares.add_column("region")
        for (method, pred), images in regions["images"].items():
            shares.add_column(Text(f"{method}\n{pred} ({int(images)})"), justify="right")
        for name in (*REGIONS, OUTSIDE):
            shares.add_row(name, *(number_text(value, 2) for value in regions[name]))
        console.print(shares)
    else:
        err_console.print(Text("note: no keypoints known, so no facial-region shares",
                               style="yellow"))
    console.print(f"wrote {escape(str(out))}/ (heatmaps/, overlays/, explanations.csv"
                  f"{', regions.csv, regions.png' if regions is not None else ''})",
                  highlight=False)


@app.command("sanity")
def sanity(
    model: Annotated[Path, typer.Argument(help="A training fold (runs/NAME/fold_K).")],
    method: Annotated[list[str], typer.Option(
        help="gradcam and/or ig (repeat); default both.")] = ["gradcam", "ig"],  # noqa: B006
    images: Annotated[int, typer.Option(help="Test images to check.")] = 8,
    manifest: Annotated[Optional[Path], typer.Option(
        help="The manifest (default: the run's config.yaml).")] = None,
    layer: Annotated[Optional[str], typer.Option(help="Grad-CAM layer.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the weight randomization.")] = 0,
) -> None:
    """Do explanations depend on the weights, and do IG attributions add up?

    Cascading weight randomization (top layer first): mean Spearman correlation with the
    trained model's heatmaps, which must fall below 0.5 once every layer is random; and IG
    completeness: |sum of attributions - (f(x) - f(baseline))| within 2% of |f(x) - f(baseline)|.
    Exits 1 when a check fails.
    """
    from neopain.explain.sanity import check_fold

    if images < 1:
        fail(f"--images {images} is not valid; valid: a whole number >= 1")
    try:
        with progress_bar("sanity checks") as update:
            report = check_fold(model, methods=method, images=images, manifest=manifest,
                                layer=layer, seed=seed, on_progress=update)
    except NeopainError as error:
        fail_with(error)
    for name, steps in report.randomization.items():
        table = Table(title=f"{name}: cascading weight randomization ({report.images} images)")
        for column in ("step", "layer randomized", "mean Spearman", "median"):
            table.add_column(column, justify="left" if column.startswith("layer") else "right")
        for row in steps.itertuples(index=False):
            table.add_row(str(row.step), row.layer, number_text(row.mean, 2),
                          number_text(row.median, 2))
        console.print(table)
    if report.completeness is not None:
        relative = report.completeness["relative_error"]
        console.print(f"IG completeness: relative error median {relative.median():.2%}, "
                      f"max {relative.max():.2%} ({len(relative)} images)", highlight=False)
    for line in report.verdicts:
        console.print(("[green]pass[/] " if line.passed else "[bold red]FAIL[/] ")
                      + escape(line.text), highlight=False)
    if not all(line.passed for line in report.verdicts):
        raise typer.Exit(1)


app.command("compare")(compare)
app.command("benchmark")(benchmark)
