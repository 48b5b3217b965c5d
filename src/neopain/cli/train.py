"""``neopain train``: cross-validated training from a YAML run config and/or flags."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
import yaml
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from neopain.cli.backend import AddressOption, BackendOption, backend_of
from neopain.cli.console import console

if TYPE_CHECKING:
    from neopain.runs import CvResult


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


def _model_args(given: list[str] | None) -> dict[str, object] | None:
    """``--model-arg KEY=VALUE`` flags as a mapping, each value read as YAML (0.5 a number,
    true a boolean); None when none is given."""
    from neopain.training import ConfigError

    if not given:
        return None
    args: dict[str, object] = {}
    for item in given:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--model-arg {item!r:.60} is not valid; valid: KEY=VALUE, e.g. "
                              "--model-arg dropout=0.5")
        try:
            args[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--model-arg {item!r:.60}: the value is not a number, word or "
                              "list; e.g. --model-arg dropout=0.5") from None
    return args


def train(
    config: Annotated[Optional[Path], typer.Option(
        help="YAML run config; flags given as well override its keys.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model name (neopain models list).")] = None,
    model_arg: Annotated[Optional[list[str]], typer.Option(
        help="KEY=VALUE for the network's constructor, e.g. dropout=0.5 (repeat it for more; "
             "replaces the config's model_args).")] = None,
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
    backend: BackendOption = "local",
    address: AddressOption = None,
) -> None:
    """Train a model over the folds of folds.json; writes runs/NAME/fold_K/ and config.yaml.

    A model that does not train (nfcs) scores each fold's test images instead. With
    calibration in the YAML config ({method: temperature, alpha: 0.1}), the run is then
    calibrated as neopain calibrate does.

    Example: neopain train --model ncnn --manifest data/manifest.csv --folds data/folds.json
    --out runs/ncnn

    A published recipe (configs/: vggnb.yaml, ncnn.yaml, ncnn_tuned.yaml) with your data:
    neopain train --config configs/ncnn_tuned.yaml --manifest data/manifest.csv --folds
    data/folds.json --out runs/ncnn_tuned

    With --backend ray each fold is a Ray task (a GPU each when --device wants CUDA); the run
    folder must be on storage every node sees.
    """
    runs_on = backend_of(backend, address=address)
    # imported here, not at the top: torch would otherwise load on every neopain command
    from neopain.cli.train_progress import ProgressBar
    from neopain.runs import CONFIG, FoldFolder
    from neopain.training import fold_model_class, load_config, oof_leaks, run_cv

    resolved = load_config(config, model=model, model_args=_model_args(model_arg),
                           manifest=manifest, folds=folds, out=out,
                           fold=fold, epochs=epochs, batch_size=batch_size, lr=lr,
                           augment=augment, weights=weights, device=device, workers=workers,
                           seed=seed)
    ignored = [name for name, value in (
        ("--epochs", epochs), ("--batch-size", batch_size), ("--lr", lr),
        ("--augment", augment), ("--weights", weights), ("--device", device),
        ("--workers", workers)) if value is not None]
    if ignored and not fold_model_class(resolved.model).trains:
        console.print(f"note: {resolved.model} does not train; {', '.join(ignored)} ignored",
                      highlight=False)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        result = run_cv(resolved, progress=ProgressBar(progress), backend=runs_on)
    _summary(result)
    for note in result.notes:
        console.print(note, highlight=False)
    leaks = oof_leaks(result.out)
    if leaks:
        console.print(f"[bold red]{len(leaks)} out-of-fold leak(s):[/] {escape(leaks[0])}")
    written = [CONFIG, *([result.record.name] if result.record is not None else [])]
    fold_files = FoldFolder(result.folds[0].path).files() if result.folds else []
    console.print(f"wrote {escape(str(result.out))}/{escape(', '.join(written))} and fold_K/ "
                  f"({', '.join(fold_files)}); next: neopain evaluate {escape(str(result.out))}",
                  highlight=False)
    if resolved.calibration is not None:
        from neopain.cli.calibrate import run_calibration

        run_calibration(result.out, method=resolved.calibration.method,
                        alpha=resolved.calibration.alpha, bins=resolved.calibration.bins)
