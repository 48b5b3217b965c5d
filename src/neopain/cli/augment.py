"""``neopain augment``: augmented copies of one fold's training images, with their manifest."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from neopain.cli.backend import AddressOption, BackendOption, backend_of
from neopain.cli.console import console, print_skipped, progress_bar
from neopain.cli.dataset import print_summary
from neopain.cli.synth import default_workers
from neopain.training.augment import FILL_MODES, AugmentSpec, augment_fold
from neopain.data.folds import load_folds
from neopain.data.manifest import load_manifest

_DEFAULT = AugmentSpec()


def augment(
    manifest: Annotated[Path, typer.Argument(help="The manifest the folds were made from.")],
    folds: Annotated[Path, typer.Option("--folds", help="folds.json made from this manifest.")],
    fold: Annotated[int, typer.Option("--fold", help="Index of the fold to augment.")],
    out: Annotated[Path, typer.Option("--out", help="New or empty folder to write into.")],
    n: Annotated[int, typer.Option("--n", help="Augmented copies per training image.")] = 20,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same files.")] = 0,
    rotate: Annotated[float, typer.Option(help="Rotation range in degrees (±).")] = _DEFAULT.rotate,
    shear: Annotated[float, typer.Option(help="Shear range in degrees (±).")] = _DEFAULT.shear,
    shift: Annotated[float, typer.Option(
        help="Shift range as a share of width and height (±).")] = _DEFAULT.shift,
    zoom: Annotated[tuple[float, float], typer.Option(
        help="Zoom range LOW HIGH (1.5 = 50% larger).")] = _DEFAULT.zoom,
    brightness: Annotated[tuple[float, float], typer.Option(
        help="Brightness factor range LOW HIGH (pixel values are multiplied).")
    ] = _DEFAULT.brightness,
    flip: Annotated[float, typer.Option(
        help="Probability of a horizontal flip.")] = _DEFAULT.flip,
    size: Annotated[Optional[tuple[int, int]], typer.Option(
        help="Resize the copies to HEIGHT WIDTH (default: keep each image's size).")] = None,
    fill_mode: Annotated[str, typer.Option(
        help=f"How to fill pixels from outside the image: {', '.join(FILL_MODES)}.")
    ] = _DEFAULT.fill_mode,
    max_attempts: Annotated[int, typer.Option(
        help="Draws tried per copy until all 5 keypoints stay inside.")] = _DEFAULT.max_attempts,
    workers: Annotated[Optional[int], typer.Option(
        help="Processes augmenting images (default: this machine's CPUs, at most 4); with "
             "--backend ray, Ray actors (default: one per CPU of the cluster).")] = None,
    backend: BackendOption = "local",
    address: AddressOption = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Write into a non-empty --out, replacing files of the same name.")
    ] = False,
) -> None:
    """Write N augmented copies of each training image of one fold (never validation or test).

    Rotation, shear, shift, zoom, brightness and horizontal flip move the 5 face keypoints and
    the face box with the image; a copy is redrawn until all keypoints stay inside. Writes
    OUT/images/<subject>/<stem>_augNN.jpg and OUT/manifest.csv (with augmented_from and fold).
    """
    spec = AugmentSpec(rotate=rotate, shear=shear, shift=shift, zoom=zoom, brightness=brightness,
                       flip=flip, size=size, fill_mode=fill_mode, max_attempts=max_attempts)
    runs_on = backend_of(backend, address=address, workers=workers)
    loaded = load_manifest(manifest, check_files=True)
    plan = load_folds(folds, manifest=manifest)
    start = time.perf_counter()
    with ExitStack() as stack:
        bars: list = []

        def update(done: int, total: int) -> None:
            if not bars:  # opened at the first report, after the arguments were checked
                bars.append(stack.enter_context(progress_bar(f"augmenting fold {fold}")))
            bars[0](done, total)

        result = augment_fold(loaded, plan, fold=fold, out=out, n=n, spec=spec, seed=seed,
                              workers=default_workers() if workers is None else workers,
                              overwrite=overwrite, on_progress=update, backend=runs_on)
    seconds = time.perf_counter() - start
    table = Table(title=f"fold {fold}: {result.images} augmented images")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("training subjects", str(result.subjects))
    augmented = result.source_images - len(result.unreadable)
    table.add_row("training images augmented", str(augmented))
    table.add_row("training images unreadable (listed below)", str(len(result.unreadable)))
    table.add_row("copies per image", str(n))
    table.add_row("augmented images written", str(result.images))
    table.add_row("rows not augmented (validation, test)", str(result.skipped))
    table.add_row("draws redrawn (a keypoint left the image)", str(result.redraws))
    table.add_row("fallbacks (brightness only)", str(result.fallbacks))
    table.add_row("seconds", f"{seconds:.1f}")
    table.add_row("ms per augmented image", f"{1000 * seconds / max(result.images, 1):.1f}")
    console.print(table)
    for problem in result.unreadable:
        print_skipped(problem)
    print_summary(load_manifest(result.manifest, check_files=True), path=result.manifest,
                  checked_files=True)
    console.print(f"wrote [bold]{escape(str(result.root))}[/]: manifest.csv, images/",
                  highlight=False)
