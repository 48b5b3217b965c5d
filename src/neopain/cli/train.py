"""``neopain train``: cross-validated training from a YAML run config and/or flags."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from neopain.cli.console import console

if TYPE_CHECKING:
    from neopain.training import CvResult, TrainConfig


def _fmt(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def _summary(result: CvResult) -> None:
    table = Table(title=f"{escape(str(result.out))}: {len(result.folds)} fold(s)")
    for column in ("fold", "epochs", "accuracy", "auc", "f1", "seconds"):
        table.add_column(column, justify="right")
    for fold in result.folds:
        table.add_row(str(fold.index), str(fold.epochs), _fmt(fold.metrics["accuracy"]),
                      _fmt(fold.metrics["auc"]), _fmt(fold.metrics["f1"]), f"{fold.seconds:.0f}")
    accuracy = [a for a in result.metric("accuracy") if not math.isnan(a)]
    if accuracy:
        from neopain.evaluation.stats import mean_std  # the same statistics as `evaluate`

        mean, std = mean_std(accuracy)
        spread = "" if math.isnan(std) else f" ± {std:.3f}"
        table.add_section()
        table.add_row("mean", "", f"{mean:.3f}{spread}", "", "", "")
    console.print(table)


def train(
    config: Annotated[Optional[Path], typer.Option(
        help="YAML run config; flags given as well override its keys.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model name (neopain models list).")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="The manifest CSV.")] = None,
    folds: Annotated[Optional[Path], typer.Option(help="folds.json for that manifest.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder, e.g. runs/ncnn.")] = None,
    fold: Annotated[Optional[int], typer.Option(help="Train only this fold index.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per fold (at most).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per batch.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate.")] = None,
    augment: Annotated[Optional[bool], typer.Option(
        "--augment/--no-augment", help="Online augmentation of the training images.")] = None,
    weights: Annotated[Optional[Path], typer.Option(
        help="Pretrained weights loaded before training (Keras h5, VGG-Face .pth, state dict).")
    ] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="DataLoader worker processes.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
) -> None:
    """Train a model over the folds of folds.json; writes runs/NAME/fold_K/ and config.yaml.

    Example: neopain train --model ncnn --manifest data/manifest.csv --folds data/folds.json
    --out runs/ncnn
    """
    # imported here, not at the top: torch would otherwise load on every neopain command
    from neopain.cli.train_progress import ProgressBar
    from neopain.training import load_config, oof_leaks, run_cv

    resolved = load_config(config, model=model, manifest=manifest, folds=folds, out=out,
                           fold=fold, epochs=epochs, batch_size=batch_size, lr=lr,
                           augment=augment, weights=weights, device=device, workers=workers,
                           seed=seed)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    if resolved.model == "nfcs":
        _score_nfcs(resolved, columns, ignored=[name for name, value in (
            ("--epochs", epochs), ("--batch-size", batch_size), ("--lr", lr),
            ("--augment", augment), ("--weights", weights), ("--device", device),
            ("--workers", workers)) if value is not None])
        return
    with Progress(*columns, console=console) as progress:
        total = 1 if resolved.fold is not None else None
        folds_task = progress.add_task(f"training {resolved.model}", total=total)
        batch_task = progress.add_task("epoch", total=None)

        def callbacks(index: int) -> list[ProgressBar]:
            return [ProgressBar(progress, fold=index, folds_task=folds_task,
                                batch_task=batch_task)]

        if total is None:
            from neopain.data.folds import load_folds

            plan = load_folds(resolved.folds)
            progress.update(folds_task, total=len(plan.folds))
        result = run_cv(resolved, callbacks=callbacks)
    _summary(result)
    leaks = oof_leaks(result.out)
    if leaks:
        console.print(f"[bold red]{len(leaks)} out-of-fold leak(s):[/] {escape(leaks[0])}")
    console.print(f"wrote {escape(str(result.out))}/config.yaml and fold_K/ (model.pt, "
                  "predictions.csv, metrics.json, history.csv, checkpoint.pt); next: "
                  f"neopain evaluate {escape(str(result.out))}", highlight=False)


def _score_nfcs(resolved: TrainConfig, columns: tuple, *, ignored: list[str]) -> None:
    """``--model nfcs``: score each fold's test images (nothing trains), then summarize."""
    import json

    from neopain.training import run_cv

    if ignored:
        console.print(f"note: nfcs is rule-based and does not train; {', '.join(ignored)} "
                      "ignored", highlight=False)
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("scoring with nfcs", total=None)
        result = run_cv(resolved, on_progress=lambda done, total: progress.update(
            task, completed=done, total=total))
    _summary(result)
    record = json.loads((result.out / "nfcs.json").read_text(encoding="utf-8"))
    rows = sum(fold["rows"] for fold in record["folds"])
    unassessable = sum(fold["unassessable"] for fold in record["folds"])
    console.print(f"{unassessable} of {rows} image(s) had no usable face mesh and were scored "
                  "P(pain) = 0.5 (column 'assessable' = 0)", highlight=False)
    console.print(f"wrote {escape(str(result.out))}/config.yaml, nfcs.json and fold_K/ "
                  "(predictions.csv, metrics.json); next: "
                  f"neopain evaluate {escape(str(result.out))}", highlight=False)
